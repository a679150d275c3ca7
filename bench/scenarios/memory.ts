// Memory: the router's RSS (VmRSS from /proc, every 100 ms) while it relays big results, per mode.
// One router and connector on loopback; the object store runs in a helper process, so the
// router's RSS holds only the router. One after the other:
//   idle          the router with a connector attached, doing nothing;
//   stream slow   one 100 MB stream whose client reads 1 MB/s and goes away after ~10 s (the
//                 router may hold only its window of chunks for it);
//   offload       one 100 MB offload (the bytes go from the connector to the store, not through
//                 the router: growth ≈ 0);
//   stream fast   one 100 MB stream read at full speed (growth target < 32 MB; after the
//                 offload, whose rest value is after a garbage collection);
//   sync          N concurrent 100 MB sync requests (half CSV, half random bytes), verified end to
//                 end (held in memory up to RELAY_SYNC_MEMORY_BYTES, the rest in spill files).
// `before` is the RSS at rest just before each case (median of one second); growth = peak − before.
import { readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { request } from 'undici';
import { closeHttp, requestOffload, requestStream, requestSync } from '../../src/client/index.js';
import { sleep, type Stack } from '../../test/helpers/stack.js';
import { DATASETS, type BenchContext, type Scenario } from '../lib/context.js';
import { RssSampler } from '../lib/procs.js';
import { MB, MiB, fmt, yesNo } from '../lib/stats.js';
import type { Table } from '../lib/table.js';

export interface MemoryOptions {
  syncRequests: number;
  streamSeconds: number;
  /** Print every RSS sample. */
  trace: boolean;
  /** Pauses between cases, and the idle window (quick: shorter). */
  settleMs: number;
}

// The router's settings (its defaults unless set in this environment, which the router inherits).
const SYNC_MEMORY_BYTES = Number(process.env.RELAY_SYNC_MEMORY_BYTES || 64 * MiB);
const CHUNK_BYTES = Number(process.env.RELAY_CHUNK_SIZE || 512 * 1024);
const STREAM_WINDOW_CHUNKS = Number(process.env.RELAY_STREAM_WINDOW_CHUNKS || 16);
const WINDOW_MB = (STREAM_WINDOW_CHUNKS * CHUNK_BYTES) / MB;
/** What allocator and GC timing add to any case (heap growth, freed memory not yet returned). */
const SLACK_MB = 16;
/** Issue 4: RSS growth while streaming 100 MB. */
const STREAM_GROWTH_MB = 32;

/** A Writable that drops what it gets (the clients verify the checksum themselves). */
const discard = () =>
  new Writable({
    highWaterMark: 1 << 20,
    write(_chunk, _enc, cb) {
      cb();
    },
  });

/** A stream request whose client reads `rate` bytes/s and goes away after `seconds`. */
async function slowStreamClient(stack: Stack, dataset: string, rate: number, seconds: number): Promise<number> {
  const ac = new AbortController();
  const res = await request(`${stack.routerUrl}/v1/datasets/request-stream`, {
    method: 'POST',
    headers: { authorization: `Bearer ${stack.clientKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ connector: stack.connectorId, dataset }),
    signal: ac.signal,
    highWaterMark: 64 * 1024,
  });
  if (res.statusCode !== 200) throw new Error(`stream request answered ${res.statusCode}: ${await res.body.text()}`);
  const t0 = performance.now();
  let got = 0;
  await new Promise<void>((resolve) => {
    const stop = setTimeout(() => {
      ac.abort();
      resolve();
    }, seconds * 1000);
    res.body.on('data', (piece: Buffer) => {
      got += piece.length;
      const ahead = got / rate - (performance.now() - t0) / 1000;
      if (ahead > 0) {
        res.body.pause();
        setTimeout(() => res.body.resume(), ahead * 1000);
      }
    });
    res.body.on('error', () => undefined);
    res.body.on('end', () => {
      clearTimeout(stop);
      resolve();
    });
  });
  return got;
}

async function spillFilesLeft(root: string): Promise<number> {
  let n = 0;
  for (const d of await readdir(root, { withFileTypes: true }).catch(() => [])) {
    if (d.isDirectory()) n += (await readdir(join(root, d.name))).length;
  }
  return n;
}

interface Row {
  scenario: string;
  before: number;
  peak: number;
  median: number;
  target: string;
  met: boolean;
  note: string;
}

export async function runMemory(ctx: BenchContext, emit: (t: Table) => void, opts: MemoryOptions): Promise<void> {
  await ctx.ensureData('csv', 'random');
  const spillRoot = join(ctx.work, 'spill');
  const stack = await ctx.startStack({ RELAY_SPILL_DIR: spillRoot });
  try {
    await ctx.startConnector(stack);
    const cfg = stack.clientCfg();
    const trace = opts.trace ? (s: number[]) => ctx.log(`rss ${s.map((x) => x.toFixed(0)).join(' ')}`) : undefined;
    const rss = new RssSampler(stack.router.child.pid!, 100, trace);
    const rows: Row[] = [];

    // Warm-up: one small request per mode, so first-use costs (code, pools) are in the baseline.
    for (const fn of [requestSync, requestStream, requestOffload]) await fn(cfg, { connector: stack.connectorId, dataset: 'sales/small.csv' }, discard());
    await sleep(opts.settleMs * 1.5);
    /** RSS at rest before a case: the median of one second. */
    const rest = async () => (await rss.during(() => sleep(1000))).median;

    ctx.log('memory: idle');
    const idle = await rss.during(() => sleep(opts.settleMs * 1.5));
    rows.push({ scenario: 'idle (connector attached)', before: idle.median, peak: idle.peak, median: idle.median, target: '-', met: true, note: `${(opts.settleMs * 1.5) / 1000} s after a warm-up request per mode` });

    ctx.log(`memory: stream, client reading 1 MB/s for ${opts.streamSeconds} s`);
    let before = await rest();
    const st = await rss.during(() => slowStreamClient(stack, DATASETS.random, MB, opts.streamSeconds));
    rows.push({
      scenario: `stream 100 MB, client at 1 MB/s, gone after ${opts.streamSeconds} s`,
      before,
      peak: st.peak,
      median: st.median,
      target: `growth ≤ window ${WINDOW_MB.toFixed(1)} MB + ${SLACK_MB} MB`,
      met: st.peak - before <= WINDOW_MB + SLACK_MB,
      note: `client read ${(st.result / MB).toFixed(1)} MB`,
    });
    await sleep(opts.settleMs);

    ctx.log('memory: offload');
    before = await rest();
    const off = await rss.during(() => requestOffload(cfg, { connector: stack.connectorId, dataset: DATASETS.random }, discard()));
    rows.push({
      scenario: 'offload 100 MB',
      before,
      peak: off.peak,
      median: off.median,
      target: `growth ≈ 0 (≤ ${SLACK_MB} MB)`,
      met: off.peak - before <= SLACK_MB,
      note: `${(off.result.bytes / MB).toFixed(1)} MB in ${off.result.seconds.toFixed(1)} s, verified ${yesNo(off.result.verified)}`,
    });
    await sleep(opts.settleMs);

    ctx.log('memory: stream 100 MB at full speed');
    before = await rest();
    const fast = await rss.during(() => requestStream(cfg, { connector: stack.connectorId, dataset: DATASETS.random }, discard()));
    rows.push({
      scenario: 'stream 100 MB, client at full speed',
      before,
      peak: fast.peak,
      median: fast.median,
      target: `growth < ${STREAM_GROWTH_MB} MB`,
      met: fast.peak - before < STREAM_GROWTH_MB && fast.result.verified,
      note: `${(fast.result.bytes / MB).toFixed(1)} MB in ${fast.result.seconds.toFixed(1)} s, verified ${yesNo(fast.result.verified)}`,
    });
    await sleep(opts.settleMs);

    ctx.log(`memory: ${opts.syncRequests} concurrent sync requests of 100 MB`);
    const scrape = async () => {
      const text = await (await fetch(`${stack.routerUrl}/metrics`)).text();
      return Number(/^relay_sync_spill_bytes_total (\S+)$/m.exec(text)?.[1] ?? 0);
    };
    const spilledBefore = await scrape();
    before = await rest();
    const t0 = performance.now();
    const sync = await rss.during(() =>
      Promise.all(
        Array.from({ length: opts.syncRequests }, (_, i) =>
          requestSync(cfg, { connector: stack.connectorId, dataset: i % 2 ? DATASETS.random : DATASETS.csv, timeout_s: 600 }, discard()),
        ),
      ),
    );
    const seconds = (performance.now() - t0) / 1000;
    const total = sync.result.reduce((n, r) => n + r.bytes, 0);
    const verified = sync.result.every((r) => r.verified);
    const spilled = (await scrape()) - spilledBefore;
    await sleep(1000);
    const left = await spillFilesLeft(spillRoot);
    rows.push({
      scenario: `sync ${opts.syncRequests} × 100 MB concurrent`,
      before,
      peak: sync.peak,
      median: sync.median,
      target: 'peak < 300 MB',
      met: sync.peak < 300 && verified && left === 0,
      note: `${(total / MB).toFixed(0)} MB in ${seconds.toFixed(1)} s, verified ${yesNo(verified)}, ${(spilled / MB).toFixed(0)} MB spilled, ${left} spill files left`,
    });

    emit({
      title: 'Router memory',
      notes: [
        `RSS of the router process (VmRSS, sampled every 100 ms); RELAY_SYNC_MEMORY_BYTES ${(SYNC_MEMORY_BYTES / MiB).toFixed(0)} MiB, ` +
          `chunks of ${CHUNK_BYTES / 1024} KiB, stream window ${STREAM_WINDOW_CHUNKS} chunks; object store in a process of its own. ` +
          '`before`: RSS at rest just before the case (it drops below the first idle once a garbage collection has run); growth = peak − before.',
      ],
      head: ['case', 'before MB', 'peak RSS MB', 'median MB', 'growth MB', 'target', 'met', 'notes'],
      rows: rows.map((r) => [r.scenario, fmt(r.before), fmt(r.peak), fmt(r.median), fmt(r.peak - r.before), r.target, yesNo(r.met), r.note]),
    });
  } finally {
    await closeHttp();
    await stack.stop();
  }
}

export const memory: Scenario = {
  name: 'memory',
  summary: 'router RSS while streaming 100 MB (fast and slow client), during an offload, and under concurrent 100 MB syncs',
  quick: true,
  budgetS: [300, 90],
  run: (ctx, emit) => runMemory(ctx, emit, ctx.opts.quick ? { syncRequests: 2, streamSeconds: 4, trace: false, settleMs: 1000 } : { syncRequests: 10, streamSeconds: 10, trace: false, settleMs: 2000 }),
};
