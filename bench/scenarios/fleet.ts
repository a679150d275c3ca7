// Fleet: 10,000 connectors (quick: 1,000) with open event streams on one router, simulated by
// two lightweight processes speaking the real protocol (bench/lib/fleet-sim.ts), registered in
// Redis with the project's own admin function (addConnector), many at once on one connection
// (ioredis pipelines concurrent commands). Measures the router's RSS and descriptors with every
// stream open, the time to connect them all, and for rounds (--runs, default 3; quick: 1) of
// 1,000 sync requests (quick: 50) of 1 KB to random connectors, 10 at a time: request → command
// on the stream, request → ack accepted by the router (both seen by the simulator, wall clock),
// and the client's whole request, each as the median over the rounds of the round's
// percentile. The 30 requests before them (quick: 10) meet a cold router and are reported on
// their own. Every process's CPU over the rounds says which one the latency waits for.
import { fork, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { Pool } from 'undici';
import { addClient, addConnector, addTenant } from '../../src/router/auth.js';
import { reapOnExit } from '../../test/helpers/reap.js';
import { sleep } from '../../test/helpers/stack.js';
import type { Scenario } from '../lib/context.js';
import { cpuMeter, openFds, RssSampler, rssMb, selfCpu } from '../lib/procs.js';
import { fmt, median, percentile, wallMs, yesNo } from '../lib/stats.js';
import { redisPid } from './small.js';

const TARGET_RSS_MB = 1000;
const TARGET_ACK_P99_MS = 50;
const SIM_PROCS = 2;
const COMMAND_CONCURRENCY = 10;

interface CmdSeen {
  dataset: string;
  requestId: string;
  tCmd: number;
  tAck: number;
  ackStatus: number;
  resultStatus: number;
}

/** The soft limit on open files of a process. */
async function fdLimitOf(pid: number): Promise<number | null> {
  const m = /^Max open files\s+(\d+)/m.exec(await readFile(`/proc/${pid}/limits`, 'utf8').catch(() => ''));
  return m ? Number(m[1]) : null;
}

function forkSim(): { child: ChildProcess; exited: Promise<void> } {
  const child = fork(join(import.meta.dirname, '../lib/fleet-sim.js'), [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  reapOnExit(child);
  return { child, exited };
}

export const fleet: Scenario = {
  name: 'fleet',
  summary: '10,000 connectors (quick 1,000) with open event streams: router RSS, time to connect, request → ack p50/p99 for rounds of 1,000 commands (medians over the rounds)',
  quick: true,
  budgetS: [600, 120],
  async run(ctx, emit) {
    const n = ctx.opts.quick ? 1000 : 10_000;
    // p99 of 200 requests is their second-slowest: runs of the same code gave 49 to 145 ms.
    // Of 1,000 it is the tenth-slowest, and the router's pauses are sampled, not missed.
    const commands = ctx.opts.quick ? 50 : 1000;
    const warmup = ctx.opts.quick ? 10 : 30;
    // Streams must outlive the run (the default max age would start reconnect waves).
    const stack = await ctx.startStack({ RELAY_STREAM_MAX_AGE_S: '86400' });
    const sims: { child: ChildProcess; exited: Promise<void> }[] = [];
    try {
      const routerPid = stack.router.child.pid!;
      // Node raises its soft descriptor limit to the hard one at start; below that nothing helps.
      const limit = await fdLimitOf(routerPid);
      if (limit !== null && limit < n + 500) {
        throw new Error(`the router may open ${limit} descriptors (Max open files), ${n} event streams need about ${n + 500}: raise the hard limit (ulimit -Hn) or use --quick`);
      }
      ctx.log(`fleet: registering ${n} connectors`);
      let t = performance.now();
      await addTenant(stack.redis, 'fleet');
      const clientKey = await addClient(stack.redis, 'fleet');
      const connectors = Array.from({ length: n }, (_, i) => ({ id: `cc-fleet-${String(i).padStart(5, '0')}`, token: `ct_fleet_${randomBytes(12).toString('hex')}` }));
      for (let i = 0; i < n; i += 500) await Promise.all(connectors.slice(i, i + 500).map((c) => addConnector(stack.redis, 'fleet', c.id, c.token)));
      const registerS = (performance.now() - t) / 1000;

      await sleep(1000);
      const rssIdle = await rssMb(routerPid);
      const fdsIdle = await openFds(routerPid);

      ctx.log(`fleet: opening ${n} event streams from ${SIM_PROCS} processes`);
      const seen = new Map<string, CmdSeen>();
      let dropped = 0;
      const connected: Promise<{ n: number; failed: number }>[] = [];
      const connectCpu = await cpuMeter({ router: routerPid, redis: await redisPid(stack.redis) });
      t = performance.now();
      for (let p = 0; p < SIM_PROCS; p++) {
        const sim = forkSim();
        sims.push(sim);
        connected.push(
          new Promise((resolve, reject) => {
            sim.child.on('message', (m: { t: string } & Record<string, unknown>) => {
              if (m.t === 'connected') resolve(m as unknown as { n: number; failed: number });
              else if (m.t === 'cmd') seen.set(String(m.dataset), m as unknown as CmdSeen);
              else if (m.t === 'dropped') dropped++;
            });
            sim.child.once('exit', (code) => reject(new Error(`fleet simulator exited (${code})`)));
          }),
        );
        const slice = connectors.filter((_, i) => i % SIM_PROCS === p);
        sim.child.send({ t: 'start', routerUrl: stack.routerUrl, connectors: slice, inFlight: 100 });
      }
      const results = await Promise.all(connected);
      const connectS = (performance.now() - t) / 1000;
      const cpuConnect = await connectCpu();
      const online = results.reduce((a, r) => a + r.n, 0);
      const failedStreams = results.reduce((a, r) => a + r.failed, 0);
      ctx.log(`fleet: ${online} streams open in ${connectS.toFixed(1)} s (${failedStreams} failed)`);

      await sleep(2000);
      const rss = new RssSampler(routerPid, 100);
      const rssOpen = (await rss.during(() => sleep(1000))).median;
      const fdsOpen = await openFds(routerPid);
      const fdLimit = (await fdLimitOf(routerPid)) ?? '?';

      // The first requests after a router starts run cold (JIT, the first script loads on each
      // Redis connection): 50-125 ms to the ack against 15-40 ms after ~30 of them. They are
      // sent and reported on their own, so the measured ones are the router's steady state.
      const pool = new Pool(stack.routerUrl, { connections: COMMAND_CONCURRENCY, pipelining: 1 });
      const round = async (label: string, count: number) => {
        const sent = new Map<string, number>();
        const endToEnd: number[] = [];
        const failures = new Map<string, number>();
        let issued = 0;
        const worker = async () => {
          while (issued < count) {
            const i = issued++;
            const c = connectors[Math.floor(Math.random() * online)]!;
            const dataset = `fleet/${label}/${i}`;
            const t0 = wallMs();
            sent.set(dataset, t0);
            try {
              const res = await pool.request({
                method: 'POST',
                path: '/v1/datasets/request-sync',
                headers: { authorization: `Bearer ${clientKey}`, 'content-type': 'application/json', accept: '*/*' },
                body: JSON.stringify({ connector: c.id, dataset, timeout_s: 60 }),
              });
              const body = Buffer.from(await res.body.arrayBuffer());
              if (res.statusCode === 200 && body.length === 1024) endToEnd.push(wallMs() - t0);
              else failures.set(`HTTP ${res.statusCode}`, (failures.get(`HTTP ${res.statusCode}`) ?? 0) + 1);
            } catch (err) {
              const k = (err as { code?: string }).code ?? 'error';
              failures.set(k, (failures.get(k) ?? 0) + 1);
            }
          }
        };
        await Promise.all(Array.from({ length: COMMAND_CONCURRENCY }, worker));
        await sleep(200); // the last simulator messages
        const delivery: number[] = [];
        const ack: number[] = [];
        for (const [dataset, t0] of sent) {
          const s = seen.get(dataset);
          if (!s) continue;
          delivery.push(s.tCmd - t0);
          if (s.ackStatus === 204) ack.push(s.tAck - t0);
        }
        return { endToEnd, failures, delivery, ack, errors: count - endToEnd.length };
      };
      ctx.log(`fleet: ${warmup} sync requests to random connectors (cold router, reported apart), then ${commands}, ${COMMAND_CONCURRENCY} at a time`);
      const cold = await round('cold', warmup);
      // Every process of the run, over the measured requests: on two cores the router's latency
      // is also the simulators', Redis's and the load generator's CPU.
      const simPids = Object.fromEntries(sims.map((s, i) => [`sim${i}`, s.child.pid]));
      const cmdCpu = await cpuMeter({ router: routerPid, redis: await redisPid(stack.redis), ...simPids });
      const self0 = selfCpu();
      const tRound = performance.now();
      // Rounds like the other scenarios' runs: each round's percentiles, their median judged.
      const rounds: Awaited<ReturnType<typeof round>>[] = [];
      const during = await rss.during(async () => {
        for (let r = 0; r < ctx.opts.runs; r++) rounds.push(await round(`warm${r}`, commands));
      });
      const cpuCmd = await cmdCpu();
      const roundS = (performance.now() - tRound) / 1000;
      const loadCpu = selfCpu() - self0;
      await pool.close();
      const simCpu = Object.keys(simPids).reduce((a, k) => a + (cpuCmd[k] ?? 0), 0);
      const share = (sec: number | null | undefined) => (sec == null ? '-' : `${fmt((100 * sec) / roundS, 0)} %`);
      const totalCpu = [cpuCmd.router, cpuCmd.redis, simCpu, loadCpu].reduce<number>((a, x) => a + (x ?? 0), 0);
      const failures = new Map<string, number>();
      for (const x of [cold, ...rounds]) for (const [k, v] of x.failures) failures.set(k, (failures.get(k) ?? 0) + v);
      const errors = [cold, ...rounds].reduce((a, x) => a + x.errors, 0);
      /** "p50 / p99 ms" as medians over the rounds, and each round's p99 when there are several. */
      const pcts = (pick: (x: (typeof rounds)[number]) => number[]) => {
        const p50 = median(rounds.map((x) => percentile(pick(x), 50)));
        const p99s = rounds.map((x) => percentile(pick(x), 99));
        const p99 = median(p99s);
        const each = rounds.length > 1 ? ` (p99 of each round: ${p99s.map((v) => fmt(v)).join(', ')})` : '';
        return { p99, text: `${fmt(p50)} / ${fmt(p99)} ms${each}` };
      };
      const ackStats = pcts((x) => x.ack);
      const acked = rounds.reduce((a, x) => a + x.ack.length, 0);
      const peak = Math.max(during.peak, rssOpen);
      const perConn = ((rssOpen - rssIdle) * 1000) / Math.max(1, online);
      emit({
        title: `Fleet: ${n.toLocaleString('en')} connectors on one router`,
        notes: [
          `Connectors registered with addConnector (${registerS.toFixed(1)} s for ${n}); ${SIM_PROCS} simulator processes open the event streams (100 at a time each) and answer commands with the ack and a 1 KB one-chunk result. ` +
            `RSS idle: the router before any stream; with streams: median over 1 s once all are open; peak: during the commands. ` +
            `Request → command / ack: from the client sending the sync request to the simulator reading the command / getting 204 for its ack (wall clock, same machine). ` +
            `${rounds.length} round(s) of ${commands} requests, ${COMMAND_CONCURRENCY} at a time, to random connectors, after ${warmup} the same way whose latencies are shown on their own (cold router) and not in the other rows. ` +
            `Percentiles are taken per round; the table shows their median over the rounds (the target is judged on the median p99). ` +
            `CPU: each process's share of one core over the measured rounds (each ends with a 0.2 s wait for the simulators' last messages); the router's includes V8's GC threads.`,
        ],
        head: ['measure', 'value', 'target', 'met'],
        rows: [
          ['event streams open (failed)', `${online} (${failedStreams})`, `${n}`, yesNo(online === n)],
          ['time to open them all', `${fmt(connectS, 1)} s (${fmt(online / connectS, 0)} streams/s; router CPU ${fmt(cpuConnect.router, 1)} s, Redis ${fmt(cpuConnect.redis, 1)} s)`, '-', '-'],
          ['router RSS idle → with streams → peak', `${fmt(rssIdle)} → ${fmt(rssOpen)} → ${fmt(peak)} MB (${fmt(perConn, 1)} KB per stream)`, `< ${TARGET_RSS_MB} MB`, yesNo(peak < TARGET_RSS_MB)],
          ['router open descriptors', `${fdsIdle ?? '-'} → ${fdsOpen ?? '-'} (soft limit ${fdLimit})`, '-', '-'],
          ['request → command on the stream, p50 / p99', pcts((x) => x.delivery).text, '-', '-'],
          ['request → ack accepted, p50 / p99', `${ackStats.text}; ${acked} of ${commands * rounds.length} acked`, `p99 < ${TARGET_ACK_P99_MS} ms`, yesNo(acked === commands * rounds.length && ackStats.p99 < TARGET_ACK_P99_MS)],
          ['cold: the first requests after start, ack p50 / p99', `${fmt(percentile(cold.ack, 50))} / ${fmt(percentile(cold.ack, 99))} ms (${cold.ack.length} of ${warmup})`, '-', '-'],
          ['whole sync request, p50 / p99', `${pcts((x) => x.endToEnd).text}; router CPU ${fmt(cpuCmd.router, 1)} s`, '-', '-'],
          [
            `CPU over the measured requests (${fmt(roundS, 1)} s; one core = 100 %)`,
            `router ${share(cpuCmd.router)}, simulators ${share(simCpu)}, Redis ${share(cpuCmd.redis)}, load generator ${share(loadCpu)}: ${share(totalCpu)} of ${cpus().length * 100} %`,
            '-',
            '-',
          ],
          ['errors; streams dropped during the run', `${errors}${errors ? ` (${[...failures].map(([k, v]) => `${k} ×${v}`).join(', ')})` : ''}; ${dropped}`, '0', yesNo(errors === 0 && dropped === 0)],
        ],
      });
    } finally {
      for (const s of sims) {
        if (s.child.connected) s.child.send({ t: 'stop' });
        const k = setTimeout(() => s.child.kill('SIGKILL'), 5000);
        await s.exited;
        clearTimeout(k);
      }
      await stack.stop();
    }
  },
};
