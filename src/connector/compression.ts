// Which chunks to compress. zstd pays off when the way to the router is slower than the
// compressor (a WAN: a third of the bytes on the wire) and costs throughput when it is faster
// (loopback, a LAN: compressing takes longer than sending, and the router then decompresses).
// What "the way to the router" costs is not only bytes on a link: a router busy with other work
// takes longer per chunk, and a compressed chunk costs it a decompression. So nothing is
// modelled; the result is measured. Chunks go in phases of PHASE_CHUNKS of one encoding, and a
// phase's throughput is its decoded bytes over the time it added at the end of the pipeline:
// from the moment the phase before it was all accepted (or its own first chunk was chosen, if
// later) to the moment its own last chunk was. With many uploads in flight, a chunk's own time
// from encoding to acceptance is mostly the queue ahead of it, the same for a phase of 2 chunks
// as for one of 4, so it measures latency, not throughput, and made the shorter phase look
// slower. The faster encoding is used; the other is tried again for one phase every so often
// (rarely when it was far slower: on a WAN a raw phase costs several times the wire time of a
// compressed one), since links and routers change.
// Every chunk is valid either way (PROTOCOL.md §3.3: a chunk without Content-Encoding is raw),
// so a wrong choice costs speed, never correctness.

import { availableParallelism } from 'node:os';
import { idleShare } from './idle-cpu.js';

/** Chunks per phase of the faster encoding, and per try of the slower one (short: on a WAN a raw try is the expensive kind). */
const PHASE_CHUNKS = 4;
const TRY_CHUNKS = 2;
/** Phases between two tries of the slower encoding, by how much slower it was. */
const EXPLORE_NEAR = 16;
const EXPLORE_FAR = 64;
/**
 * With several commands uploading at once a phase is that many times longer (choose()), and so
 * is the wait for the samples that make a median: until settled, the slower encoding is then
 * tried every EXPLORE_NEAR / commands phases, but no more often than every EXPLORE_EARLY.
 */
const EXPLORE_EARLY = 4;
/** "Far slower": the winner's throughput over the loser's. */
const FAR = 1.5;
/**
 * Chunks smaller than this go raw in 'auto' mode: a few KB saved at most, against a trip
 * through the thread pool to compress here and another to decompress on the router, which
 * for a small result is most of its cost (a 1 KB result: 2 of its 3 pool round trips).
 */
export const SMALL_CHUNK_BYTES = 4096;
/** Weight of the newest sample in the moving averages of zstd's ratio and speed (for the logs). */
const ALPHA = 0.3;
/**
 * An encoding's throughput is the median of its last SAMPLES phases: one phase can finish just
 * after the one before it (parallel uploads end together) and look 50 times faster, and the first
 * phases of a connector's life run on cold code; a mean would follow either.
 */
const SAMPLES = 5;
/**
 * The slower encoding is tried every EXPLORE_NEAR phases until it has this many samples: a
 * whole median's worth. With 3, a raw estimate from cold first phases (69-110 MB/s on loopback
 * where warm raw phases run at 200-320) looked far slower than zstd, so raw was tried only every
 * EXPLORE_FAR phases and kept its cold median for several 100 MB streams (4 of 13 streams in a
 * row of probes stayed compressed, 0 of 13 with 5). On a slow link it costs two more raw tries
 * of TRY_CHUNKS chunks in a connector's life.
 */
const SETTLED = SAMPLES;

/**
 * Higher zstd levels used when the link is what limits (see level()): on the 100 MB CSV, level
 * 3 sends 4 % fewer bytes than 1 for 10 % more CPU, level 6 10 % fewer for 3 times the CPU.
 * A level's speed is measured once used; before that it is guessed from the base level's by
 * these factors (measured on that CSV, rounded down).
 */
