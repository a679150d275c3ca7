// Markdown tables as the benchmark prints and records them: numbers right-aligned.

export interface Table {
  title: string;
  /** Lines under the title: what is measured, the targets. */
  notes?: string[];
  head: string[];
  rows: string[][];
  /** Lines under the table (observations, what limits a target). */
  after?: string[];
}

const NUMERIC = /^[-+]?[\d.,]+( ?[%×x])?$|^-$/;

export function renderTable(t: Table): string {
  const cols = t.head.length;
  const right = t.head.map((_, i) => t.rows.length > 0 && t.rows.every((r) => NUMERIC.test(r[i] ?? '')) && t.rows.some((r) => r[i] !== '-'));
  const widths = t.head.map((h, i) => Math.max(h.length, ...t.rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: string[]) =>
    `| ${Array.from({ length: cols }, (_, i) => (right[i] ? (cells[i] ?? '').padStart(widths[i]!) : (cells[i] ?? '').padEnd(widths[i]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (right[i] ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  const out = [`### ${t.title}`, ''];
  if (t.notes?.length) out.push(...t.notes, '');
  out.push(line(t.head), rule, ...t.rows.map(line));
  if (t.after?.length) out.push('', ...t.after);
  return out.join('\n');
}
