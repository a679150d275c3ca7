// `relay demo` (registered in demo.ts): the whole data path on one machine. Starts a router
// (embedded S3 store) and a connector as child processes, generates sample data, fetches the
// 100 MB CSV in each of the three modes through the client library, runs one SQL query on it
// (DuckDB) and prints a table.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, rm, stat } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { PassThrough } from 'node:stream';
import { finished } from 'node:stream/promises';
import { tableFromIPC } from 'apache-arrow';
import { requestOffload, requestStream, requestSync, closeHttp } from '../client/index.js';
import { adminConfig } from '../config.js';
import { Xxh64Stream } from '../protocol/checksum.js';
import { toRelayError } from '../protocol/errors.js';
import type { ClientRequest } from '../protocol/wire.js';
import { addClient, addConnector, addTenant } from '../router/auth.js';
import { connectOneShot } from '../router/redis.js';
import { exitWithError } from './fail.js';
import { nodeFlagsFor } from './node-flags.js';
import { generateSampleData, salesCsvBytes } from './sample-data.js';
import { arrowPreview, renderTable } from './preview.js';

const BIN = resolve(import.meta.dirname, '../../../bin/relay.js');

function start(args: string[], env: Record<string, string>, name: string): { child: ChildProcess; lines: string[] } {
  const child = spawn(process.execPath, [...nodeFlagsFor(args[0]), BIN, ...args], { env: { ...process.env, RELAY_LOG_JSON: '1', ...env }, stdio: ['ignore', 'ignore', 'pipe'] });
  const lines: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (l) => {
    lines.push(l);
    if (lines.length > 200) lines.shift();
  });
  child.on('exit', (code) => {
    if (code && code !== 0) process.stderr.write(`demo: ${name} exited with ${code}:\n${lines.slice(-10).join('\n')}\n`);
  });
  return { child, lines };
}

async function waitFor(p: { child: ChildProcess; lines: string[] }, re: RegExp, ms: number, what: string): Promise<string> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const hit = p.lines.find((l) => re.test(l));
    if (hit) return hit;
    if (p.child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what} did not start:\n${p.lines.slice(-10).join('\n')}`);
}

async function hashFile(path: string): Promise<string> {
  const h = new Xxh64Stream();
  for await (const piece of createReadStream(path, { highWaterMark: 4 << 20 })) h.update(piece as Buffer);
  return h.digest();
}

interface Row {
  mode: string;
  dataset: string;
  bytes: number;
  seconds: number;
  verified: string;
}

function table(rows: Row[]): string {
  const head = ['mode', 'dataset', 'bytes', 'seconds', 'MB/s', 'checksum verified'];
  const body = rows.map((r) => [r.mode, r.dataset, String(r.bytes), r.seconds.toFixed(3), r.seconds > 0 ? (r.bytes / 1e6 / r.seconds).toFixed(1) : '-', r.verified]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => (i >= 2 && i <= 4 ? c.padStart(widths[i]!) : c.padEnd(widths[i]!))).join(' | ')} |`;
  return [line(head), `|${widths.map((w, i) => (i >= 2 && i <= 4 ? `${'-'.repeat(w + 1)}:` : '-'.repeat(w + 2))).join('|')}|`, ...body.map(line)].join('\n');
}

const SQL = "SELECT region, count(*) AS orders, sum(amount::DECIMAL(12, 2)) AS total FROM 'sales/100mb.csv' GROUP BY region ORDER BY region";

/**
 * One SQL request: DuckDB on the connector aggregates the big CSV and the answer comes back as
 * Arrow. Checked: the checksum, and the order counts adding up to the file's rows.
 */
async function sqlRequest(cfg: { routerUrl: string; apiKey: string }, connector: string, bigCsvBound: number, rows: Row[]): Promise<string | null> {
  const parts: Buffer[] = [];
  const out = new PassThrough();
  out.on('data', (d: Buffer) => parts.push(d));
  const label = 'SQL: sales by region (arrow)';
  try {
    const r = await requestStream(cfg, { connector, sql: SQL, database: 'files', format: 'arrow' }, out);
    const t = tableFromIPC(Buffer.concat(parts));
    const orders = t.getChild('orders')!.toArray() as BigInt64Array;
    const counted = orders.reduce((a, b) => a + b, 0n);
    const expected = BigInt(salesCsvBytes(bigCsvBound).rows);
    const ok = r.verified && counted === expected;
    rows.push({ mode: 'stream', dataset: label, bytes: r.bytes, seconds: r.seconds, verified: ok ? `yes (${r.checksum}, ${counted} rows counted)` : `NO (${counted} of ${expected} rows)` });
    return renderTable(arrowPreview(t));
  } catch (err) {
    const e = toRelayError(err);
    rows.push({ mode: 'stream', dataset: label, bytes: 0, seconds: 0, verified: `FAILED: ${e.code}: ${e.message}` });
    return null;
  }
}

