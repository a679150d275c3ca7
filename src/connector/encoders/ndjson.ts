// NDJSON: one JSON object per row, keys in column order, one row per line.
import { columnReader } from '../tables/columns.js';
import type { TableResult } from '../tables/table.js';
import { jsonText } from './text.js';

export async function* encodeNdjson(table: TableResult): AsyncGenerator<Buffer> {
  const keys = table.schema.fields.map((f, i) => `${i === 0 ? '{' : ','}${JSON.stringify(f.name)}:`);
  const text = table.specs.map(jsonText);
  for await (const batch of table.batches()) {
    const read = table.specs.map((s, i) => columnReader(batch, i, s));
    const lines: string[] = new Array(batch.numRows);
    for (let r = 0; r < batch.numRows; r++) {
      let line = keys.length ? '' : '{';
      for (let i = 0; i < read.length; i++) {
        const v = read[i]!(r);
        line += keys[i] + (v === null ? 'null' : text[i]!(v));
      }
      lines[r] = `${line}}\n`;
    }
    yield Buffer.from(lines.join(''));
  }
}
