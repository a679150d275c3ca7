// A result produced as it goes (a query's encoded batches) cut into chunk_size pieces for the
// uploaders, like FileSource cuts a file. Pulled, not pushed: the producer runs only as fast
// as chunks are taken, so memory stays about one batch plus the chunks in flight.
import { RelayError } from '../../protocol/errors.js';
import type { TableSchema } from '../../protocol/wire.js';
import type { ChunkSource } from './file.js';

export class StreamSource implements ChunkSource {
  /** Unknown until the producer ends. */
  readonly totalBytes = null;

  constructor(
    private readonly produce: () => AsyncIterable<Uint8Array>,
    readonly chunkSize: number,
    private readonly releaseSource: () => Promise<void>,
    private readonly signal?: AbortSignal,
    /** Sent with stream/init (Arrow results). */
    readonly schema?: TableSchema,
  ) {
    if (!Number.isInteger(chunkSize) || chunkSize <= 0) throw new RelayError('BAD_REQUEST', `invalid chunk size ${chunkSize}`);
  }

  async *chunks(): AsyncGenerator<Buffer> {
    const size = this.chunkSize;
    // Fresh buffers per chunk: the uploader still holds earlier ones while they are in flight.
    let buf: Buffer | undefined;
    let fill = 0;
    for await (const piece of this.produce()) {
      this.signal?.throwIfAborted();
      let off = 0;
      while (off < piece.length) {
        buf ??= Buffer.allocUnsafeSlow(size);
        const n = Math.min(size - fill, piece.length - off);
        buf.set(piece.subarray(off, off + n), fill);
        fill += n;
        off += n;
        if (fill === size) {
          const full = buf;
          buf = undefined;
          fill = 0;
          yield full;
        }
      }
    }
    if (buf && fill > 0) yield buf.subarray(0, fill);
  }

  async close(): Promise<void> {
    await this.releaseSource();
  }
}