/** The demo itself (`relay demo`; demo.ts registers the command and loads this module when it runs). */
export async function runDemo(o: { dir: string; bigCsvBytes: string }): Promise<void> {
  const procs: ChildProcess[] = [];
  try {
    const dir = resolve(o.dir);
    const dataDir = join(dir, 'data');
    const outDir = join(dir, 'out');
    await mkdir(outDir, { recursive: true });
    const { redisUrl } = adminConfig({});
    process.stderr.write(`demo: generating sample data in ${dataDir}\n`);
    await generateSampleData(dataDir, { bigCsvBytes: Number(o.bigCsvBytes) });

    const { redis, failure } = connectOneShot(redisUrl, 'demo', 'RELAY_REDIS_URL');
    const tenant = 'demo';
    const connectorId = 'demo-connector';
    let token: string;
    let apiKey: string;
    try {
      await addTenant(redis, tenant);
      token = await addConnector(redis, tenant, connectorId);
      apiKey = await addClient(redis, tenant);
    } catch (err) {
      redis.disconnect();
      throw failure(err);
    }
    await redis.quit();

    const router = start(['router'], { RELAY_PORT: '0', RELAY_HOST: '127.0.0.1', RELAY_REDIS_URL: redisUrl, RELAY_S3_DIR: join(dir, 's3'), RELAY_ADMIN_TOKEN: randomBytes(16).toString('hex') }, 'router');
    procs.push(router.child);
    const routerUrl = (JSON.parse(await waitFor(router, /router listening/, 30_000, 'router')) as { url: string }).url;
    // files=duckdb: SQL over the data directory's files (the demo's one SQL request).
    const connector = start(['connector', '--router', routerUrl, '--id', connectorId, '--token', token, '--data-dir', dataDir, '--database', 'files=duckdb'], {}, 'connector');
    procs.push(connector.child);
    await waitFor(router, /connector connected/, 30_000, 'connector');
    process.stderr.write(`demo: router at ${routerUrl}, connector ${connectorId} online; fetching...\n`);

    const cfg = { routerUrl, apiKey };
    const rows: Row[] = [];
    const cases: [string, string][] = [
      ['sync', 'sales/100mb.csv'],
      ['stream', 'sales/100mb.csv'],
      ['offload', 'sales/100mb.csv'],
      ['stream', 'random-3mb.bin'],
      ['sync', 'empty.bin'],
    ];
    for (const [mode, dataset] of cases) {
      const source = await hashFile(join(dataDir, dataset));
      const outFile = join(outDir, `${mode}-${dataset.replaceAll('/', '_')}`);
      const out = createWriteStream(outFile);
      const req: ClientRequest = { connector: connectorId, dataset };
      try {
        const r =
          mode === 'sync' ? await requestSync(cfg, req, out) : mode === 'stream' ? await requestStream(cfg, req, out) : await requestOffload(cfg, req, out);
        out.end();
        await finished(out);
        const written = (await stat(outFile)).size;
        const ok = r.verified && r.checksum === source && (await hashFile(outFile)) === source && written === r.bytes;
        rows.push({ mode, dataset, bytes: r.bytes, seconds: r.seconds, verified: ok ? `yes (${r.checksum})` : 'NO' });
      } catch (err) {
        out.destroy();
        const e = toRelayError(err);
        rows.push({ mode, dataset, bytes: 0, seconds: 0, verified: `FAILED: ${e.code}: ${e.message}` });
      }
      await rm(outFile, { force: true });
    }
    const sqlPreview = await sqlRequest(cfg, connectorId, Number(o.bigCsvBytes), rows);
    await closeHttp();
    process.stdout.write(`\n${table(rows)}\n\n`);
    if (sqlPreview) process.stdout.write(`${SQL}\n${sqlPreview}\n\n`);
    const failed = rows.filter((r) => !r.verified.startsWith('yes'));
    if (failed.length) throw new Error(`${failed.length} demo request(s) failed`);
  } catch (err) {
    for (const p of procs) p.kill('SIGTERM');
    exitWithError(err);
  }
  for (const p of procs) p.kill('SIGTERM');
  await Promise.all(procs.map((p) => new Promise((r) => (p.exitCode !== null ? r(null) : p.on('exit', r)))));
}
