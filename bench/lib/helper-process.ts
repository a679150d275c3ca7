// Entry of the benchmark's helper processes: `node helper-process.js <kind> <json options>`.
// Each runs apart from the benchmark process so its CPU is its own and the client's work does
// not disturb its timers (the shaping proxy):
//   fileserver {dir}               a plain node:http server streaming files (the baselines' source)
//   s3         {dir, bucket}       the S3-compatible store (s3rver), as the router uses it
//   proxies    {proxies: [...]}    fault/shaping proxies (test/helpers/fault-proxy.ts), one per target
//   spawner    {}                  runs commands for the benchmark (bench/lib/spawner.ts): a stdin
//                                  line {id, cmd, args} → a stdout line {id, code, cpuS, lines}
// Prints one JSON line when ready ({port} / {endpoint} / {ports: {name: port}}) and exits when
// its stdin closes (the benchmark went away) or on SIGTERM. Proxies answer a `stats` line on
// stdin with {stats: {name: {bytesUp, bytesDown, connections}}}.
import { spawn } from 'node:child_process';
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { startDevS3 } from '../../src/router/storage.js';
import { FaultProxy, type Faults } from '../../test/helpers/fault-proxy.js';
import { reapedChildrenCpu } from './procs.js';

export interface ProxySpec {
  name: string;
  target: { host: string; port: number };
  faults: Faults;
}

const [kind, json] = process.argv.slice(2);
const opts = JSON.parse(json ?? '{}') as Record<string, unknown>;
const closers: (() => Promise<void> | void)[] = [];

async function main(): Promise<void> {
  if (kind === 'fileserver') {
    const dir = String(opts.dir);
    const server = createServer((req, res) => {
      const path = join(dir, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
      stat(path).then(
        (st) => {
          res.writeHead(200, { 'content-length': st.size, 'content-type': 'application/octet-stream' });
          // Reads of up to 1 MiB, but no larger than the file: a read stream allocates a
          // buffer of its highWaterMark per read, and 1 MiB for each 1 KB file held this server
          // to ~1,500 req/s where it serves ~5,000 (a probe, server and client in one process).
          createReadStream(path, { highWaterMark: Math.min(Math.max(st.size, 1), 1 << 20) }).pipe(res);
        },
        () => res.writeHead(404).end(),
      );
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    closers.push(() => void server.close());
    out({ port: (server.address() as AddressInfo).port });
  } else if (kind === 's3') {
    const s3 = await startDevS3(String(opts.dir), String(opts.bucket));
    closers.push(() => s3.close());
    out({ endpoint: s3.endpoint });
  } else if (kind === 'proxies') {
    const ports: Record<string, number> = {};
    const proxies = new Map<string, FaultProxy>();
    for (const p of opts.proxies as ProxySpec[]) {
      const proxy = await FaultProxy.start({ target: p.target, faults: p.faults });
      closers.push(() => proxy.close());
      ports[p.name] = proxy.port;
      proxies.set(p.name, proxy);
    }
    createInterface({ input: process.stdin }).on('line', (l) => {
      if (l.trim() !== 'stats') return;
      const stats: Record<string, { bytesUp: number; bytesDown: number; connections: number }> = {};
      for (const [name, proxy] of proxies) stats[name] = { bytesUp: proxy.stats.bytesUp, bytesDown: proxy.stats.bytesDown, connections: proxy.stats.connections };
      out({ stats });
    });
    out({ ports });
  } else if (kind === 'spawner') {
    createInterface({ input: process.stdin }).on('line', (l) => {
      const { id, cmd, args } = JSON.parse(l) as { id: number; cmd: string; args: string[] };
      // One command at a time (the benchmark awaits each), so the reaped-children delta is its own.
      const before = reapedChildrenCpu();
      const lines: string[] = [];
      const c = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      for (const s of [c.stdout, c.stderr]) createInterface({ input: s }).on('line', (x) => void (lines.length < 50 && lines.push(x)));
      c.on('error', (err) => out({ id, code: -1, cpuS: 0, lines: [err.message] }));
      c.on('close', (code) => void Promise.all([before, reapedChildrenCpu()]).then(([b, a]) => out({ id, code, cpuS: a - b, lines })));
    });
    out({ ready: true });
  } else throw new Error(`unknown helper kind ${kind}`);
}

function out(info: object): void {
  process.stdout.write(`${JSON.stringify(info)}\n`);
}

async function stop(): Promise<never> {
  const bound = setTimeout(() => process.exit(0), 3000);
  for (const c of closers) await Promise.resolve(c()).catch(() => undefined);
  clearTimeout(bound);
  process.exit(0);
}

process.stdin.on('end', () => void stop());
process.stdin.on('close', () => void stop());
process.stdin.resume();
process.on('SIGTERM', () => void stop());
main().catch((err: unknown) => {
  process.stderr.write(`bench helper ${kind}: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
