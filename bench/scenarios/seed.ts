// Seed load: 1,000 sync requests (quick: 100) for 1 MB results from 100 concurrent workers,
// spread over 5 tenants, each with its own client key and its own connector process (request i
// goes to tenant i mod 5), after an uncounted round of the same requests. Latency percentiles,
// throughput, errors. Baselines: the same load against node:http serving the same file,
// straight and through ssh -R.
import { randomBytes } from 'node:crypto';
import { addClient, addConnector, addTenant } from '../../src/router/auth.js';
import type { Proc } from '../../test/helpers/stack.js';
import { DATASETS, type Scenario } from '../lib/context.js';
import { closedLoop, errorText, latencySummary, type LoadResult } from '../lib/load.js';
import { plainLoads, reqPerS, timesTunnel } from '../lib/plain-load.js';
import { cpuMeter } from '../lib/procs.js';
import { MiB, fmt, yesNo } from '../lib/stats.js';
import { redisPid } from './small.js';

const TENANTS = 5;
const TARGET_P50_MS = 100;

export const seed: Scenario = {
  name: 'seed',
  summary: '1,000 sync requests of 1 MB (quick 100), 100 concurrent, 5 tenants with a connector each: p50/p95/p99, errors, against node:http and ssh -R serving the same file',
  quick: true,
  budgetS: [360, 120],
  async run(ctx, emit) {
    const workers = 100;
    const count = ctx.opts.quick ? 100 : 1000;
    await ctx.ensureData('seed');
    const plain = await plainLoads(ctx, DATASETS.seed, { workers, warm: { count: workers }, measure: { count } });
    const stack = await ctx.startStack();
    const connectors: Proc[] = [];
    try {
      const tenants: { key: string; connector: string }[] = [];
      for (let t = 1; t <= TENANTS; t++) {
        const tenant = `seed${t}`;
        const connector = `cc-seed-0${t}`;
        const token = `ct_seed_${randomBytes(12).toString('hex')}`;
        await addTenant(stack.redis, tenant);
        await addConnector(stack.redis, tenant, connector, token);
        tenants.push({ key: await addClient(stack.redis, tenant), connector });
        connectors.push(await ctx.startConnector(stack, { id: connector, token }));
      }
      const next = (i: number) => {
        const t = tenants[i % TENANTS]!;
        return { path: '/v1/datasets/request-sync', key: t.key, body: { connector: t.connector, dataset: DATASETS.seed }, expectBytes: MiB };
      };
      // One request per tenant first: connections and code paths warm, as on a running service.
      await closedLoop(stack.routerUrl, { workers: TENANTS, count: TENANTS, next });
      // Then the same load once, not counted: a running relay is past its start (JIT, buffer
      // pools, and each connector's compression choice, which needs about ten phases of 20-60
      // chunks under this load; its first tries run as the first 100 requests arrive).
      ctx.log(`seed: warm-up, ${count} requests`);
      await closedLoop(stack.routerUrl, { workers, count, next });
      const meter = await cpuMeter({
        router: stack.router.child.pid,
        redis: await redisPid(stack.redis),
        ...Object.fromEntries(connectors.map((c, i) => [`c${i}`, c.child.pid])),
      });
      ctx.log(`seed: ${count} requests, ${workers} workers, ${TENANTS} tenants`);
      const r = await closedLoop(stack.routerUrl, { workers, count, next });
      const cpu = await meter();
      const connectorCpu = connectors.reduce<number | null>((n, _c, i) => (n === null || cpu[`c${i}`] == null ? null : n + cpu[`c${i}`]!), 0);
      const row = (name: string, x: LoadResult | null, judged: boolean, c: { router: number | null; connectors: number | null; redis: number | null }, skipped?: string): string[] => {
        if (!x) return [name, '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', `skipped: ${skipped}`];
        const l = latencySummary(x.latenciesMs);
        const failed = count - x.ok;
        return [
          name,
          String(count),
          String(x.ok),
          String(failed),
          fmt(reqPerS(x), 0),
          fmt((x.ok * MiB) / 1e6 / x.seconds),
          judged ? timesTunnel(plain, x) : '-',
          fmt(l.p50),
          fmt(l.p95),
          fmt(l.p99),
          fmt(l.max),
          judged ? `p50 < ${TARGET_P50_MS} ms, 0 errors` : '-',
          judged ? yesNo(l.p50 < TARGET_P50_MS && failed === 0) : '-',
          fmt(c.router, 1),
          fmt(c.connectors, 1),
          fmt(c.redis, 1),
          errorText(x.errors),
        ];
      };
      emit({
        title: 'Seed load: 1 MB sync results, 5 tenants',
        notes: [
          `${count} requests from ${workers} closed-loop workers, request i for tenant i mod ${TENANTS} (its own client key and connector); every answer checked (status, length, checksum). ` +
            `Relay: measured after one uncounted round of the same ${count} requests (a running relay: JIT, pools, the connectors' compression choice); the baselines after ${workers}. ` +
            `Latency from sending the request to the last byte of the answer. Baselines, same load generator: a GET of the same 1 MB file from the plain node:http file server, straight and through ssh -R ` +
            `("router" CPU is then sshd and its children, "connectors" the file server plus the ssh client).`,
        ],
        head: ['case', 'requests', 'ok', 'errors', 'req/s', 'MB/s', '× ssh -R', 'p50 ms', 'p95 ms', 'p99 ms', 'max ms', 'target', 'met', 'router CPU s', 'connectors CPU s', 'redis CPU s', 'error codes'],
        rows: [
          ...plain.map((p) => row(p.name, p.result, false, { router: p.cpu.tunnelServer, connectors: p.cpu.fileServer, redis: null }, p.skipped)),
          row('relay request-sync', r, true, { router: cpu.router ?? null, connectors: connectorCpu, redis: cpu.redis ?? null }),
        ],
        after: [
          `Little's law: ${workers} requests of 1 MB in flight with p50 < ${TARGET_P50_MS} ms needs about ${fmt(workers / (TARGET_P50_MS / 1000), 0)} req/s, i.e. ~${fmt((workers / (TARGET_P50_MS / 1000)) * MiB / 1e6, 0)} MB/s of sync results; ` +
            `relay measured ${fmt((r.ok * MiB) / 1e6 / r.seconds, 0)} MB/s (compare the baselines above and the bulk table's relay sync and curl ← node:http rows).`,
        ],
      });
    } finally {
      for (const c of connectors) {
        if (c.child.exitCode === null) {
          c.child.kill('SIGTERM');
          const t = setTimeout(() => c.child.kill('SIGKILL'), 5000);
          await c.exited;
          clearTimeout(t);
        }
      }
      await stack.stop();
    }
  },
};
