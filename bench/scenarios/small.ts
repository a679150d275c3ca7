// Small requests: 1 KB sync results, 100 concurrent closed-loop workers for 20 s (quick: 5 s)
// after a short warm-up, one keep-alive connection per worker (undici pool). Throughput and
// latency percentiles, and the CPU each process used over the measured window: with two cores
// shared by router, connector, Redis and the load generator, that says which one is the limit.
// The same load against node:http serving the same file, straight and through ssh -R, says
// what this machine gives one request without a relay.
import { cpus } from 'node:os';
import type { Redis } from '../../src/router/redis.js';
import { DATASETS, type Scenario } from '../lib/context.js';
import { closedLoop, errorText, latencySummary, type LoadResult } from '../lib/load.js';
import { plainLoads, reqPerS, timesTunnel } from '../lib/plain-load.js';
import { cpuMeter, selfCpu } from '../lib/procs.js';
import { fmt, yesNo } from '../lib/stats.js';

const TARGET_RPS = 2000;
const TARGET_P99_MS = 50;

export async function redisPid(redis: Redis): Promise<number | undefined> {
  const info = await redis.info('server');
  const pid = Number(/^process_id:(\d+)/m.exec(info)?.[1]);
  return Number.isFinite(pid) ? pid : undefined;
}

export const small: Scenario = {
  name: 'small',
  summary: '1 KB sync results, 100 concurrent clients for 20 s (quick 5 s): req/s and p50/p95/p99, against node:http and ssh -R serving the same file',
  quick: true,
  budgetS: [240, 90],
  async run(ctx, emit) {
    const workers = 100;
    const durationS = ctx.opts.quick ? 5 : 20;
    const warmS = ctx.opts.quick ? 1 : 3;
    await ctx.ensureData('tiny');
    const plain = await plainLoads(ctx, DATASETS.tiny, { workers, warm: { durationS: warmS }, measure: { durationS } });
    const stack = await ctx.startStack();
    try {
      await ctx.startConnector(stack);
      const req = (_i: number) => ({ path: '/v1/datasets/request-sync', key: stack.clientKey, body: { connector: stack.connectorId, dataset: DATASETS.tiny }, expectBytes: 1024 });
      ctx.log('small: warm-up');
      await closedLoop(stack.routerUrl, { workers, durationS: warmS, next: req });
      const meter = await cpuMeter({ router: stack.router.child.pid, connector: stack.connector!.child.pid, redis: await redisPid(stack.redis) });
      const self0 = selfCpu();
      ctx.log(`small: ${workers} workers for ${durationS} s`);
      const r = await closedLoop(stack.routerUrl, { workers, durationS, next: req });
      const cpu = await meter();
      const benchCpu = selfCpu() - self0;
      const pct = (s: number | null | undefined, x: LoadResult) => (s == null ? '-' : `${fmt((100 * s) / x.seconds, 0)} %`);
      const row = (name: string, x: LoadResult | null, judged: boolean, c: { router: number | null; connector: number | null; redis: number | null; load: number }, skipped?: string): string[] => {
        if (!x) return [name, '-', `skipped: ${skipped}`, '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-'];
        const l = latencySummary(x.latenciesMs);
        return [
          name,
          String(x.ok),
          errorText(x.errors),
          fmt(reqPerS(x), 0),
          judged ? timesTunnel(plain, x) : '-',
          fmt(l.p50),
          fmt(l.p95),
          fmt(l.p99),
          fmt(l.max),
          judged ? `≥ ${TARGET_RPS} req/s, p99 < ${TARGET_P99_MS} ms` : '-',
          judged ? yesNo(reqPerS(x) >= TARGET_RPS && l.p99 < TARGET_P99_MS && x.errors.size === 0) : '-',
          pct(c.router, x),
          pct(c.connector, x),
          pct(c.redis, x),
          pct(c.load, x),
        ];
      };
      const used = [cpu.router, cpu.connector, cpu.redis, benchCpu].reduce<number>((a, x) => a + (x ?? 0), 0);
      emit({
        title: 'Small requests: 1 KB sync results',
        notes: [
          `${workers} closed-loop workers (one keep-alive connection each) for ${durationS} s after a ${warmS} s warm-up; every answer checked (status, length, checksum: X-Relay-Checksum for relay, the file's own for the baselines). ` +
            `Baselines, same load generator: a GET of the same 1 KB file from the plain node:http file server (stat + read stream per request), straight and through ssh -R. ` +
            `Router and connector with their defaults (the connector runs at most RELAY_CONCURRENCY = 50 commands at once). CPU: share of one core over the window (2 cores = 200 %); ` +
            `for the baselines "router" is sshd and its children, "connector" the file server plus the ssh client.`,
        ],
        head: ['case', 'requests ok', 'errors', 'req/s', '× ssh -R', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'target', 'met', 'router CPU', 'connector CPU', 'redis CPU', 'load generator CPU'],
        rows: [
          ...plain.map((p) => row(p.name, p.result, false, { router: p.cpu.tunnelServer, connector: p.cpu.fileServer, redis: null, load: p.cpu.loadGenerator }, p.skipped)),
          row('relay request-sync', r, true, { router: cpu.router ?? null, connector: cpu.connector ?? null, redis: cpu.redis ?? null, load: benchCpu }),
        ],
        after: [
          `Relay: together its processes used ${pct(used, r)} of the ${cpus().length * 100} % this machine has (other work on it not counted). ` +
            `Little's law: ${workers} requests in flight at ${TARGET_RPS} req/s means ${fmt((workers / TARGET_RPS) * 1000, 0)} ms mean latency; measured mean ${fmt(r.latenciesMs.reduce((a, b) => a + b, 0) / Math.max(1, r.latenciesMs.length), 0)} ms.`,
        ],
      });
    } finally {
      await stack.stop();
    }
  },
};
