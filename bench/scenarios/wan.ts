// WAN: the 100 MB CSV with the connector behind a 100 Mbit/s link with 80 ms round trip. Every
// byte the connector sends, to the router and to the object store, goes through the project's
// shaping proxy (test/helpers/fault-proxy.ts, in a helper process so the client's work does not
// delay its timers): 40 ms each way, 12.5 MB/s per direction.
//   router link   the connector's --router points at a proxy in front of the router (both ways shaped)
//   store link    RELAY_S3_PUBLIC_ENDPOINT points at a proxy in front of the store: the presigned
//                 part PUTs cross the link (shaped towards the store). The presigned GET carries the
//                 same host (the router has one public store endpoint for connectors and clients),
//                 so the client's download goes through this proxy too: it pays the 80 ms round
//                 trip but is not shaped (the client is not behind the connector's link).
// Baselines through the same shaping: curl ← node:http through the proxy, and curl ← ssh -R with
// the ssh client reaching sshd through the proxy (both uncompressed, as people run them).
import { join } from 'node:path';
import { closeHttp, requestOffload, requestStream, requestSync } from '../../src/client/index.js';
import type { ClientRequest } from '../../src/protocol/wire.js';
import type { Faults } from '../../test/helpers/fault-proxy.js';
import { proxyStats, startHelper, type Child, type Helper } from '../lib/children.js';
import { DATASETS, type Scenario } from '../lib/context.js';
import type { ProxySpec } from '../lib/helper-process.js';
import { Sshd, sshAvailable } from '../lib/ssh.js';
import { CASE_HEAD, caseRows, hashFile, measureCases, secs, toFile, curl, type Case, type CpuSources, type Judge } from './bulk.js';

export const LINK_BYTES_PER_S = 12_500_000; // 100 Mbit/s
export const LINK_ONE_WAY_MS = 40; // 80 ms round trip
const LINK: Faults = { latencyMs: LINK_ONE_WAY_MS, bandwidthBytesPerSec: LINK_BYTES_PER_S };
const TARGET_S = 3;

type Ports = { ports: Record<string, number> };
const local = (port: number) => ({ host: '127.0.0.1', port });

