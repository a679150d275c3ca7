// `node dist/bench/memory.js [--record] [--trace] [--sync-requests N] [--stream-seconds S]`: the
// router's memory (RSS) while it relays big results, per mode.
//
// Starts a real router and connector on loopback (Redis from RELAY_REDIS_URL) and an S3-compatible
// store (s3rver) in this process, so the router's RSS holds only the router. Samples VmRSS of the
// router process from /proc every 100 ms and runs, one after the other:
//   idle     the router with a connector attached, doing nothing;
//   stream   one 100 MB stream request whose client reads 1 MB/s and goes away after ~10 s
//            (the router may hold only its window of chunks for it);
//   offload  one 100 MB offload (the bytes go from the connector to the store, not through the router);
//   sync     10 concurrent 100 MB sync requests (5 CSV, 5 random bytes), verified end to end
//            (held in memory up to RELAY_SYNC_MEMORY_BYTES, the rest in spill files).
// Prints one table: RSS at rest just before each scenario, peak and median during it, growth of the
// peak over that rest value, the target. --trace prints every sample; --record appends the table, dated and
// with the machine description, to bench/RESULTS.md.
import { execFile } from 'node:child_process';
import { appendFile, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { parseArgs, promisify } from 'node:util';
import { request } from 'undici';
import { closeHttp, requestOffload, requestStream, requestSync } from '../src/client/index.js';
import { generateSampleData } from '../src/cli/sample-data.js';
import { startDevS3 } from '../src/router/storage.js';
import { REPO, Stack, sleep } from '../test/helpers/stack.js';

const run = promisify(execFile);
const MB = 1e6;
const MiB = 1024 * 1024;

const { values: args } = parseArgs({
  options: {
    record: { type: 'boolean', default: false },
    'sync-requests': { type: 'string', default: '10' },
    'stream-seconds': { type: 'string', default: '10' },
    trace: { type: 'boolean', default: false },
  },
});
const SYNC_REQUESTS = Number(args['sync-requests']);
const STREAM_SECONDS = Number(args['stream-seconds']);
// The router's settings (its defaults unless set in this environment, which the router inherits).
const SYNC_MEMORY_BYTES = Number(process.env.RELAY_SYNC_MEMORY_BYTES || 64 * MiB);
const CHUNK_BYTES = Number(process.env.RELAY_CHUNK_SIZE || 512 * 1024);
const STREAM_WINDOW_CHUNKS = Number(process.env.RELAY_STREAM_WINDOW_CHUNKS || 16);
const WINDOW_MB = (STREAM_WINDOW_CHUNKS * CHUNK_BYTES) / MB;
/** What allocator and GC timing add to any scenario (heap growth, freed memory not yet returned). */
const SLACK_MB = 16;

/** Samples the VmRSS of a process every 100 ms. */
class RssSampler {
  private timer: NodeJS.Timeout | null = null;
  private samples: number[] = [];

  constructor(private readonly pid: number) {}

  async read(): Promise<number> {
    const status = await readFile(`/proc/${this.pid}/status`, 'utf8');
    const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status);
    if (!kb) throw new Error(`no VmRSS in /proc/${this.pid}/status`);
    return (Number(kb[1]) * 1024) / MB;
  }

  start(): void {
    this.samples = [];
    const tick = () => void this.read().then((mb) => this.samples.push(mb), () => undefined);
    tick();
    this.timer = setInterval(tick, 100);
  }

  /** Stops sampling; the peak and median of the window, in MB. */
  async stop(): Promise<{ peak: number; median: number; n: number }> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.samples.push(await this.read());
    if (args.trace) process.stderr.write(`bench: rss ${this.samples.map((x) => x.toFixed(0)).join(' ')}\n`);
    const s = [...this.samples].sort((a, b) => a - b);
    return { peak: s.at(-1)!, median: s[s.length >> 1]!, n: s.length };
  }

  async during<T>(fn: () => Promise<T>): Promise<{ peak: number; median: number; n: number; result: T }> {
    this.start();
    try {
      const result = await fn();
      return { ...(await this.stop()), result };
    } catch (err) {
      await this.stop();
      throw err;
    }
  }
}

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

interface Row {
  scenario: string;
  /** RSS just before the scenario (median of the last second), MB. */
  before: number;
  peak: number;
  median: number;
  target: string;
  met: boolean;
  note: string;
}

