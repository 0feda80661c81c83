/**
 * The metric names a PromQL expression reads, without a PromQL parser: strings, label matchers, ranges and
 * label lists are blanked out, then every remaining identifier that is neither a function call, a keyword
 * nor part of a number is a metric name. Good enough for the project's own rules and dashboard, which the
 * tests also run through a real Prometheus (a name this misses or invents fails there or here).
 */
const KEYWORDS = new Set([
  'and',
  'or',
  'unless',
  'by',
  'without',
  'on',
  'ignoring',
  'group_left',
  'group_right',
  'offset',
  'bool',
  'inf',
  'nan',
]);

export function metricNames(expr: string): Set<string> {
  const blanked = expr
    .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
    .replace(/\{[^}]*\}/g, ' ')
    .replace(/\[[^\]]*\]/g, ' ')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' ');
  const names = new Set<string>();
  for (const match of blanked.matchAll(/[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const name = match[0];
    const before = blanked[match.index - 1] ?? ' ';
    const after = blanked.slice(match.index + name.length).trimStart();
    if (/[0-9.]/.test(before) || after.startsWith('(') || KEYWORDS.has(name.toLowerCase())) continue;
    names.add(name);
  }
  return names;
}

/**
 * Names a Prometheus text exposition offers: every sample's name, and every `# TYPE` declaration (a labelled
 * counter nobody has incremented yet has no sample, but is declared), with a histogram's or summary's
 * `_bucket`, `_sum` and `_count` series.
 */
export function exposedNames(text: string): Set<string> {
  const names = new Set<string>();
  for (const line of text.split('\n')) {
    const declared = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (\w+)/.exec(line);
    if (declared) {
      const [, name, type] = declared as unknown as [string, string, string];
      names.add(name);
      if (type === 'histogram' || type === 'summary')
        for (const suffix of ['_bucket', '_sum', '_count']) names.add(name + suffix);
      continue;
    }
    if (line === '' || line.startsWith('#')) continue;
    const name = /^[a-zA-Z_:][a-zA-Z0-9_:]*/.exec(line)?.[0];
    if (name) names.add(name);
  }
  return names;
}
