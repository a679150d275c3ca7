// `npm run bench [-- --quick] [--runs N] [--record]`: end-to-end throughput of the three modes
// against baselines measured in the same run on the same machine.
//
// Starts a real router (embedded S3 store) and a real connector on loopback (Redis from
// RELAY_REDIS_URL, which scripts/bench.sh provides), generates the data once, then for each
// dataset fetches it N times per mode with the CLI's own client code into a file and verifies
// the bytes. Baselines: a plain node:http server streaming the same file, fetched by curl and
// by the same client code. Prints one table per dataset (medians); --record appends them,
// dated and with the machine description, to bench/RESULTS.md.
import { execFile } from 'node:child_process';
import { createReadStream, createWriteStream } from 'node:fs';
import { appendFile, rm, stat } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import type { Writable } from 'node:stream';
import { finished } from 'node:stream/promises';
import { parseArgs, promisify } from 'node:util';
import { request } from 'undici';
import { closeHttp, requestOffload, requestStream, requestSync } from '../src/client/index.js';
import { dispatcher } from '../src/client/http.js';
import { Xxh64Stream } from '../src/protocol/checksum.js';
import type { ClientRequest } from '../src/protocol/wire.js';
import { generateSampleData } from '../src/cli/sample-data.js';
import { REPO, Stack } from '../test/helpers/stack.js';

const run = promisify(execFile);
const MB = 1e6;

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
    record: { type: 'boolean', default: false },
  },
});
const RUNS = Number(args.runs ?? (args.quick ? 1 : 3));

interface Sample {
  seconds: number;
  bytes: number;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
};

async function hashFile(path: string): Promise<string> {
  const h = new Xxh64Stream();
  for await (const piece of createReadStream(path, { highWaterMark: 4 << 20 })) h.update(piece as Buffer);
  return h.digest();
}

/** A plain HTTP file server: the ceiling of "just serve the file" on this machine. */
async function fileServer(dir: string): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    const path = join(dir, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
    stat(path).then(
      (st) => {
        res.writeHead(200, { 'content-length': st.size, 'content-type': 'application/octet-stream' });
        createReadStream(path, { highWaterMark: 1 << 20 }).pipe(res);
      },
      () => res.writeHead(404).end(),
    );
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { server, url: `http://127.0.0.1:${(server.address() as AddressInfo).port}` };
}

async function timeIt(fn: () => Promise<number>): Promise<Sample> {
  const t0 = performance.now();
  const bytes = await fn();
  return { seconds: (performance.now() - t0) / 1000, bytes };
}

interface Row {
  name: string;
  samples: Sample[];
  verified: boolean;
}

function table(title: string, rows: Row[], baseline: string): string {
  const base = rows.find((r) => r.name === baseline);
  const rate = (r: Row) => median(r.samples.map((s) => s.bytes / MB / s.seconds));
  const head = ['case', 'MB', 'runs', 'median s', 'median MB/s', `× ${baseline}`, 'verified'];
  const body = rows.map((r) => [
    r.name,
    (r.samples[0]!.bytes / MB).toFixed(1),
    String(r.samples.length),
    median(r.samples.map((s) => s.seconds)).toFixed(3),
    rate(r).toFixed(1),
    base ? (rate(r) / rate(base)).toFixed(2) : '-',
    r.verified ? 'yes' : 'NO',
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i === 0 || i === 6 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(' | ')} |`;
  const rule = `|${widths.map((w, i) => (i === 0 || i === 6 ? '-'.repeat(w + 2) : `${'-'.repeat(w + 1)}:`)).join('|')}|`;
  return [`### ${title}`, '', line(head), rule, ...body.map(line)].join('\n');
}

async function machine(): Promise<string> {
  const cpu = cpus()[0]?.model ?? '?';
  const debian = await run('cat', ['/etc/debian_version']).then((r) => r.stdout.trim(), () => '?');
  return `${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Debian ${debian}, Node ${process.version}, loopback`;
}

async function main(): Promise<void> {
  const stack = await Stack.start({ connector: false });
  const servers: Server[] = [];
  try {
    process.stderr.write('bench: generating data\n');
    await generateSampleData(stack.dataDir, { bigCsvBytes: 100 * 1024 * 1024 });
    await run('bash', ['-c', `head -c ${100 * 1024 * 1024} /dev/urandom > '${join(stack.dataDir, 'random-100mb.bin')}'`]);
    await stack.startConnector();
    const { server, url: plainUrl } = await fileServer(stack.dataDir);
    servers.push(server);
    const cfg = stack.clientCfg();
    const out = join(stack.dir, 'out.bin');

    const tables: string[] = [];
    for (const dataset of ['sales/100mb.csv', 'random-100mb.bin']) {
      const source = await hashFile(join(stack.dataDir, dataset));
      const rows: Row[] = [];
      const measure = async (name: string, fetchOnce: () => Promise<number>) => {
        const row: Row = { name, samples: [], verified: true };
        for (let i = 0; i < RUNS; i++) {
          await rm(out, { force: true });
          row.samples.push(await timeIt(fetchOnce));
          row.verified &&= (await hashFile(out)) === source;
          process.stderr.write(`bench: ${dataset} ${name} run ${i + 1}: ${(row.samples.at(-1)!.bytes / MB / row.samples.at(-1)!.seconds).toFixed(1)} MB/s\n`);
        }
        rows.push(row);
      };
      const toFile = async (fn: (w: Writable) => Promise<{ bytes: number }>) => {
        const w = createWriteStream(out);
        const r = await fn(w);
        w.end();
        await finished(w);
        return r.bytes;
      };
      const req: ClientRequest = { connector: stack.connectorId, dataset };

      await measure('baseline: curl ← node:http', async () => {
        await run('curl', ['-sS', '-o', out, `${plainUrl}/${dataset}`]);
        return (await stat(out)).size;
      });
      await measure('baseline: relay client ← node:http', () =>
        toFile(async (w) => {
          const res = await request(`${plainUrl}/${dataset}`, { dispatcher: dispatcher(), highWaterMark: 1 << 20 });
          let bytes = 0;
          for await (const piece of res.body) {
            bytes += (piece as Buffer).length;
            if (!w.write(piece)) await new Promise((r) => w.once('drain', r));
          }
          return { bytes };
        }),
      );
      await measure('relay sync', () => toFile((w) => requestSync(cfg, req, w)));
      await measure('relay stream', () => toFile((w) => requestStream(cfg, req, w)));
      await measure('relay offload', () => toFile((w) => requestOffload(cfg, req, w)));
      const t = table(`Bulk: ${dataset}`, rows, 'baseline: curl ← node:http');
      process.stdout.write(`\n${t}\n`);
      tables.push(t);
    }

    if (args.record) {
      const when = new Date().toISOString().slice(0, 10);
      const text = `\n## ${when} — bulk transfers${args.quick ? ' (quick)' : ''}\n\nMachine: ${await machine()}. Runs per case: ${RUNS}.\n\n${tables.join('\n\n')}\n`;
      await appendFile(join(REPO, 'bench/RESULTS.md'), text);
      process.stderr.write('bench: appended to bench/RESULTS.md\n');
    }
  } finally {
    await closeHttp();
    for (const s of servers) s.close();
    await stack.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
