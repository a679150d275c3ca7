// Arrow IPC stream: the schema message, one message per batch, the end-of-stream marker.
import { RecordBatchStreamWriter, type RecordBatch } from 'apache-arrow';
import type { TableResult } from '../tables/table.js';

/**
 * The library's writer queues every byte until someone reads its async iterator; capturing
 * its writes instead lets each batch's bytes go out as soon as the batch is written.
 */
class CapturingWriter extends RecordBatchStreamWriter {
  captured: Uint8Array[] = [];

  protected override _write(chunk: ArrayBufferView | ArrayBuffer | string): this {
    if (!this._started) return this;
    const u8 = typeof chunk === 'string' ? Buffer.from(chunk) : ArrayBuffer.isView(chunk) ? new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength) : new Uint8Array(chunk);
    if (u8.byteLength > 0) {
      this.captured.push(u8);
      this._position += u8.byteLength;
    }
    return this;
  }

  take(): Buffer {
    // Copied: the captured views point into the batch's own buffers.
    const out = Buffer.concat(this.captured);
    this.captured = [];
    return out;
  }
}

export async function* encodeArrow(table: TableResult): AsyncGenerator<Buffer> {
  const w = new CapturingWriter();
  // The schema goes out first, so an empty result is still a valid stream with its columns.
  w.reset(undefined, table.schema);
  yield w.take();
  for await (const batch of table.batches()) {
    w.write(batch as RecordBatch);
    yield w.take();
  }
  w.finish();
  yield w.take();
}
