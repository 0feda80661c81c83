/**
 * Card numbers at the edge: Luhn check and brand from the IIN ranges. Pure; the PAN never leaves the
 * gateway except encrypted into the vault.
 */
export const PAN_LENGTH_MIN = 13;
export const PAN_LENGTH_MAX = 19;

/** Luhn (mod 10) over a string of digits. Cost: one pass, no allocation. */
export function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (d < 0 || d > 9) return false;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return digits.length > 0 && sum % 10 === 0;
}

export function isPan(digits: string): boolean {
  return (
    digits.length >= PAN_LENGTH_MIN &&
    digits.length <= PAN_LENGTH_MAX &&
    /^[0-9]+$/.test(digits) &&
    luhnValid(digits)
  );
}

const brand_ranges: [string, (prefix6: number) => boolean][] = [
  ['amex', (p) => inPrefix(p, 2, 34, 34) || inPrefix(p, 2, 37, 37)],
  ['diners', (p) => inPrefix(p, 3, 300, 305) || inPrefix(p, 2, 36, 36) || inPrefix(p, 2, 38, 39)],
  ['jcb', (p) => inPrefix(p, 4, 3528, 3589)],
  ['visa', (p) => inPrefix(p, 1, 4, 4)],
  ['mastercard', (p) => inPrefix(p, 2, 51, 55) || inPrefix(p, 4, 2221, 2720)],
  ['discover', (p) => inPrefix(p, 4, 6011, 6011) || inPrefix(p, 3, 644, 649) || inPrefix(p, 2, 65, 65)],
  ['unionpay', (p) => inPrefix(p, 2, 62, 62)],
];

function inPrefix(prefix6: number, digits: number, low: number, high: number): boolean {
  const head = Math.floor(prefix6 / 10 ** (6 - digits));
  return head >= low && head <= high;
}

export function brandOf(pan: string): string {
  const prefix6 = Number(pan.slice(0, 6));
  for (const [brand, matches] of brand_ranges) if (matches(prefix6)) return brand;
  return 'unknown';
}

/** Scans text for PAN-shaped runs (13–19 digits, Luhn-valid, not inside a longer alphanumeric word). */
export function findPanRuns(text: string): string[] {
  const found: string[] = [];
  for (const match of text.matchAll(/(?<![0-9A-Za-z])[0-9]{13,19}(?![0-9A-Za-z])/g)) {
    if (luhnValid(match[0])) found.push(match[0]);
  }
  return found;
}
