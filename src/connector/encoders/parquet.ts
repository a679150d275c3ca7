// Parquet via parquet-wasm (the Rust arrow/parquet writer): batches go in as Arrow IPC, row
// groups come out as they fill, the footer last. Memory is about one row group.
import { Table, tableToIPC, type RecordBatch } from 'apache-arrow';
import * as pq from 'parquet-wasm/node';
import { BatchBuilder } from '../tables/columns.js';
import type { TableResult } from '../tables/table.js';

/** Rows per row group: bounds the writer's memory (the default, 1M rows, is hundreds of MB wide). */
export const ROW_GROUP_ROWS = 64 * 1024;

function toWasm(batch: RecordBatch): pq.RecordBatch {
  const t = pq.Table.fromIPCStream(tableToIPC(new Table([batch]), 'stream'));
  try {
    const b = t.recordBatch(0);
    if (!b) throw new Error('parquet-wasm read no batch back');
    return b;
  } finally {
    t.free();
  }
}

export async function* encodeParquet(table: TableResult): AsyncGenerator<Buffer> {
  const it = table.batches()[Symbol.asyncIterator]();
  let sent = 0;
  const input = new ReadableStream<pq.RecordBatch>({
    async pull(controller) {
      const next = await it.next();
      if (!next.done) {
        sent++;
        controller.enqueue(toWasm(next.value));
        return;
      }
      // An empty result still needs its schema in the file: one batch of no rows.
      if (sent === 0) {
        sent++;
        controller.enqueue(toWasm(new BatchBuilder(table.specs).empty()));
        return;
      }
      controller.close();
    },
    async cancel() {
      await it.return?.();
    },
  }, { highWaterMark: 0 });
  const props = new pq.WriterPropertiesBuilder().setCompression(pq.Compression.SNAPPY).setMaxRowGroupSize(ROW_GROUP_ROWS).build();
  const output = await pq.transformParquetStream(input, props);
  for await (const piece of output as unknown as AsyncIterable<Uint8Array>) yield Buffer.from(piece.buffer, piece.byteOffset, piece.byteLength);
}
