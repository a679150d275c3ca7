// `npm run soak -- --minutes N [--concurrency C] [--routers R] [--record]`: mixed requests
// (all three modes, results from 0 bytes to 100 MB) for N minutes while a fault-injecting
// proxy between the connector and the router cuts event streams, answers 502, corrupts and
// resets uploads, adds latency and squeezes bandwidth, the connector and the router are
// killed now and then, Redis is restarted, the router's link to Redis is cut, and the object
// store is unreachable for a few seconds (the object store and Redis are processes of the
// soak's own). With --routers 2 or more, the routers share Redis and the store behind a
// round-robin balancer, so uploads and re-attaches land on other instances than the client's
// answer (router/handoff.ts), and a router kill takes one of them. Every request must end
// byte-identical or with an explicit protocol error: one line per mode says requested /
// byte-identical / explicit error / lost / corrupt. Exits 1 when anything was lost or corrupt.
import { createReadStream } from 'node:fs';
import { appendFile, mkdtemp, rm } from 'node:fs/promises';
import { cpus, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { randomBytes, randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { closeHttp, requestOffload, requestStream, requestSync } from '../src/client/index.js';
import { Xxh64Stream } from '../src/protocol/checksum.js';
import { RelayError } from '../src/protocol/errors.js';
import { generateSampleData } from '../src/cli/sample-data.js';
import { startBalancer } from '../test/helpers/balancer.js';
import { FaultProxy, type Faults } from '../test/helpers/fault-proxy.js';
import { RedisServer } from '../test/helpers/redis-server.js';
import { REPO, Stack, sleep, type Proc } from '../test/helpers/stack.js';
import { startHelper } from './lib/children.js';

const { values: args } = parseArgs({
  options: {
    minutes: { type: 'string', default: '1' },
    concurrency: { type: 'string', default: '4' },
    routers: { type: 'string', default: '1' },
    seed: { type: 'string' },
    record: { type: 'boolean', default: false },
  },
});
const MINUTES = Number(args.minutes);
const CONCURRENCY = Number(args.concurrency);
const ROUTERS = Number(args.routers);
if (!(MINUTES > 0) || !(CONCURRENCY >= 1) || !(Number.isInteger(ROUTERS) && ROUTERS >= 1 && ROUTERS <= 4)) {
  process.stderr.write('soak: --minutes must be > 0, --concurrency ≥ 1, --routers from 1 to 4\n');
  process.exit(2);
}
/** A request that has not ended this long after its own timeout is counted as lost. */
const TIMEOUT_S = 180;
const LOST_AFTER_MS = (TIMEOUT_S + 60) * 1000;

type Mode = 'sync' | 'stream' | 'offload';
const MODES: Mode[] = ['sync', 'stream', 'offload'];
type Outcome = 'ok' | 'error' | 'lost' | 'corrupt';

interface Tally {
  requested: number;
  ok: number;
  error: number;
  lost: number;
  corrupt: number;
  bytes: number;
  codes: Map<string, number>;
}

async function hashFile(path: string): Promise<string> {
  const h = new Xxh64Stream();
  for await (const piece of createReadStream(path, { highWaterMark: 4 << 20 })) h.update(piece as Buffer);
  return h.digest();
}

/** Counts and hashes what a request writes, holding none of it. */
function hashingOutput(): { out: Writable; digest: () => string; bytes: () => number } {
  const h = new Xxh64Stream();
  let n = 0;
  const out = new Writable({
    write(chunk: Buffer, _e, cb) {
      h.update(chunk);
      n += chunk.length;
      cb();
    },
  });
  return { out, digest: () => h.digest(), bytes: () => n };
}

/** Small results often, the 100 MB CSV now and then. */
function pick<T>(items: [T, number][]): T {
  const total = items.reduce((n, [, w]) => n + w, 0);
  let r = Math.random() * total;
  for (const [item, w] of items) if ((r -= w) < 0) return item;
  return items[0]![0];
}

const FAULTS: [string, Partial<Faults> | 'cut' | 'kill-connector' | 'kill-router' | 'restart-redis' | 'cut-redis' | 'store-down', number][] = [
  ['event streams cut', 'cut', 3],
  ['5 % uploads answered 502', { http502Rate: 0.05 }, 3],
  ['5 % uploads corrupted', { corruptRate: 0.05 }, 3],
  ['5 % uploads truncated', { truncateRate: 0.05 }, 2],
  ['resets (0.2 % of segments)', { resetRate: 0.002 }, 2],
  ['latency 40 ms each way', { latencyMs: 40 }, 2],
  ['bandwidth 30 MB/s', { bandwidthBytesPerSec: 30e6 }, 2],
  ['connector killed (SIGKILL) and restarted', 'kill-connector', 1],
  // Clients re-attach with their Idempotency-Key; the store is a process of its own, as in
  // production (the router's embedded dev store would die with it).
  ['router killed (SIGKILL) and restarted', 'kill-router', 1],
  // SHUTDOWN keeps the AOF (fsync every second, as docker-compose.yml); the router and the
  // connector's BullMQ worker wait for Redis and carry on.
  ['Redis restarted (down 1–2 s)', 'restart-redis', 1],
  // Commands in flight lose their replies; ioredis sends them again, so they run twice.
  ['router↔Redis connections cut', 'cut-redis', 2],
  // Everyone's connections to it cut and refused: the router's, the connector's part uploads
  // and the clients' downloads.
  ['object store unreachable (2–4 s)', 'store-down', 1],
];

async function machine(): Promise<string> {
  return `${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}, loopback`;
}

/** Errors logged, a few whole lines of each message: printed at the end, to say what they were. */
const errorSamples = new Map<string, string[]>();

/** Counts the warnings and errors a process logs (pino JSON: level 40 and up), by message. */
function tallyWarnings(p: Proc, who: string, into: Map<string, number>): void {
  for (const stream of [p.child.stdout!, p.child.stderr!]) {
    createInterface({ input: stream }).on('line', (l) => {
      if (!l.startsWith('{')) return;
      try {
        const { level, msg } = JSON.parse(l) as { level?: number; msg?: string };
        if ((level ?? 0) < 40 || !msg) return;
        const key = `${who}: ${msg}`;
        into.set(key, (into.get(key) ?? 0) + 1);
        const samples = errorSamples.get(key) ?? [];
        if ((level ?? 0) >= 50 && samples.length < 3) errorSamples.set(key, [...samples, l.slice(0, 2000)]);
      } catch {
        // not a log line
      }
    });
  }
}

async function main(): Promise<void> {
  const s3Dir = await mkdtemp(join(tmpdir(), 'relay-soak-s3-'));
  const s3 = await startHelper<{ endpoint: string }>('s3', { dir: s3Dir, bucket: 'relay-results' });
  const redis = await RedisServer.start({ fsync: 'everysec' });
  const toRedis = await FaultProxy.start({ target: { host: '127.0.0.1', port: redis.port } });
  const storeUrl = new URL(s3.info.endpoint);
  const toStore = await FaultProxy.start({ target: { host: storeUrl.hostname, port: Number(storeUrl.port) } });
  const stack = await Stack.start({
    connector: false,
    redisUrl: redis.url,
    routerEnv: {
      RELAY_REDIS_URL: `redis://127.0.0.1:${toRedis.port}`,
      RELAY_PROGRESS_TIMEOUT_S: '10',
      RELAY_ACK_TIMEOUT_S: '5',
      RELAY_BACKOFF_S: '0.5',
      RELAY_ATTEMPTS: '6',
      RELAY_S3_ENDPOINT: `http://127.0.0.1:${toStore.port}`,
      RELAY_S3_ACCESS_KEY: 'S3RVER',
      RELAY_S3_SECRET_KEY: 'S3RVER',
    },
  });
  // What the processes logged as warnings: the recoveries behind the table (a stalled chunk
  // replaced, an unstored key taken over, a complete found done), and anything unexpected.
  const warnings = new Map<string, number>();
  tallyWarnings(stack.router, 'router', warnings);
  // Further instances keep their ports across kills, so the balancer's targets stay valid.
  const peers: Awaited<ReturnType<Stack['startPeerRouter']>>[] = [];
  for (let i = 1; i < ROUTERS; i++) {
    peers.push(await stack.startPeerRouter());
    tallyWarnings(peers.at(-1)!.proc, 'router', warnings);
  }
  const lb = peers.length > 0 ? await startBalancer([stack.routerUrl, ...peers.map((p) => p.url)]) : null;
  const router = new URL(lb?.url ?? stack.routerUrl);
  const toRouter = await FaultProxy.start({ target: { host: router.hostname, port: Number(router.port) } });
  const clientCfg = { ...stack.clientCfg(), routerUrl: lb?.url ?? stack.routerUrl };
  const startConnector = async () => tallyWarnings(await stack.startConnector({}, toRouter.url()), 'connector', warnings);
  const tallies = new Map<Mode, Tally>(MODES.map((m) => [m, { requested: 0, ok: 0, error: 0, lost: 0, corrupt: 0, bytes: 0, codes: new Map() }]));
  const faultLog = new Map<string, number>();
  try {
    process.stderr.write('soak: generating data\n');
    await generateSampleData(stack.dataDir);
    await stack.writeData('random-10mb.bin', randomBytes(10 * 1024 * 1024));
    await stack.writeData('random-600kb.bin', randomBytes(600 * 1024));
    const datasets: [string, number][] = [
      ['empty.bin', 2],
      ['one.bin', 2],
      ['sales/small.csv', 3],
      ['random-600kb.bin', 3],
      ['random-3mb.bin', 3],
      ['random-10mb.bin', 2],
      ['sales/100mb.csv', 1],
    ];
    const hashes = new Map<string, string>();
    for (const [d] of datasets) hashes.set(d, await hashFile(join(stack.dataDir, d)));
    await startConnector();

    const endAt = Date.now() + MINUTES * 60_000;
    const where = lb ? `, ${ROUTERS} routers behind a round-robin balancer` : '';
    process.stderr.write(`soak: ${MINUTES} min, ${CONCURRENCY} concurrent requests${where}, faults on the connector's link\n`);

    // The fault schedule: a random fault for 2–4 s, then 2–4 s of calm, until the end.
    const chaos = (async () => {
      while (Date.now() < endAt) {
        await sleep(2000 + Math.random() * 2000);
        if (Date.now() >= endAt) break;
        const [name, fault] = pick(FAULTS.map(([n, f, w]) => [[n, f] as const, w]));
        faultLog.set(name, (faultLog.get(name) ?? 0) + 1);
        if (fault === 'cut') toRouter.cutAll();
        else if (fault === 'kill-connector') {
          await stack.killConnector('SIGKILL');
          await startConnector();
        } else if (fault === 'kill-router') {
          const k = Math.floor(Math.random() * ROUTERS);
          if (k === 0) {
            await stack.restartRouter('SIGKILL');
            tallyWarnings(stack.router, 'router', warnings);
          } else {
            const old = peers[k - 1]!;
            old.proc.child.kill('SIGKILL');
            await old.proc.exited;
            peers[k - 1] = await stack.startPeerRouter({ RELAY_PORT: new URL(old.url).port });
            tallyWarnings(peers[k - 1]!.proc, 'router', warnings);
          }
        } else if (fault === 'restart-redis') {
          await redis.restart('SIGTERM', 1000 + Math.random() * 1000);
        } else if (fault === 'cut-redis') {
          toRedis.cutAll();
        } else if (fault === 'store-down') {
          toStore.set({ refuse: true });
          toStore.cutAll();
          await sleep(2000 + Math.random() * 2000);
          toStore.clear();
        } else {
          // Corruption only where the protocol carries a checksum (binary uploads); a corrupted
          // JSON control call is answered 400 and fails its request (explicitly).
          const matchPath = fault.corruptRate ? /\/stream\/chunk\/|\/result$/ : /\/v1\/requests\//;
          toRouter.set({ ...fault, matchPath });
          await sleep(2000 + Math.random() * 2000);
          toRouter.clear();
        }
      }
    })();

    const worker = async () => {
      while (Date.now() < endAt) {
        const mode = MODES[Math.floor(Math.random() * MODES.length)]!;
        const dataset = pick(datasets);
        const t = tallies.get(mode)!;
        t.requested++;
        const { out, digest, bytes } = hashingOutput();
        const fn = mode === 'sync' ? requestSync : mode === 'stream' ? requestStream : requestOffload;
        const run = fn(clientCfg, { connector: stack.connectorId, dataset, timeout_s: TIMEOUT_S }, out, { idempotencyKey: randomUUID() });
        let timer: NodeJS.Timeout | undefined;
        const lost = new Promise<'lost'>((r) => (timer = setTimeout(() => r('lost'), LOST_AFTER_MS)));
        let outcome: Outcome;
        try {
          const r = await Promise.race([run, lost]);
          if (r === 'lost') outcome = 'lost';
          else outcome = digest() === hashes.get(dataset) && r.checksum === hashes.get(dataset) ? 'ok' : 'corrupt';
        } catch (err) {
          // CHECKSUM_MISMATCH is the system catching a corruption and saying so: explicit.
          if (err instanceof RelayError && err.code && err.message) {
            outcome = 'error';
            t.codes.set(err.code, (t.codes.get(err.code) ?? 0) + 1);
            process.stderr.write(`soak: explicit error: ${mode} ${dataset}${err.requestId ? ` (${err.requestId})` : ''}: ${err.code}: ${err.message.slice(0, 300)}\n`);
          } else outcome = 'corrupt';
        } finally {
          clearTimeout(timer);
        }
        t[outcome]++;
        if (outcome === 'ok') t.bytes += bytes();
        if (outcome === 'lost' || outcome === 'corrupt') process.stderr.write(`soak: ${outcome}: ${mode} ${dataset}\n`);
      }
    };
    const progress = setInterval(() => {
      const all = [...tallies.values()];
      process.stderr.write(`soak: ${Math.max(0, Math.round((endAt - Date.now()) / 1000))} s left, ${all.reduce((n, t) => n + t.requested, 0)} requested, ${all.reduce((n, t) => n + t.ok, 0)} ok\n`);
    }, 30_000);
    await Promise.all(Array.from({ length: CONCURRENCY }, worker));
    clearInterval(progress);
    await chaos;

    const head = ['mode', 'requested', 'byte-identical', 'explicit error', 'lost', 'corrupt', 'MB moved', 'error codes'];
    const rows = MODES.map((m) => {
      const t = tallies.get(m)!;
      const codes = [...t.codes].map(([c, n]) => `${c}×${n}`).join(' ') || '-';
      return [m, t.requested, t.ok, t.error, t.lost, t.corrupt, (t.bytes / 1e6).toFixed(0), codes].map(String);
    });
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    const line = (c: string[]) => `| ${c.map((x, i) => (i === 0 || i === 7 ? x.padEnd(widths[i]!) : x.padStart(widths[i]!))).join(' | ')} |`;
    const table = [line(head), `|${widths.map((w, i) => (i === 0 || i === 7 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`, ...rows.map(line)].join('\n');
    const faults = [...faultLog].map(([n, c]) => `${n} ×${c}`).join(', ');
    const logged = [...warnings].sort((a, b) => b[1] - a[1]).slice(0, 20).map(([m, c]) => `${m} ×${c}`).join('; ') || 'none';
    process.stdout.write(`\n${table}\n\nfaults injected: ${faults}\nwarnings logged: ${logged}\n`);
    for (const [key, lines] of errorSamples) process.stderr.write(`soak: logged as an error, ${key}:\n${lines.map((l) => `  ${l}`).join('\n')}\n`);
    if (args.record) {
      const when = new Date().toISOString().slice(0, 10);
      await appendFile(
        join(REPO, 'bench/RESULTS.md'),
        `\n## ${when} — soak, ${MINUTES} min\n\nMachine: ${await machine()}. ${CONCURRENCY} concurrent requests${where}, random mode and dataset (0 B to 100 MB), faults on the connector's link to the router.\n\n${table}\n\nFaults injected: ${faults}.\n\nWarnings logged: ${logged}.\n`,
      );
    }
    const bad = [...tallies.values()].reduce((n, t) => n + t.lost + t.corrupt, 0);
    if (bad > 0) process.exitCode = 1;
  } finally {
    await closeHttp();
    await stack.stop();
    await lb?.close();
    await toRouter.close();
    await toRedis.close();
    await toStore.close();
    await s3.stop();
    await redis.stop();
    await rm(s3Dir, { recursive: true, force: true });
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`soak: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
