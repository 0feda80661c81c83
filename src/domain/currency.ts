/**
 * Active ISO 4217 alphabetic codes (list of 2024), lower-case as the API uses them (Stripe style). Funds
 * codes and precious metals (XAU, XDR...) are left out: an account holds money in a circulating currency.
 */
const ISO_4217 =
  'aed afn all amd ang aoa ars aud awg azn bam bbd bdt bgn bhd bif bmd bnd bob brl bsd btn bwp byn bzd cad cdf chf ' +
  'clp cny cop crc cup cve czk djf dkk dop dzd egp ern etb eur fjd fkp gbp gel ghs gip gmd gnf gtq gyd hkd hnl htg ' +
  'huf idr ils inr iqd irr isk jmd jod jpy kes kgs khr kmf kpw krw kwd kyd kzt lak lbp lkr lrd lsl lyd mad mdl mga ' +
  'mkd mmk mnt mop mru mur mvr mwk mxn myr mzn nad ngn nio nok npr nzd omr pab pen pgk php pkr pln pyg qar ron rsd ' +
  'rub rwf sar sbd scr sdg sek sgd shp sle sll sos srd ssp stn svc syp szl thb tjs tmt tnd top try ttd twd tzs uah ' +
  'ugx usd uyu uzs ves vnd vuv wst xaf xcd xcg xof xpf yer zar zmw zwg zwl';

export const CURRENCIES: ReadonlySet<string> = new Set(ISO_4217.split(' '));

export type Currency = string & { readonly __currency: true };

/** Accepts an ISO 4217 code in any case; returns it lower-cased, or null when unknown. */
export function parseCurrency(value: unknown): Currency | null {
  if (typeof value !== 'string' || value.length !== 3) return null;
  if (CURRENCIES.has(value)) return value as Currency; // the common case: already lower-case, no allocation
  const lower = value.toLowerCase();
  return CURRENCIES.has(lower) ? (lower as Currency) : null;
}