const LADDER = [3, 6];
const RELATIVE_SPEED: Record<number, number> = { 1: 1, 3: 0.8, 6: 0.3 };
/** A level is used only while the compressing threads at it are this many times faster than results move. */
const HEADROOM = 1.5;
/**
 * Higher levels only while at least this share of the machine's CPU was idle over the last
 * second. A loaded machine makes every result slow, which looks like a slow link: the seed
 * load bench (100 requests at once, 5 connectors, 2 cores: 4-8 % idle) climbed to level 6 for
 * a quarter of its results, where level 6 costs three times the CPU. The WAN bench leaves
 * 25-55 % idle while the link is what limits.
 */
const MIN_IDLE_SHARE = 0.15;
/** Compression speed is the best of this many recent chunks: queueing in the thread pool only ever adds time. */
const SPEED_SAMPLES = 16;

type Encoding = 'raw' | 'zstd';

const ewma = (old: number | null, sample: number) => (old === null ? sample : ALPHA * sample + (1 - ALPHA) * old);

/** The choice for one chunk; done() when its upload has ended, accepted or not. */
export interface Choice {
  compress: boolean;
  /** The zstd level for this chunk. */
  level: number;
  done(): void;
}

interface Phase {
  encoding: Encoding;
  level: number;
  /** Chunks this phase takes. */
  size: number;
  issued: number;
  pending: number;
  bytes: number;
  /** Time with at least one of its chunks under way (an idle gap between commands is not counted). */
  busyMs: number;
  busySince: number;
  firstAt: number;
  /** When its own chunks were all done; when it and every phase before it were (null: not yet). */
  doneAt: number | null;
  closedAt: number | null;
  /** When the phase before it closed: -Infinity if there was none, null while it is open. */
  prevClosedAt: number | null;
  next: Phase | null;
}

export class CompressionChooser {
  /** Decoded bytes per ms of each encoding's last phases, newest last. */
  private readonly samples: Record<Encoding, number[]> = { raw: [], zstd: [] };
  private phase: Phase | null = null;
  private readonly tried = new Set<Encoding>();
  private sinceTry = 0;
  /** Chunks under way per command (choose's owner): how many commands share the pipeline now. */
  private readonly owners = new Map<object, number>();
  /** The most commands with chunks under way at once since the current phase began. */
  private peakOwners = 0;
  /** From the compressed chunks: wire bytes per decoded byte, and ms per decoded byte. */
  private ratio: number | null = null;
  /** ms per decoded byte of recent chunks, per zstd level used. */
  private readonly msPerByte = new Map<number, number[]>();
  private readonly now: () => number;
  /** The configured zstd level (RELAY_ZSTD_LEVEL). */
  readonly base: number;
  /** Threads compressing at once (the thread pool, at most one per core). */
  private readonly threads: number;
  /** The machine's idle CPU share lately (idle-cpu.ts); null when not known yet. */
  private readonly idle: () => number | null;

  /** mode 'auto' measures; 'always' compresses every chunk; 'never' none (the command said compression none). */
  constructor(
    readonly mode: 'auto' | 'always' | 'never',
    opts: { now?: () => number; base?: number; threads?: number; idleShare?: () => number | null } = {},
  ) {
    this.now = opts.now ?? (() => performance.now());
    this.idle = opts.idleShare ?? idleShare;
    this.base = opts.base ?? 1;
    this.threads = opts.threads ?? Math.min(4, availableParallelism());
    // Starts the sampling: the share is known one second later, not a second into the first upload.
    if (mode === 'auto') this.idle();
  }

  private fixed(compress: boolean): Choice {
    return { compress, level: this.base, done: () => undefined };
  }

