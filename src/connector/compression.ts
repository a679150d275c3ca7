// Which chunks to compress. zstd pays off when the link is slower than the compressor (a WAN:
// a third of the bytes on the wire) and costs throughput when it is faster (compressing every
// chunk takes more time than sending it raw). Neither is known up front and both change, so
// both are measured per command:
//   - the compressor: milliseconds per decoded byte, and the ratio (bytes on the wire per
//     decoded byte), from the chunks that were compressed;
//   - the link: wire bytes per millisecond while at least one upload is in flight (the union
//     of the uploads' busy time, so parallel uploads sharing a slow link count once, and a
//     fast link that waits for the compressor is not mistaken for a slow one).
// A decoded byte then costs 1/link raw, ratio/link + compressMs/cores compressed; the cheaper
// wins. While raw wins, every PROBE_EVERY-th chunk is still compressed to keep the compressor's
// numbers current (the data may change). Every chunk is valid either way (PROTOCOL.md §3.3: a
// chunk without Content-Encoding is raw), so a wrong guess costs speed, never correctness.
import { availableParallelism } from 'node:os';

/** Compressed chunks measured before the choice is made (the first ones are compressed). */
const WARM = 2;
/** While raw wins, every PROBE_EVERY-th chunk is compressed anyway (fresh ratio and speed). */
const PROBE_EVERY = 16;
/**
 * Chunks smaller than this go raw in 'auto' mode: a few KB saved at most, against a trip
 * through the thread pool to compress here and another to decompress on the router, which
 * for a small result is most of its cost (a 1 KB result: 2 of its 3 pool round trips).
 */
export const SMALL_CHUNK_BYTES = 4096;
/** Weight of the newest sample in the moving averages. */
const ALPHA = 0.3;

const ewma = (old: number, sample: number, n: number) => (n === 0 ? sample : ALPHA * sample + (1 - ALPHA) * old);

export class CompressionChooser {
  private compressed = 0;
  private msPerByte = 0;
  private ratio = 1;
  private chosen = 0;
  /** Uploads in flight, the start of the current busy period, busy time and bytes so far. */
  private uploading = 0;
  private busySince = 0;
  private busyMs = 0;
  private wireBytes = 0;
  private readonly cores = Math.max(1, Math.min(availableParallelism(), 4));

  /** mode 'auto' measures; 'always' compresses every chunk; 'never' none (the command said compression none). */
  constructor(
    readonly mode: 'auto' | 'always' | 'never',
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** True when the next chunk (of decodedBytes) should be compressed. */
  compressNext(decodedBytes = Infinity): boolean {
    if (this.mode !== 'auto') return this.mode === 'always';
    if (decodedBytes < SMALL_CHUNK_BYTES) return false;
    const n = this.chosen++;
    if (this.compressed < WARM || this.wireBytes === 0) return true;
    return !this.rawIsCheaper() || n % PROBE_EVERY === 0;
  }

  /** A chunk was encoded: what was tried, its decoded and encoded sizes, the encoding time. */
  encoded(compressed: boolean, decodedBytes: number, wireBytes: number, ms: number): void {
    if (!compressed || decodedBytes <= 0) return;
    this.msPerByte = ewma(this.msPerByte, ms / decodedBytes, this.compressed);
    this.ratio = ewma(this.ratio, wireBytes / decodedBytes, this.compressed);
    this.compressed++;
  }

  /** An upload starts (call uploaded() when it has been accepted, or failed with 0 bytes). */
  uploadStarted(): void {
    if (this.uploading++ === 0) this.busySince = this.now();
  }

  uploaded(wireBytes: number): void {
    this.wireBytes += wireBytes;
    if (--this.uploading === 0) this.busyMs += this.now() - this.busySince;
  }

  /** Wire bytes per ms the link took while busy. */
  private linkRate(): number {
    const busy = this.busyMs + (this.uploading > 0 ? this.now() - this.busySince : 0);
    return this.wireBytes / Math.max(busy, 0.01);
  }

  private rawIsCheaper(): boolean {
    const link = this.linkRate();
    const raw = 1 / link;
    const zstd = this.ratio / link + this.msPerByte / this.cores;
    return raw < zstd;
  }

  /** For logs and tests: the current estimates. */
  get estimates(): { linkMBps: number; compressMBps: number; ratio: number; rawWins: boolean } {
    return { linkMBps: this.linkRate() / 1000, compressMBps: this.msPerByte > 0 ? 1 / this.msPerByte / 1000 : 0, ratio: this.ratio, rawWins: this.compressed >= WARM && this.wireBytes > 0 && this.rawIsCheaper() };
  }
}
