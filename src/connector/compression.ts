// Which chunks to compress. zstd pays off when the way to the router is slower than the
// compressor (a WAN: a third of the bytes on the wire) and costs throughput when it is faster
// (loopback, a LAN: compressing takes longer than sending, and the router then decompresses).
// What "the way to the router" costs is not only bytes on a link: a router busy with other work
// takes longer per chunk, and a compressed chunk costs it a decompression. So nothing is
// modelled; the result is measured. Chunks go in phases of PHASE_CHUNKS of one encoding, and a
// phase's throughput is its decoded bytes over the time any of its chunks was under way, from
// encoding to acceptance (compression, upload and the router's work included, with as many
// uploads in flight as the uploader allows). The faster encoding is used; the other is tried
// again for one phase every so often (rarely when it was far slower: on a WAN a raw phase costs
// several times the wire time of a compressed one), since links and routers change.
// Every chunk is valid either way (PROTOCOL.md §3.3: a chunk without Content-Encoding is raw),
// so a wrong choice costs speed, never correctness.

/** Chunks per phase of the faster encoding, and per try of the slower one (short: on a WAN a raw try is the expensive kind). */
const PHASE_CHUNKS = 4;
const TRY_CHUNKS = 2;
/** Phases between two tries of the slower encoding, by how much slower it was. */
const EXPLORE_NEAR = 16;
const EXPLORE_FAR = 64;
/** "Far slower": the winner's throughput over the loser's. */
const FAR = 1.5;
/**
 * Chunks smaller than this go raw in 'auto' mode: a few KB saved at most, against a trip
 * through the thread pool to compress here and another to decompress on the router, which
 * for a small result is most of its cost (a 1 KB result: 2 of its 3 pool round trips).
 */
export const SMALL_CHUNK_BYTES = 4096;
/** Weight of the newest sample in the moving averages. */
const ALPHA = 0.3;

type Encoding = 'raw' | 'zstd';

const ewma = (old: number | null, sample: number) => (old === null ? sample : ALPHA * sample + (1 - ALPHA) * old);

/** The choice for one chunk; done() when its upload has ended, accepted or not. */
export interface Choice {
  compress: boolean;
  done(): void;
}

const FIXED_CHOICE = (compress: boolean): Choice => ({ compress, done: () => undefined });

interface Phase {
  encoding: Encoding;
  /** Chunks this phase takes. */
  size: number;
  issued: number;
  pending: number;
  bytes: number;
  /** Time with at least one of its chunks under way (an idle gap between commands is not counted). */
  busyMs: number;
  busySince: number;
}

export class CompressionChooser {
  /** Decoded bytes per ms of each encoding's phases (null: not measured yet). */
  private readonly rate: Record<Encoding, number | null> = { raw: null, zstd: null };
  private phase: Phase | null = null;
  private sinceTry = 0;
  /** From the compressed chunks: wire bytes per decoded byte, and ms per decoded byte. */
  private ratio: number | null = null;
  private msPerByte: number | null = null;

  /** mode 'auto' measures; 'always' compresses every chunk; 'never' none (the command said compression none). */
  constructor(
    readonly mode: 'auto' | 'always' | 'never',
    private readonly now: () => number = () => performance.now(),
  ) {}

  /** Whether to compress the next chunk (of decodedBytes). */
  choose(decodedBytes = Infinity): Choice {
    if (this.mode !== 'auto') return FIXED_CHOICE(this.mode === 'always');
    if (decodedBytes < SMALL_CHUNK_BYTES) return FIXED_CHOICE(false);
    if (!this.phase || this.phase.issued >= this.phase.size) {
      const { encoding, trying } = this.plan();
      this.phase = { encoding, size: trying ? TRY_CHUNKS : PHASE_CHUNKS, issued: 0, pending: 0, bytes: 0, busyMs: 0, busySince: 0 };
    }
    const p = this.phase;
    p.issued++;
    if (p.pending++ === 0) p.busySince = this.now();
    p.bytes += Number.isFinite(decodedBytes) ? decodedBytes : 0;
    let ended = false;
    return {
      compress: p.encoding === 'zstd',
      done: () => {
        if (ended) return;
        ended = true;
        if (--p.pending > 0) return;
        p.busyMs += this.now() - p.busySince;
        if (p.issued >= p.size) this.measured(p);
      },
    };
  }

  /** A chunk was encoded: what was tried, its decoded and encoded sizes, the encoding time (for the estimates). */
  encoded(compressed: boolean, decodedBytes: number, wireBytes: number, ms: number): void {
    if (!compressed || decodedBytes <= 0) return;
    this.msPerByte = ewma(this.msPerByte, ms / decodedBytes);
    this.ratio = ewma(this.ratio, wireBytes / decodedBytes);
  }

  private measured(p: Phase): void {
    this.rate[p.encoding] = ewma(this.rate[p.encoding], p.bytes / Math.max(p.busyMs, 0.001));
  }

  private plan(): { encoding: Encoding; trying: boolean } {
    // zstd first: the safe guess on a slow link, where a raw phase is the expensive mistake.
    if (this.rate.zstd === null) return { encoding: 'zstd', trying: false };
    if (this.rate.raw === null) return { encoding: 'raw', trying: true };
    const best: Encoding = this.rate.raw >= this.rate.zstd ? 'raw' : 'zstd';
    const other: Encoding = best === 'raw' ? 'zstd' : 'raw';
    const every = this.rate[best]! / this.rate[other]! > FAR ? EXPLORE_FAR : EXPLORE_NEAR;
    if (++this.sinceTry > every) {
      this.sinceTry = 0;
      return { encoding: other, trying: true };
    }
    return { encoding: best, trying: false };
  }

  /** For logs and tests: measured throughputs (decoded MB/s) and zstd's ratio and speed. */
  get estimates(): { rawMBps: number | null; zstdMBps: number | null; ratio: number | null; compressMBps: number | null; rawWins: boolean } {
    const mbps = (r: number | null) => (r === null ? null : Math.round(r) / 1000);
    return {
      rawMBps: mbps(this.rate.raw),
      zstdMBps: mbps(this.rate.zstd),
      ratio: this.ratio === null ? null : Math.round(this.ratio * 1000) / 1000,
      compressMBps: this.msPerByte ? Math.round(1 / this.msPerByte) / 1000 : null,
      rawWins: this.rate.raw !== null && this.rate.zstd !== null && this.rate.raw >= this.rate.zstd,
    };
  }
}