export const wan: Scenario = {
  name: 'wan',
  summary: '100 MB CSV with the connector behind 100 Mbit/s + 80 ms RTT (shaping proxy) vs uncompressed curl and ssh -R through the same link',
  quick: true,
  budgetS: [600, 120],
  async run(ctx, emit) {
    await ctx.ensureData('csv', 'tiny');
    const s3 = await ctx.s3();
    const files = await ctx.fileServer();
    const noSsh = sshAvailable();
    const sshd = noSsh ? null : await Sshd.start(join(ctx.work, 'ssh-wan'));
    const helpers: Helper<Ports>[] = [];
    let tunnel: { port: number; proc: Child } | null = null;
    let stack: Awaited<ReturnType<typeof ctx.startStack>> | null = null;
    try {
      const s3Port = Number(new URL(s3.info.endpoint).port);
      const front: ProxySpec[] = [
        { name: 'store', target: local(s3Port), faults: { latencyMs: LINK_ONE_WAY_MS, bandwidthUpBytesPerSec: LINK_BYTES_PER_S } },
        { name: 'files', target: local(files.info.port), faults: LINK },
      ];
      if (sshd) front.push({ name: 'sshd', target: local(sshd.port), faults: LINK });
      const links = await startHelper<Ports>('proxies', { proxies: front });
      helpers.push(links);
      const p = links.info.ports;
      stack = await ctx.startStack({ RELAY_S3_PUBLIC_ENDPOINT: `http://127.0.0.1:${p.store}` });
      const routerLink = await startHelper<Ports>('proxies', { proxies: [{ name: 'router', target: local(Number(new URL(stack.routerUrl).port)), faults: LINK }] });
      helpers.push(routerLink);
      await ctx.startConnector(stack, { via: `http://127.0.0.1:${routerLink.info.ports.router}` });
      const cfg = stack.clientCfg();
      const st = stack;
      for (const fn of [requestSync, requestStream, requestOffload]) await toFile(join(ctx.work, 'warm'), (w) => fn(cfg, { connector: st.connectorId, dataset: DATASETS.tiny }, w));
      if (sshd) tunnel = await sshd.tunnel(files.info.port, p.sshd);

      const dataset = DATASETS.csv;
      const source = await hashFile(join(ctx.dataDir, dataset));
      const req: ClientRequest = { connector: stack.connectorId, dataset };
      const relayCpu: CpuSources = { router: { pid: stack.router.child.pid! }, connector: [stack.connector!.child.pid!], store: s3.pid };
      // Bytes the connector put on the link (to the router and to the store), per relay case's last run.
      const linkBytes = new Map<string, number>();
      const upBytes = async () => {
        const [a, b] = [await proxyStats(routerLink), await proxyStats(links)];
        return a.router!.bytesUp + b.store!.bytesUp;
      };
      let upBefore = 0;
      const mk = (name: string, baseline: boolean, cpu: CpuSources, once: Case['once'], skipped?: string): Case => ({
        name,
        baseline,
        cpu,
        once,
        ...(baseline
          ? {}
          : {
              pre: async () => void (upBefore = await upBytes()),
              post: async () => void linkBytes.set(name, (await upBytes()) - upBefore),
            }),
        skipped,
        samples: [],
        verified: true,
      });
      const CURL = 'curl ← node:http via link';
      const cases: Case[] = [
        mk(CURL, true, { connector: [files.pid] }, (out) => curl(`http://127.0.0.1:${p.files}/${dataset}`, out)),
        mk(
          'curl ← ssh -R via link ← node:http',
          true,
          { router: sshd ? { pid: sshd.pid, tree: true } : undefined, connector: tunnel ? [files.pid, tunnel.proc.pid] : [files.pid] },
          (out) => curl(`http://127.0.0.1:${tunnel!.port}/${dataset}`, out),
          noSsh ?? (ctx.opts.quick ? 'not in --quick' : undefined),
        ),
        mk('relay stream', false, relayCpu, (out) => toFile(out, (w) => requestStream(cfg, req, w))),
        mk('relay offload', false, relayCpu, (out) => toFile(out, (w) => requestOffload(cfg, req, w))),
        mk('relay sync', false, relayCpu, (out) => toFile(out, (w) => requestSync(cfg, req, w)), ctx.opts.quick ? 'not in --quick' : undefined),
      ];
      // Targets are per 100 MB (the CSV is 100 MiB = 104.9 MB).
      const under: Judge = { baseline: CURL, by: 'time', target: `< ${TARGET_S} s per 100 MB`, met: (c) => (secs(c) * 1e8) / c.samples[0]!.bytes < TARGET_S };
      const judges: Record<string, Judge> = {
        'relay stream': under,
        'relay offload': under,
        'relay sync': { baseline: CURL, by: 'time', target: '-', met: () => null },
      };
      await measureCases(ctx, 'wan', cases, source, ctx.opts.runs);
      emit({
        title: `WAN: ${dataset}, connector behind 100 Mbit/s and 80 ms RTT`,
        notes: [
          `Median of ${ctx.opts.runs} run(s) per case. Link: the project's shaping proxy, ${LINK_ONE_WAY_MS} ms each way, ${LINK_BYTES_PER_S / 1e6} MB/s per direction, between the connector and the router and between the connector and the store (the client's download from the store is not shaped, see bench/scenarios/wan.ts). ` +
            `The proxy models serialization and propagation delay, not TCP slow start or loss: real links are slower, never faster. The router link and the store link are shaped separately (in each mode nearly all bytes take one of them). ` +
            `Baselines move the bytes uncompressed (100 MB at 12.5 MB/s ≥ 8.4 s); × baseline is relay time ÷ baseline time.`,
        ],
        head: CASE_HEAD,
        rows: caseRows(cases, judges, CURL),
        after: [...linkBytes].map(
          ([name, bytes]) =>
            `${name}: the connector sent ${(bytes / 1e6).toFixed(1)} MB over the link (last run), ${(bytes / LINK_BYTES_PER_S).toFixed(2)} s of the link's bandwidth; the rest of its time is round trips and work not overlapped with sending.`,
        ),
      });
    } finally {
      await closeHttp();
      await tunnel?.proc.stop();
      for (const h of helpers) await h.stop();
      await sshd?.stop();
      await stack?.stop();
    }
  },
};