  /**
   * Whether to compress the next chunk (of decodedBytes), and at which level. `owner` is the
   * command the chunk belongs to (any object that stands for it): a phase is PHASE_CHUNKS (a try
   * TRY_CHUNKS) per command that had chunks under way at once during the phase before it (the
   * most at any moment: commands start and end at different times). Many commands' chunks are
   * accepted out of order and in bunches (a loaded router, each result's own path through
   * it): a phase of 4 chunks among 40 under way closed a few ms after the one before it or
   * earlier, and was rated by that (up to 6,500 MB/s in the seed load bench, against raw tries
   * rated 8-21 by their own queued time). A phase as long as the chunks under way is timed by
   * its own chunks. One command at a time (a bulk result): the sizes above.
   */
  choose(decodedBytes = Infinity, owner?: object): Choice {
    if (this.mode !== 'auto') return this.fixed(this.mode === 'always');
    if (decodedBytes < SMALL_CHUNK_BYTES) return this.fixed(false);
    if (owner) this.owners.set(owner, (this.owners.get(owner) ?? 0) + 1);
    this.peakOwners = Math.max(this.peakOwners, this.owners.size);
    if (!this.phase || this.phase.issued >= this.phase.size) {
      const scale = Math.max(1, this.peakOwners);
      this.peakOwners = this.owners.size;
      const { encoding, trying } = this.plan(scale);
      const prev = this.phase;
      const p: Phase = { encoding, level: encoding === 'zstd' ? this.level() : this.base, size: (trying ? TRY_CHUNKS : PHASE_CHUNKS) * scale, issued: 0, pending: 0, bytes: 0, busyMs: 0, busySince: 0, firstAt: this.now(), doneAt: null, closedAt: null, prevClosedAt: prev ? prev.closedAt : -Infinity, next: null };
      if (prev) prev.next = p;
      this.phase = p;
      this.tried.add(encoding);
    }
    const p = this.phase;
    p.issued++;
    if (p.pending++ === 0) p.busySince = this.now();
    p.bytes += Number.isFinite(decodedBytes) ? decodedBytes : 0;
    let ended = false;
    return {
      compress: p.encoding === 'zstd',
      level: p.level,
      done: () => {
        if (ended) return;
        ended = true;
        if (owner) {
          const left = (this.owners.get(owner) ?? 1) - 1;
          if (left > 0) this.owners.set(owner, left);
          else this.owners.delete(owner);
        }
        if (--p.pending > 0) return;
        p.busyMs += this.now() - p.busySince;
        if (p.issued >= p.size) {
          p.doneAt = this.now();
          this.close(p);
        }
      },
    };
  }

  /** A chunk was encoded: what was tried, its decoded and encoded sizes, the encoding time, the level. */
  encoded(compressed: boolean, decodedBytes: number, wireBytes: number, ms: number, level = this.base): void {
    if (!compressed || decodedBytes <= 0) return;
    const list = this.msPerByte.get(level) ?? [];
    list.push(ms / decodedBytes);
    if (list.length > SPEED_SAMPLES) list.shift();
    this.msPerByte.set(level, list);
    this.ratio = ewma(this.ratio, wireBytes / decodedBytes);
  }

  /**
   * The zstd level to compress at. The base level, unless compressed results move faster than
   * raw ones (the link limits, not the CPU) and slowly enough that the threads at a higher level
   * would still be HEADROOM times ahead of them: then fewer bytes on the link are worth the CPU
   * (WAN bench: 100 MB in 2.69 s at level 1, 2.61 s at 6; offload 3.24 s and 2.98 s). On a fast
   * link the throughput is high and the base level stays. So it does when the machine has
   * little idle CPU (MIN_IDLE_SHARE), or before its first second of measurement. An offload
   * starts from it (OffloadLevel then follows the upload).
   */
  level(): number {
    const zstd = this.rate('zstd');
    const raw = this.rate('raw');
    if (this.mode !== 'auto' || zstd === null || raw === null || zstd <= raw) return this.base;
    const idle = this.idle();
    if (idle === null || idle < MIN_IDLE_SHARE) return this.base;
    let best = this.base;
    for (const l of LADDER) {
      const speed = this.speedOf(l);
      if (l > best && speed !== null && zstd * HEADROOM < speed * this.threads) best = l;
    }
    return best;
  }

  /** Decoded bytes per ms one thread compresses at `level`: measured, or guessed from the base level's. */
  private speedOf(level: number): number | null {
    const fastest = (l: number) => {
      const list = this.msPerByte.get(l);
      return list?.length ? Math.min(...list) : null;
    };
    const measured = fastest(level);
    if (measured) return 1 / measured;
    const base = fastest(this.base);
    const rel = RELATIVE_SPEED[level];
    const baseRel = RELATIVE_SPEED[this.base] ?? 1;
    return base && rel ? rel / baseRel / base : null;
  }

