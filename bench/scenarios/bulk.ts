// Bulk: 100 MB (CSV, and random bytes in full mode) through each mode, by the client library
// and by the CLI process, against baselines measured in the same run on the same machine:
//   curl ← node:http              what the machine moves without anything in between
//   curl ← ssh -R ← node:http     the tunnel someone would use instead of Relay (stream's target)
//   relay client ← node:http      our client code alone
//   direct PUT + GET              multipart PUT of the same bytes to the same store (same part
//                                 size and parallelism as the connector), then GET (offload's target)
// Runs go round-robin over the cases (run 1 of every case, then run 2...) so a load spike on this
// shared machine does not land on one case only. CPU seconds per run are read from /proc.
import { createWriteStream } from 'node:fs';
import { open, rm, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import * as Minio from 'minio';
import { request } from 'undici';
import { closeHttp, requestOffload, requestStream, requestSync } from '../../src/client/index.js';
import { IdentityDecoder, Sink, pump } from '../../src/client/body.js';
import { dispatcher } from '../../src/client/http.js';
import { connectorConfig, routerConfig } from '../../src/config.js';
import { MAX_OFFLOAD_PARALLEL } from '../../src/connector/offload.js';
import { Xxh64Stream } from '../../src/protocol/checksum.js';
import type { ClientRequest, Mode } from '../../src/protocol/wire.js';
import { BIN, NODE_ARGS, type Stack } from '../../test/helpers/stack.js';
import type { Child } from '../lib/children.js';
import { DATASETS, type BenchContext, type Scenario } from '../lib/context.js';
import { cpuSeconds, reapedChildrenCpu, selfCpu, treeCpu } from '../lib/procs.js';
import { Sshd, sshAvailable } from '../lib/ssh.js';
import { commandsCpu, runCommand } from '../lib/spawner.js';
import { MB, fmt, median, yesNo } from '../lib/stats.js';
import type { Table } from '../lib/table.js';

export const STREAM_TARGET_MBPS = 340;
/** Untimed 100 MB streams through a fresh stack before the first round (warmStack). */
const STACK_WARMUP_STREAMS = 6;
const BUCKET = 'relay-results';

/**
 * Read buffer of hashFile, reused: a fresh 4 MiB buffer per read was 100 MB of new memory per
 * verified output, and the page faults and the GC it set off (V8 starts old-space marking on
 * external memory) landed in the next case's measurement.
 */
const HASH_BUF = Buffer.allocUnsafeSlow(4 << 20);

export async function hashFile(path: string): Promise<string> {
  const h = new Xxh64Stream();
  const f = await open(path, 'r');
  try {
    for (;;) {
      const { bytesRead } = await f.read(HASH_BUF, 0, HASH_BUF.length, null);
      if (bytesRead === 0) break;
      h.update(HASH_BUF.subarray(0, bytesRead));
    }
  } finally {
    await f.close();
  }
  return h.digest();
}

/** Runs `curl -o out url`; resolves with the bytes written. */
export async function curl(url: string, out: string): Promise<number> {
  const c = await runCommand('curl', ['-sS', '--fail', '-o', out, url]);
  if (c.code !== 0) throw new Error(`curl ${url} exited ${c.code}: ${c.lines.join(' ')}`);
  return (await stat(out)).size;
}

/** Runs the CLI (`node bin/relay.js request-MODE ... -o out`); resolves with the bytes written. */
export async function cli(stack: Stack, mode: Mode, dataset: string, out: string): Promise<number> {
  const c = await runCommand(process.execPath, [...NODE_ARGS, BIN, `request-${mode}`, stack.connectorId, dataset, '-o', out, '--router', stack.routerUrl, '--key', stack.clientKey]);
  if (c.code !== 0) throw new Error(`relay request-${mode} exited ${c.code}: ${c.lines.slice(-5).join(' ')}`);
  return (await stat(out)).size;
}

/** Writes what a client-library call produces into `out`. */
export async function toFile(out: string, fn: (w: Writable) => Promise<{ bytes: number }>): Promise<number> {
  const w = createWriteStream(out);
  const r = await fn(w);
  w.end();
  await new Promise<void>((res, rej) => {
    if (w.closed) res();
    w.once('close', () => res());
    w.once('error', rej);
  });
  return r.bytes;
}

/** The part size and parallelism the connector uses for an offload, as configured here. */
export function offloadShape(): { partSize: number; parallel: number } {
  const partSize = routerConfig({}, process.env).partSize;
  const parallel = Math.max(1, Math.min(MAX_OFFLOAD_PARALLEL, connectorConfig({ token: 'bench-only-token', id: 'bench' }, process.env).uploadParallel));
  return { partSize, parallel };
}

/**
 * Multipart PUT of a file to the store the way the connector does it (presigned part URLs, same
 * part size, same parallelism), then a GET into `out` with the minio client.
 */
export async function directPutGet(endpoint: string, file: string, out: string, key: string): Promise<number> {
  const u = new URL(endpoint);
  const s3 = new Minio.Client({ endPoint: u.hostname, port: Number(u.port), useSSL: false, accessKey: 'S3RVER', secretKey: 'S3RVER', region: 'us-east-1', pathStyle: true });
  const { partSize, parallel } = offloadShape();
  const size = (await stat(file)).size;
  const parts = Math.max(1, Math.ceil(size / partSize));
  const uploadId = await s3.initiateNewMultipartUpload(BUCKET, key, { 'Content-Type': 'application/octet-stream' });
  const fh = await open(file);
  const etags: { part: number; etag: string }[] = [];
  try {
    let next = 1;
    const worker = async () => {
      while (next <= parts) {
        const part = next++;
        const buf = Buffer.allocUnsafe(Math.min(partSize, size - (part - 1) * partSize));
        await fh.read(buf, 0, buf.length, (part - 1) * partSize);
        const url = await s3.presignedUrl('PUT', BUCKET, key, 900, { partNumber: String(part), uploadId });
        const res = await request(url, { method: 'PUT', body: buf, headers: { 'content-length': String(buf.length) } });
        await res.body.dump();
        const etag = res.headers.etag;
        if (res.statusCode !== 200 || typeof etag !== 'string') throw new Error(`direct PUT of part ${part}: HTTP ${res.statusCode}`);
        etags.push({ part, etag });
      }
    };
    await Promise.all(Array.from({ length: parallel }, worker));
  } finally {
    await fh.close();
  }
  await s3.completeMultipartUpload(BUCKET, key, uploadId, etags.sort((a, b) => a.part - b.part));
  await pipeline(await s3.getObject(BUCKET, key), createWriteStream(out, { highWaterMark: 1 << 20 }));
  await s3.removeObject(BUCKET, key).catch(() => undefined);
  return (await stat(out)).size;
}

export interface Cpu {
  router: number | null;
  connector: number | null;
  client: number | null;
  store: number | null;
}

export interface Sample {
  seconds: number;
  bytes: number;
  cpu: Cpu;
}

/** Whose CPU a case's columns show: pids summed per column (tree: with descendants). */
export interface CpuSources {
  router?: { pid: number; tree?: boolean };
  connector?: number[];
  store?: number;
}

export interface Case {
  name: string;
  baseline: boolean;
  cpu: CpuSources;
  once(out: string, run: number): Promise<number>;
  /** Untimed work just before / after each run (e.g. reading counters). */
  pre?(): Promise<void>;
  post?(): Promise<void>;
  skipped?: string;
  samples: Sample[];
  verified: boolean;
  error?: string;
}

async function sumCpu(pids: number[] | undefined): Promise<number | null> {
  if (!pids?.length) return null;
  let total = 0;
  for (const p of pids) {
    const s = await cpuSeconds(p);
    if (s === null) return null;
    total += s;
  }
  return total;
}

async function readCpu(src: CpuSources): Promise<Cpu> {
  return {
    router: src.router ? (src.router.tree ? await treeCpu(src.router.pid) : await cpuSeconds(src.router.pid)) : null,
    connector: await sumCpu(src.connector),
    // This process (the client library, or nothing while a command runs) and the commands it had run (curl, the CLI).
    client: selfCpu() + (await reapedChildrenCpu()) + commandsCpu(),
    store: src.store ? await cpuSeconds(src.store) : null,
  };
}

const delta = (a: number | null, b: number | null) => (a !== null && b !== null ? b - a : null);

/**
 * Runs every case `runs` times, round-robin, verifying each output against the source. warmup:
 * one round first that is not counted, so that no case is timed on cold code (JIT), empty buffer
 * pools or a compression choice not made yet; a long-running relay is past all of these. Before
 * each run, dirty pages from the run before (100 MB written out, or stored by the object store)
 * are flushed, so one case's writeback does not land on the next. (Collecting this process's
 * heap before each run was tried: it made the client library's next run slower, 140-180 → 240-380
 * ms of CPU per 100 MB, since V8 gives the freed pages back and the run faults them in again.)
 */
export async function measureCases(ctx: BenchContext, label: string, cases: Case[], source: string, runs: number, opts: { warmup?: boolean } = {}): Promise<void> {
  const out = join(ctx.work, 'out.bin');
  for (let r = opts.warmup ? -1 : 0; r < runs; r++) {
    for (const c of cases) {
      if (c.skipped || c.error) continue;
      await rm(out, { force: true });
      await flushDirtyPages();
      const warmup = r < 0;
      try {
        await c.pre?.();
        const before = await readCpu(c.cpu);
        const t0 = performance.now();
        const bytes = await c.once(out, r);
        const seconds = (performance.now() - t0) / 1000;
        const after = await readCpu(c.cpu);
        await c.post?.();
        if (warmup) continue;
        const cpu: Cpu = {
          router: delta(before.router, after.router),
          connector: delta(before.connector, after.connector),
          client: delta(before.client, after.client),
          store: delta(before.store, after.store),
        };
        c.samples.push({ seconds, bytes, cpu });
        c.verified &&= (await hashFile(out)) === source;
        ctx.log(`${label} ${c.name} run ${r + 1}: ${(bytes / MB / seconds).toFixed(1)} MB/s, ${seconds.toFixed(2)} s`);
      } catch (err) {
        c.error = err instanceof Error ? err.message.split('\n')[0]!.slice(0, 160) : String(err);
        ctx.log(`${label} ${c.name} failed${warmup ? ' in the warm-up' : ''}: ${c.error}`);
      }
    }
  }
  await rm(out, { force: true });
}

/**
 * Streams of a 100 MB dataset through a fresh stack before anything is timed. The router's and
 * the connector's hot code runs once per chunk, and V8 optimizes such a function only after it
 * has run a while (bytecode run, not time): traced with --trace-opt, functions were still being
 * optimized in the tenth stream with V8's default budget, in the fourth to fifth with the one
 * `relay router|connector` set (cli/main.ts). One warm-up round of the cases is 2 streams, so
 * the first dataset's stream runs were timed on code the second's were not (CSV 221-255 MB/s,
 * random bytes after it 358-360, with the same CPU per chunk once warm). Returns each stream's
 * MB/s, for the table's notes (the cold speed is part of the picture).
 */
async function warmStack(ctx: BenchContext, stack: Stack, dataset: string, streams: number): Promise<number[]> {
  const rates: number[] = [];
  const cfg = stack.clientCfg();
  for (let i = 0; i < streams; i++) {
    const t0 = performance.now();
    const bytes = await toFile(join(ctx.work, 'warm'), (w) => requestStream(cfg, { connector: stack.connectorId, dataset }, w));
    rates.push(bytes / MB / ((performance.now() - t0) / 1000));
  }
  await rm(join(ctx.work, 'warm'), { force: true });
  ctx.log(`bulk: warm-up streams of ${dataset}: ${rates.map((x) => x.toFixed(0)).join(', ')} MB/s`);
  return rates;
}

/** sync(1): writes back what earlier runs left dirty in the page cache. */
async function flushDirtyPages(): Promise<void> {
  await runCommand('sync', []);
}

export const mbps = (c: Case) => median(c.samples.map((s) => s.bytes / MB / s.seconds));
export const secs = (c: Case) => median(c.samples.map((s) => s.seconds));
const cpuCol = (c: Case, k: keyof Cpu) => {
  const xs = c.samples.map((s) => s.cpu[k]).filter((x): x is number => x !== null);
  return xs.length ? fmt(median(xs), 2) : '-';
};

/** How a relay case is judged: its baseline (same run) and its target. */
export interface Judge {
  baseline: string;
  /** 'rate': MB/s ÷ baseline MB/s; 'time': seconds ÷ baseline seconds. */
  by: 'rate' | 'time';
  target: string;
  met(c: Case, ratio: number | null): boolean | null;
}

export const CASE_HEAD = ['case', 'MB', 'runs', 'median s', 'MB/s', '× curl', 'baseline', '× baseline', 'target', 'met', 'router CPU s', 'connector CPU s', 'client CPU s', 'store CPU s', 'verified'];

export function caseRows(cases: Case[], judges: Record<string, Judge>, reference: string): string[][] {
  const byName = new Map(cases.map((c) => [c.name, c]));
  const ok = (c: Case | undefined): c is Case => !!c && c.samples.length > 0 && !c.error;
  const ref = byName.get(reference);
  return cases.map((c) => {
    if (c.samples.length === 0 || c.error) return [c.name, '-', '0', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', '-', c.skipped ? `skipped: ${c.skipped}` : `failed: ${c.error ?? '?'}`];
    const j = judges[c.name];
    const base = j ? byName.get(j.baseline) : undefined;
    const ratio = j && ok(base) ? (j.by === 'rate' ? mbps(c) / mbps(base) : secs(c) / secs(base)) : null;
    return [
      c.name,
      fmt(c.samples[0]!.bytes / MB),
      String(c.samples.length),
      fmt(secs(c), 3),
      fmt(mbps(c)),
      ok(ref) ? fmt(mbps(c) / mbps(ref), 2) : '-',
      j ? `${j.baseline} (${j.by === 'rate' ? 'MB/s' : 'time'})` : '-',
      fmt(ratio, 2),
      j?.target ?? '-',
      j ? yesNo(j.met(c, ratio)) : '-',
      cpuCol(c, 'router'),
      cpuCol(c, 'connector'),
      cpuCol(c, 'client'),
      cpuCol(c, 'store'),
      yesNo(c.verified),
    ];
  });
}

export const bulk: Scenario = {
  name: 'bulk',
  summary: '100 MB CSV (and 100 MB random bytes) per mode, library and CLI, vs curl, ssh -R and a direct PUT+GET',
  quick: true,
  budgetS: [900, 120],
  async run(ctx, emit) {
    const datasets = ctx.opts.quick ? (['csv'] as const) : (['csv', 'random'] as const);
    await ctx.ensureData(...datasets, 'tiny');
    const s3 = await ctx.s3();
    const files = await ctx.fileServer();
    const stack = await ctx.startStack();
    let sshd: Sshd | null = null;
    let tunnel: { port: number; proc: Child } | null = null;
    try {
      await ctx.startConnector(stack);
      const connectorPid = stack.connector!.child.pid!;
      const cfg = stack.clientCfg();
      // Warm-up: first-use costs (JIT, pools, connections) stay out of the measurements.
      for (const fn of [requestSync, requestStream, requestOffload]) await toFile(join(ctx.work, 'warm'), (w) => fn(cfg, { connector: stack.connectorId, dataset: DATASETS.tiny }, w));
      const warmed = await warmStack(ctx, stack, DATASETS[datasets[0]], ctx.opts.quick ? 2 : STACK_WARMUP_STREAMS);

      const noSsh = sshAvailable();
      if (!noSsh) {
        sshd = await Sshd.start(join(ctx.work, 'ssh'));
        tunnel = await sshd.tunnel(files.info.port);
      }
      const plain = `http://127.0.0.1:${files.info.port}`;
      const relayCpu: CpuSources = { router: { pid: stack.router.child.pid! }, connector: [connectorPid], store: s3.pid };
      const judges: Record<string, Judge> = {};
      const streamJudge: Judge = {
        baseline: 'curl ← ssh -R ← node:http',
        by: 'rate',
        target: `≥ ${STREAM_TARGET_MBPS} MB/s and ≥ 1.0× ssh -R`,
        met: (c, r) => mbps(c) >= STREAM_TARGET_MBPS && r !== null && r >= 1.0,
      };
      judges['relay stream'] = streamJudge;
      judges['relay stream (CLI)'] = streamJudge;
      judges['relay sync'] = { baseline: 'relay stream', by: 'rate', target: '≥ 0.8× stream', met: (_c, r) => r !== null && r >= 0.8 };
      judges['relay sync (CLI)'] = { baseline: 'relay stream (CLI)', by: 'rate', target: '≥ 0.8× stream', met: (_c, r) => r !== null && r >= 0.8 };
      const offloadJudge: Judge = { baseline: 'direct PUT + GET', by: 'time', target: 'time ≤ 1.5× PUT+GET', met: (_c, r) => r !== null && r <= 1.5 };
      judges['relay offload'] = offloadJudge;
      judges['relay offload (CLI)'] = offloadJudge;

      for (const ds of datasets) {
        const dataset = DATASETS[ds];
        const file = join(ctx.dataDir, dataset);
        const source = await hashFile(file);
        const req: ClientRequest = { connector: stack.connectorId, dataset };
        const mk = (name: string, baseline: boolean, cpu: CpuSources, once: Case['once'], skipped?: string): Case => ({ name, baseline, cpu, once, skipped, samples: [], verified: true });
        const cases: Case[] = [
          mk('curl ← node:http', true, { connector: [files.pid] }, (out) => curl(`${plain}/${dataset}`, out)),
          mk(
            'curl ← ssh -R ← node:http',
            true,
            { router: sshd ? { pid: sshd.pid, tree: true } : undefined, connector: tunnel ? [files.pid, tunnel.proc.pid] : [files.pid] },
            (out) => curl(`http://127.0.0.1:${tunnel!.port}/${dataset}`, out),
            noSsh ?? undefined,
          ),
          mk('relay client ← node:http', true, { connector: [files.pid] }, (out) =>
            toFile(out, async (w) => {
              // The client's own body path (pump → Sink: hash, batched writes), minus the relay.
              const res = await request(`${plain}/${dataset}`, { dispatcher: dispatcher(), highWaterMark: 1 << 20 });
              const sink = new Sink(w, null);
              await pump(res.body, new IdentityDecoder(sink));
              sink.release();
              return { bytes: sink.bytes };
            }),
          ),
          mk('direct PUT + GET', true, { store: s3.pid }, (out, r) => directPutGet(s3.info.endpoint, file, out, `bench/direct-${ds}-${r}`)),
          mk('relay stream', false, relayCpu, (out) => toFile(out, (w) => requestStream(cfg, req, w))),
          mk('relay sync', false, relayCpu, (out) => toFile(out, (w) => requestSync(cfg, req, w))),
          mk('relay offload', false, relayCpu, (out) => toFile(out, (w) => requestOffload(cfg, req, w))),
          mk('relay stream (CLI)', false, relayCpu, (out) => cli(stack, 'stream', dataset, out)),
        ];
        if (!ctx.opts.quick) {
          cases.push(
            mk('relay sync (CLI)', false, relayCpu, (out) => cli(stack, 'sync', dataset, out)),
            mk('relay offload (CLI)', false, relayCpu, (out) => cli(stack, 'offload', dataset, out)),
          );
        }
        await measureCases(ctx, `bulk ${dataset}`, cases, source, ctx.opts.runs, { warmup: true });
        const t: Table = {
          title: `Bulk: ${dataset}`,
          notes:
            ds === datasets[0]
              ? [
                  `Median of ${ctx.opts.runs} run(s) per case, runs interleaved, after one warm-up round that is not counted (JIT, buffer pools, the compression choice: a running relay is past them); dirty pages are flushed (sync) before every run. MB/s: decoded bytes on disk ÷ wall time from the request to the last byte written. ` +
                    `Before the first round, ${warmed.length} untimed streams of the ${DATASETS[datasets[0]]} through the library took the fresh router and connector past optimizing their per-chunk code: ${warmed.map((x) => fmt(x)).join(', ')} MB/s. ` +
                    `× curl: against curl ← node:http (the machine's ceiling). Each relay row is also compared with its own baseline from the same run (the target's). ` +
                    `CPU s per run: router = the router process (ssh -R: sshd and its children); connector = the connector (baselines: the file server, plus the ssh client); ` +
                    `client = the benchmark process and the processes it ran (curl, the CLI: its time includes starting node); store = s3rver. ssh runs with its default cipher, no compression. ` +
                    `The offload baseline PUTs the raw bytes in ${(offloadShape().partSize / 2 ** 20).toFixed(0)} MiB parts, ${offloadShape().parallel} at a time, to presigned URLs (as the connector does), then GETs them with the minio client.`,
                ]
              : ['Columns as in the table above.'],
          head: CASE_HEAD,
          rows: caseRows(cases, judges, 'curl ← node:http'),
        };
        emit(t);
      }
    } finally {
      await closeHttp();
      await tunnel?.proc.stop();
      await sshd?.stop();
      await stack.stop();
    }
  },
};
