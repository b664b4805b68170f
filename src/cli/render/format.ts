/** Short human forms of counts and columns, shared by `list` and the interactive mode (sizes: src/units.ts). */

/** Row estimates: "~1.2M", "~950", or "?" for a table never analysed. */
export function formatRows(n: number | null): string {
  if (n === null) return '?';
  if (n < 1000) return `~${n}`;
  if (n < 1_000_000) return `~${(n / 1000).toFixed(n < 10_000 ? 1 : 0)}k`;
  if (n < 1_000_000_000) return `~${(n / 1_000_000).toFixed(n < 10_000_000 ? 1 : 0)}M`;
  return `~${(n / 1_000_000_000).toFixed(1)}G`;
}

/** Left-aligned columns; the last column is not padded. */
export function formatColumns(rows: string[][], gap = 2): string[] {
  const widths: number[] = [];
  for (const r of rows) r.forEach((c, i) => (widths[i] = Math.max(widths[i] ?? 0, [...c].length)));
  return rows.map((r) => r.map((c, i) => (i === r.length - 1 ? c : c + ' '.repeat(widths[i]! - [...c].length + gap))).join('').trimEnd());
}
