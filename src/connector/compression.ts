// Which chunks to compress. zstd pays off when the link is slower than the compressor (a WAN:
// a third of the bytes on the wire) and costs throughput when it is faster (a LAN or loopback,
// where compressing every chunk takes more CPU than sending it). Neither is known up front and
// both change, so the choice is measured: chunks alternate between zstd and raw until each has
// a few samples, then the faster one is used, with the other re-tried every PROBE_EVERY chunks.
// "Faster" is decoded bytes per millisecond of the chunk's whole cost: encoding plus upload
// until the receiver accepted it. Every chunk is valid either way (PROTOCOL.md §3.3: a chunk
// without Content-Encoding is raw), so a wrong guess costs speed, never correctness.

/** Samples per choice before the faster one is picked. */
const WARM = 2;
/** Every PROBE_EVERY-th chunk tries the other choice, so a change in the link is noticed. */
const PROBE_EVERY = 16;
/** Weight of the newest sample in the moving average. */
const ALPHA = 0.3;

interface Rate {
  samples: number;
  bytesPerMs: number;
}

export class CompressionChooser {
  private readonly zstd: Rate = { samples: 0, bytesPerMs: 0 };
  private readonly raw: Rate = { samples: 0, bytesPerMs: 0 };
  private chosen = 0;

  /** mode 'auto' measures; 'always' compresses every chunk; 'never' none (the command said compression none). */
  constructor(readonly mode: 'auto' | 'always' | 'never') {}

  /** True when the next chunk should be compressed. */
  compressNext(): boolean {
    if (this.mode !== 'auto') return this.mode === 'always';
    const n = this.chosen++;
    // Warm-up: zstd first (the safe choice on a slow link), then alternate.
    if (this.zstd.samples < WARM || this.raw.samples < WARM) {
      if (this.zstd.samples + this.raw.samples === 0 && n === 0) return true;
      return this.zstd.samples <= this.raw.samples;
    }
    const zstdWins = this.zstd.bytesPerMs >= this.raw.bytesPerMs;
    return n % PROBE_EVERY === 0 ? !zstdWins : zstdWins;
  }

  /**
   * Records one chunk's cost. `compressed` is what was tried (a chunk zstd did not shrink counts
   * as tried: its time went into the attempt).
   */
  record(compressed: boolean, decodedBytes: number, ms: number): void {
    if (decodedBytes <= 0) return;
    const r = compressed ? this.zstd : this.raw;
    const rate = decodedBytes / Math.max(ms, 0.01);
    r.bytesPerMs = r.samples === 0 ? rate : ALPHA * rate + (1 - ALPHA) * r.bytesPerMs;
    r.samples++;
  }

  /** For logs and tests: the current estimates, in MB/s of decoded bytes per upload slot. */
  get estimates(): { zstdMBps: number; rawMBps: number; zstdSamples: number; rawSamples: number } {
    return { zstdMBps: this.zstd.bytesPerMs / 1000, rawMBps: this.raw.bytesPerMs / 1000, zstdSamples: this.zstd.samples, rawSamples: this.raw.samples };
  }
}
