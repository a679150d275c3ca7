// What a dataset's name says about its table format. Kept apart from preview.ts so the request
// commands load apache-arrow, parquet-wasm and csv-parse only when --preview is used.
import type { Format } from '../protocol/wire.js';

export type PreviewFormat = Exclude<Format, 'raw'>;

/** The table format a dataset's name says it is (a raw dataset is previewed as that). */
export function formatOfName(name: string): PreviewFormat | null {
  const p = name.toLowerCase();
  if (p.endsWith('.csv')) return 'csv';
  if (p.endsWith('.parquet')) return 'parquet';
  if (p.endsWith('.ndjson') || p.endsWith('.jsonl')) return 'ndjson';
  if (p.endsWith('.arrow') || p.endsWith('.arrows')) return 'arrow';
  return null;
}