  /** Measures a phase once it and every phase before it are done, then the next one if it is. */
  private close(p: Phase): void {
    for (let q: Phase | null = p; q && q.doneAt !== null && q.prevClosedAt !== null && q.closedAt === null; q = q.next) {
      const prevEnd = q.prevClosedAt;
      q.closedAt = Math.max(q.doneAt, prevEnd);
      // The time it added at the end of the pipeline; never more than its busy time (a phase
      // spread over two commands with a pause between them).
      const ms = Math.min(q.closedAt - Math.max(prevEnd, q.firstAt), q.busyMs);
      // Nothing added: it was accepted before the phase ahead of it closed (raw chunks do not
      // wait for a compressor, so a raw try overtakes the compressed phase it follows). Its own
      // busy time, queue included, bounds its throughput from below, so it may raise its
      // encoding's estimate, never lower it (under load that time is mostly queue). Dropping it
      // always left raw on its first, cold, estimate for many requests (a probe: 85 MB/s against
      // zstd's 150-215 through seven 100 MB streams in a row).
      const own = q.busyMs > 0 ? q.bytes / q.busyMs : 0;
      const rate = ms > 0 ? q.bytes / ms : own > (this.rate(q.encoding) ?? 0) ? own : 0;
      if (rate > 0) {
        const list = this.samples[q.encoding];
        list.push(rate);
        if (list.length > SAMPLES) list.shift();
      }
      if (q.next) q.next.prevClosedAt = q.closedAt;
    }
  }

  /** The next phase's encoding, and whether it is a try; `scale`: the commands it is sized for. */
  private plan(scale: number): { encoding: Encoding; trying: boolean } {
    // zstd first: the safe guess on a slow link, where a raw phase is the expensive mistake.
    // Then one raw try at once, so both are measured early even with many chunks in flight.
    if (!this.tried.has('zstd')) return { encoding: 'zstd', trying: false };
    if (!this.tried.has('raw')) return { encoding: 'raw', trying: true };
    const raw = this.rate('raw');
    const zstd = this.rate('zstd');
    // Until both are measured (a try still under way: with many commands' chunks ahead of it,
    // the first raw try closed seconds later), zstd, the safe guess; the phases count towards
    // the next try all the same.
    const known = raw !== null && zstd !== null;
    const best = known ? (this.shrinks() ? this.best(raw, zstd) : 'raw') : 'zstd';
    const other: Encoding = best === 'raw' ? 'zstd' : 'raw';
    const settled = this.samples[other].length >= SETTLED;
    const far = known && settled && Math.max(raw, zstd) / Math.min(raw, zstd) > FAR;
    const every = !settled ? Math.max(EXPLORE_EARLY, Math.ceil(EXPLORE_NEAR / scale)) : far ? EXPLORE_FAR : EXPLORE_NEAR;
    if (++this.sinceTry > every) {
      this.sinceTry = 0;
      return { encoding: other, trying: true };
    }
    return { encoding: best, trying: false };
  }

  /**
   * Whether zstd has been making chunks smaller lately. On data it does not shrink (random bytes,
   * compressed files) a zstd phase costs the compressing and sends the same bytes (encodeChunk
   * keeps such a chunk raw), so timed against raw it is a coin toss, and when it wins the CPU is
   * spent for nothing: 100 MB of random bytes cost zstd ~0.08 s at level 1 and ~0.74 s at level
   * 6 here (a connector that rated zstd faster on the CSV before may climb to 6). Such data goes
   * raw; zstd is still tried on the usual schedule, and one chunk that shrinks brings the ratio
   * (a moving average) back under NO_GAIN.
   */
  private shrinks(): boolean {
    return this.ratio === null || this.ratio <= NO_GAIN;
  }

