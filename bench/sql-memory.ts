// `node dist/bench/sql-memory.js [--rows N,M,...] [--formats arrow,csv,...] [--record]`: the
// connector's memory (RSS) while it streams big PostgreSQL results.
//
// Starts a real router and a connector process on loopback (Redis from RELAY_REDIS_URL,
// PostgreSQL from RELAY_TEST_PG_URL: `npm run bench:sql` starts both) with `main=` that
// database. For each format, one request-stream of
//   SELECT g AS id, md5(g::text) AS h, (g % 100000)::numeric(12,2) / 7 AS amount,
//          timestamptz '2020-01-01' + g * interval '1 second' AS ts FROM generate_series(1, N) g
// (1 and 10 million rows by default) whose bytes the client hashes and drops. Samples the
// connector's VmRSS from /proc every 100 ms. Prints one table: rows, bytes, time, RSS before,
// peak and median during, growth of the peak over the rest value. The results are hundreds of
// MB: a connector holding one would grow by that much. Bounded means the peak does not follow
// the result's size: per format, the peak at the most rows is within 64 MB of the peak at the
// fewest (ten times fewer bytes), and growth stays well under the result's size.
// --record appends the table, dated and with the machine description, to bench/RESULTS.md.
import { appendFile, readFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { parseArgs } from 'node:util';
import { closeHttp, requestStream } from '../src/client/index.js';
import { FORMATS, type Format } from '../src/protocol/wire.js';
import { REPO, Stack } from '../test/helpers/stack.js';

const { values: args } = parseArgs({
  options: {
    rows: { type: 'string', default: '1000000,10000000' },
    formats: { type: 'string', default: 'arrow,csv,parquet' },
    record: { type: 'boolean', default: false },
  },
});
const ROW_COUNTS = args.rows.split(',').map(Number);
for (const n of ROW_COUNTS) if (!Number.isInteger(n) || n < 1) throw new Error(`bad --rows ${args.rows}`);
const FORMAT_LIST = args.formats.split(',') as Format[];
for (const f of FORMAT_LIST) if (!FORMATS.includes(f) || f === 'raw') throw new Error(`unknown format ${f}`);
const PG_URL = process.env.RELAY_TEST_PG_URL;
if (!PG_URL) throw new Error('RELAY_TEST_PG_URL is not set: run `npm run bench:sql` (scripts/bench.sh starts PostgreSQL)');
const BATCH_ROWS = Number(process.env.RELAY_SQL_BATCH_ROWS || 10_000);
/** Flat in the result's size: the peak at the most rows may exceed the peak at the fewest by this much. */
const FLAT_MB = 64;

async function rssMB(pid: number): Promise<number> {
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  if (!kb) throw new Error(`no VmRSS for ${pid}`);
  return Number(kb[1]) / 1024;
}

class Sampler {
  samples: number[] = [];
  private timer: NodeJS.Timeout | undefined;
  constructor(private readonly pid: number) {}
  start(): void {
    this.samples = [];
    this.timer = setInterval(() => void rssMB(this.pid).then((v) => this.samples.push(v), () => undefined), 100);
  }
  stop(): { peak: number; median: number } {
    clearInterval(this.timer);
    const s = [...this.samples].sort((a, b) => a - b);
    return { peak: s.at(-1) ?? 0, median: s[Math.floor(s.length / 2)] ?? 0 };
  }
}

const sqlFor = (rows: number) => `SELECT g AS id, md5(g::text) AS h, (g % 100000)::numeric(12,2) / 7 AS amount,
  timestamptz '2020-01-01' + g * interval '1 second' AS ts FROM generate_series(1, ${rows}) g`;

interface Row {
  format: string;
  rows: number;
  bytes: number;
  seconds: number;
  before: number;
  peak: number;
  median: number;
  verified: boolean;
}

async function main(): Promise<void> {
  const s = await Stack.start({ connectorEnv: { RELAY_DATABASES: `main=${PG_URL}`, RELAY_SQL_TIMEOUT_S: '3600' } });
  const rows: Row[] = [];
  try {
    const pid = s.connector!.child.pid!;
    const sampler = new Sampler(pid);
    for (const format of FORMAT_LIST) for (const n of ROW_COUNTS) {
      // Settle: RSS at rest before the scenario.
      await new Promise((r) => setTimeout(r, 2000));
      const before = await rssMB(pid);
      sampler.start();
      const sink = new Writable({ write: (_c, _e, cb) => cb(), highWaterMark: 1 << 20 });
      process.stderr.write(`bench: ${n} rows as ${format}...\n`);
      const r = await requestStream(s.clientCfg(), { connector: s.connectorId, sql: sqlFor(n), format, timeout_s: 3600 }, sink);
      const { peak, median } = sampler.stop();
      rows.push({ format, rows: n, bytes: r.bytes, seconds: r.seconds, before, peak, median, verified: r.verified });
      process.stderr.write(`bench: ${format}: ${(r.bytes / 1e6).toFixed(0)} MB in ${r.seconds.toFixed(1)} s, peak RSS ${peak.toFixed(0)} MB\n`);
    }
  } finally {
    await closeHttp();
    await s.stop();
  }

  const head = `| format | rows | result MB | seconds | rows/s | before MB | peak RSS MB | median MB | growth MB (peak − before) | target | met | verified |`;
  const sep = `|--------|-----:|----------:|--------:|-------:|----------:|------------:|----------:|--------------------------:|--------|-----|----------|`;
  const lines = rows.map((r) => {
    const growth = r.peak - r.before;
    // The smallest run of the same format is the reference; the others must not grow with the result.
    const ref = rows.filter((x) => x.format === r.format).sort((a, b) => a.rows - b.rows)[0]!;
    const target = ref === r ? `growth < result (${(r.bytes / 1e6).toFixed(0)} MB)` : `peak ≤ ${(ref.peak + FLAT_MB).toFixed(0)} MB (${ref.rows.toLocaleString('en')}-row peak + ${FLAT_MB})`;
    const met = ref === r ? growth < r.bytes / 1e6 : r.peak <= ref.peak + FLAT_MB;
    return `| ${r.format} | ${r.rows.toLocaleString('en')} | ${(r.bytes / 1e6).toFixed(0)} | ${r.seconds.toFixed(1)} | ${Math.round(r.rows / r.seconds).toLocaleString('en')} | ${r.before.toFixed(1)} | ${r.peak.toFixed(1)} | ${r.median.toFixed(1)} | ${growth.toFixed(1)} | ${target} | ${met ? 'yes' : 'NO'} | ${r.verified ? 'yes' : 'NO'} |`;
  });
  const table = [head, sep, ...lines].join('\n');
  process.stdout.write(`\n${table}\n\n`);
  if (args.record) {
    const when = new Date().toISOString().slice(0, 10);
    const machine = `${cpus().length} × ${cpus()[0]?.model ?? '?'}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Node ${process.version}`;
    const text =
      `\n## ${when} — connector memory, SQL results from PostgreSQL\n\nRecorded by \`npm run bench:sql -- --record\` ` +
      `(RELAY_SQL_BATCH_ROWS ${BATCH_ROWS}). Machine: ${machine}. ` +
      `Query: \`${sqlFor(ROW_COUNTS.at(-1)!).replace(/\s+/g, ' ')}\` (and the smaller counts); the client (request-stream) hashes and drops the bytes.\n\n${table}\n`;
    await appendFile(join(REPO, 'bench/RESULTS.md'), text);
    process.stderr.write('bench: appended to bench/RESULTS.md\n');
  }
  if (rows.some((r) => !r.verified)) process.exitCode = 1;
}

await main();