function table(rows: Row[]): string {
  const head = ['scenario', 'before MB', 'peak RSS MB', 'median MB', 'growth MB (peak − before)', 'target', 'met', 'notes'];
  const body = rows.map((r) => [r.scenario, r.before.toFixed(1), r.peak.toFixed(1), r.median.toFixed(1), (r.peak - r.before).toFixed(1), r.target, r.met ? 'yes' : 'NO', r.note]);
  const right = new Set([1, 2, 3, 4]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (right.has(i) ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (right.has(i) ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`;
  return [line(head), rule, ...body.map(line)].join('\n');
}

async function machine(): Promise<string> {
  const cpu = cpus()[0]?.model ?? '?';
  const debian = await run('cat', ['/etc/debian_version']).then((r) => r.stdout.trim(), () => '?');
  return `${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Debian ${debian}, Node ${process.version}, loopback`;
}

async function spillFilesLeft(root: string): Promise<number> {
  let n = 0;
  for (const d of await readdir(root, { withFileTypes: true }).catch(() => [])) {
    if (d.isDirectory()) n += (await readdir(join(root, d.name))).length;
  }
  return n;
}

async function main(): Promise<void> {
  // The store runs here, not in the router: the router's RSS is the router's alone.
  const work = await mkdtemp(join(tmpdir(), 'relay-bench-memory-'));
  const s3 = await startDevS3(join(work, 's3'), 'relay-results');
  const spillRoot = join(work, 'spill');
  const stack = await Stack.start({
    connector: false,
    routerEnv: {
      RELAY_S3_ENDPOINT: s3.endpoint,
      RELAY_S3_ACCESS_KEY: 'S3RVER',
      RELAY_S3_SECRET_KEY: 'S3RVER',
      RELAY_SPILL_DIR: spillRoot,
    },
  });
  try {
    process.stderr.write('bench: generating data\n');
    await generateSampleData(stack.dataDir, { bigCsvBytes: 100 * MiB });
    await run('bash', ['-c', `head -c ${100 * MiB} /dev/urandom > '${join(stack.dataDir, 'random-100mb.bin')}'`]);
    await stack.startConnector();
    const cfg = stack.clientCfg();
    const rss = new RssSampler(stack.router.child.pid!);
    const rows: Row[] = [];

    // Warm-up: one small request per mode, so first-use costs (code, pools) are in the baseline.
    for (const fn of [requestSync, requestStream, requestOffload]) await fn(cfg, { connector: stack.connectorId, dataset: 'sales/small.csv' }, discard());
    await sleep(3000);
    /** RSS at rest before a scenario: the median of one second. */
    const rest = async () => (await rss.during(() => sleep(1000))).median;

    process.stderr.write('bench: idle\n');
    const idle = await rss.during(() => sleep(3000));
    const base = idle.median;
    rows.push({ scenario: 'idle (connector attached)', before: base, peak: idle.peak, median: idle.median, target: '-', met: true, note: '3 s after a warm-up request per mode' });

    process.stderr.write(`bench: stream, client reading 1 MB/s for ${STREAM_SECONDS} s\n`);
    let before = await rest();
    const st = await rss.during(() => slowStreamClient(stack, 'random-100mb.bin', MB, STREAM_SECONDS));
    rows.push({
      scenario: `stream 100 MB, client at 1 MB/s, gone after ${STREAM_SECONDS} s`,
      before,
      peak: st.peak,
      median: st.median,
      target: `growth ≤ window ${WINDOW_MB.toFixed(1)} MB + ${SLACK_MB} MB`,
      met: st.peak - before <= WINDOW_MB + SLACK_MB,
      note: `client read ${(st.result / MB).toFixed(1)} MB`,
    });
    await sleep(2000);

    process.stderr.write('bench: offload\n');
    before = await rest();
    const off = await rss.during(() => requestOffload(cfg, { connector: stack.connectorId, dataset: 'random-100mb.bin' }, discard()));
    rows.push({
      scenario: 'offload 100 MB',
      before,
      peak: off.peak,
      median: off.median,
      target: `growth ≈ 0 (≤ ${SLACK_MB} MB)`,
      met: off.peak - before <= SLACK_MB,
      note: `${(off.result.bytes / MB).toFixed(1)} MB in ${off.result.seconds.toFixed(1)} s, verified ${off.result.verified ? 'yes' : 'NO'}`,
    });
    await sleep(2000);

    process.stderr.write(`bench: ${SYNC_REQUESTS} concurrent sync requests of 100 MB\n`);
    const scrape = async () => {
      const text = await (await fetch(`${stack.routerUrl}/metrics`)).text();
      return Number(/^relay_sync_spill_bytes_total (\S+)$/m.exec(text)?.[1] ?? 0);
    };
    const spilledBefore = await scrape();
    before = await rest();
    const t0 = performance.now();
    const sync = await rss.during(() =>
      Promise.all(
        Array.from({ length: SYNC_REQUESTS }, (_, i) =>
          requestSync(cfg, { connector: stack.connectorId, dataset: i % 2 ? 'random-100mb.bin' : 'sales/100mb.csv', timeout_s: 600 }, discard()),
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
      scenario: `sync ${SYNC_REQUESTS} × 100 MB concurrent`,
      before,
      peak: sync.peak,
      median: sync.median,
      target: 'peak < 300 MB',
      met: sync.peak < 300 && verified && left === 0,
      note: `${(total / MB).toFixed(0)} MB in ${seconds.toFixed(1)} s, verified ${verified ? 'yes' : 'NO'}, ${(spilled / MB).toFixed(0)} MB spilled, ${left} spill files left`,
    });

    const t = table(rows);
    process.stdout.write(`\n${t}\n`);
    if (args.record) {
      const when = new Date().toISOString().slice(0, 10);
      const text =
        `\n## ${when} — router memory\n\nRecorded by \`node dist/bench/memory.js --record\`. Machine: ${await machine()}. ` +
        `RSS of the router process (VmRSS, sampled every 100 ms); RELAY_SYNC_MEMORY_BYTES ${(SYNC_MEMORY_BYTES / MiB).toFixed(0)} MiB, ` +
        `chunks of ${CHUNK_BYTES / 1024} KiB, stream window ${STREAM_WINDOW_CHUNKS} chunks; object store in the benchmark process. ` +
        `\`before\`: RSS at rest just before the scenario (it drops below the first idle once a garbage collection has run).\n\n${t}\n`;
      await appendFile(join(REPO, 'bench/RESULTS.md'), text);
      process.stderr.write('bench: appended to bench/RESULTS.md\n');
    }
  } finally {
    await closeHttp();
    await stack.stop();
    await s3.close();
    await rm(work, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