  /**
   * The encoding to use: the faster one, except that on a busy machine (under MIN_IDLE_SHARE
   * idle) zstd must be FAR faster. Each connector measures its own uploads only; the CPU its
   * compressing takes comes out of everything else on the machine, which its measure does not
   * see (other connectors, the router's decompression when they share a box, the owner's own
   * work). In the seed load bench (5 connectors, router and Redis on 2 cores, 4-8 % idle) each
   * connector measured zstd 1.3 times faster than raw, while raw for all of them gave 101-108
   * req/s against 83-84 and used a third less connector CPU. A slow link (zstd 3 times faster
   * on the WAN bench) keeps zstd.
   */
  private best(raw: number, zstd: number): Encoding {
    if (raw >= zstd) return 'raw';
    const idle = this.idle();
    return idle !== null && idle < MIN_IDLE_SHARE && zstd < raw * FAR ? 'raw' : 'zstd';
  }

  /**
   * Decoded bytes per ms (null: not measured yet): the median of the last samples, or with
   * fewer than 3 (no median yet) the best of them. An encoding's first try is often timed on
   * cold code or at the start of a burst: in the seed load bench the first raw try (the second
   * phase of a connector's life, as 100 requests arrived) was timed at 1-4 MB/s against 15-25
   * for later ones, and kept raw out for most of the run.
   */
  private rate(e: Encoding): number | null {
    const sorted = [...this.samples[e]].sort((a, b) => a - b);
    const n = sorted.length;
    if (n === 0) return null;
    if (n < 3) return sorted[n - 1]!;
    return n % 2 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2;
  }

  /** For logs and tests: measured throughputs (decoded MB/s) and zstd's ratio and speed. */
  get estimates(): { rawMBps: number | null; zstdMBps: number | null; ratio: number | null; compressMBps: number | null; rawWins: boolean; level: number } {
    const mbps = (r: number | null) => (r === null ? null : Math.round(r) / 1000);
    const raw = this.rate('raw');
    const zstd = this.rate('zstd');
    return {
      rawMBps: mbps(raw),
      zstdMBps: mbps(zstd),
      ratio: this.ratio === null ? null : Math.round(this.ratio * 1000) / 1000,
      compressMBps: mbps(this.speedOf(this.base)),
      rawWins: raw !== null && zstd !== null && this.best(raw, zstd) === 'raw',
      level: this.level(),
    };
  }
}

/** Chunks in a row that zstd did not shrink before ShrinkWatch stops trying, and how often it tries again. */
const MISSES = 4;
const RETRY_EVERY = 16;
/** "Did not shrink": the frame kept more than this share of the chunk. */
const NO_GAIN = 0.98;

/**
 * Stops compressing data that does not compress. Random bytes or already compressed files
 * (Parquet, images, archives) cost the whole compression time and are then stored raw anyway
 * (zstdFrameOf): an offload of 100 MB of random bytes spent three quarters of its connector CPU
 * on it.
 * After MISSES such chunks in a row the next ones are not tried, except every RETRY_EVERY-th
 * (a result can change character part-way, e.g. a table with a large binary column at the end).
 */
export class ShrinkWatch {
  private misses = 0;
  private skipped = 0;

  /** Whether to try compressing the next chunk. */
  worthTrying(): boolean {
    if (this.misses < MISSES) return true;
    if (++this.skipped < RETRY_EVERY) return false;
    this.skipped = 0;
    return true;
  }

  /** A chunk that was tried: its decoded size and the size of what compressing it gave. */
  saw(decodedBytes: number, encodedBytes: number): void {
    if (decodedBytes > 0 && encodedBytes > decodedBytes * NO_GAIN) this.misses++;
    else this.misses = 0;
  }
}

/** Chunks packed between two decisions of an OffloadLevel (4 MiB at the default chunk size). */
const ADAPT_EVERY = 8;
/** Parts packed and not yet stored above which the link, not zstd, is what an offload waits for. */
const BEHIND_PARTS = 2;
/**
 * The store keeps up when the offload's packing rate is under this many times its storing rate
 * (both since the offload began). Where zstd sets the pace, storing trails packing only by the
 * time a part takes from its last byte packed to stored: a ratio near 1. Where the link does,
 * packing runs ahead by as much as the compressor is faster (over the WAN bench's link at
 * level 6: 1.14-1.35 once a part was stored, so it still steps down at times on this 2-core
 * host, where level 6 packs about as fast as the link sends; at level 1 or 3 far more).
 */
const KEEPS_UP = 1.2;

/**
 * The zstd level of one offload, adjusted while it runs (as `zstd --adapt` does). An offload
 * only compresses, so the chooser's rule (zstd against raw, over the router link) has nothing
 * to go on for a connector that only offloads: its level stayed at the base. Over the WAN
 * bench's link that stored the 100 MB CSV as 29.0 MB (level 1) instead of 26.2 (level 6):
 * 2.75-2.82 s to the answer against 2.50-2.61 s.
 * Here the upload itself tells: every ADAPT_EVERY chunks, when the bytes packed but not yet
 * stored (parts in flight and the one being filled) exceed BEHIND_PARTS parts, the link is
 * behind the compressor; with idle CPU on the machine (MIN_IDLE_SHARE) the level goes a rung
 * up the ladder. A rung down (never below the base level) once the store keeps up: under one
 * part behind, and since the offload began the store took bytes nearly as fast as they were
 * packed (KEEPS_UP). Under a part behind alone does not say it: a part PUT while it is packed
 * is stored soon after its last byte, so right after a part is stored little is behind on a
 * slow link too (the WAN bench went 6 → 3 → 1 there and climbed back: 27.2 MB stored on
 * average, 26.9 with the rate test; level 6 throughout would store 26.2).
 * The connector starts its next offload at the level this one ended at (connector.ts): the
 * first offload over a slow link packs ~40 % of 100 MB before the link is two parts behind.
 */
export class OffloadLevel {
  private readonly rungs: number[];
  private at: number;
  private chunks = 0;
  private packedBytes = 0;
  private storedBytes = 0;
  private readonly now: () => number;
  private readonly startedAt: number;
  /** When the last part was stored. */
  private storedAt = 0;
  private readonly idle: () => number | null;

  /** start: the level the command begins with (connector.ts: the chooser's, or where the last offload ended). */
  constructor(
    start: number,
    private readonly partSize: number,
    opts: { base: number; idleShare?: () => number | null; now?: () => number },
  ) {
    this.rungs = [opts.base, ...LADDER.filter((l) => l > opts.base)];
    this.at = Math.max(0, this.rungs.filter((l) => l <= start).length - 1);
    this.idle = opts.idleShare ?? idleShare;
    this.now = opts.now ?? (() => performance.now());
    this.startedAt = this.now();
  }

  get level(): number {
    return this.rungs[this.at]!;
  }

  /** A part of `bytes` is stored. */
  stored(bytes: number): void {
    this.storedBytes += bytes;
    this.storedAt = this.now();
  }

  /** One more chunk packed, `bytes` as stored: decides every ADAPT_EVERY chunks. */
  packed(bytes: number): void {
    this.packedBytes += bytes;
    if (++this.chunks < ADAPT_EVERY) return;
    this.chunks = 0;
    const behind = this.packedBytes - this.storedBytes;
    if (behind > BEHIND_PARTS * this.partSize) {
      const idle = this.idle();
      if (idle !== null && idle >= MIN_IDLE_SHARE) this.at = Math.min(this.at + 1, this.rungs.length - 1);
    } else if (behind < this.partSize && this.storeKeepsUp()) {
      this.at = Math.max(this.at - 1, 0);
    }
  }

  /** Whether the store took the bytes about as fast as they were packed (KEEPS_UP); never before a part is stored. */
  private storeKeepsUp(): boolean {
    if (this.storedBytes === 0) return false;
    const storing = this.storedBytes / Math.max(1, this.storedAt - this.startedAt);
    const packing = this.packedBytes / Math.max(1, this.now() - this.startedAt);
    return packing < KEEPS_UP * storing;
  }
}
