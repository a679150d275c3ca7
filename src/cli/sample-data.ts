// Sample data for the demo, the benchmarks and the tests: a connector data directory with a big
// and a small sales CSV, edge-case binaries (0 bytes, 1 byte, incompressible random) and a small
// JSON file. Deterministic (except the random file) and idempotent: a file that already exists
// with the expected size is left alone, so a second run costs a few stat calls.
//
// The big CSV is generated at several hundred MB/s: rows are encoded straight into ~4 MiB byte
// blocks, each written with one write call while the next block is filled; no per-row fs calls.
import type { Command } from 'commander';
import { randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, stat, type FileHandle } from 'node:fs/promises';
import { dirname, join } from 'node:path';

export interface SampleFile {
  /** Path relative to the data directory, with forward slashes (the dataset name). */
  name: string;
  bytes: number;
}

export interface SampleDataOptions {
  /** Upper bound for sales/100mb.csv; the file ends at the last full row that fits. Default 100 MiB. */
  bigCsvBytes?: number;
  /** Size of the string blocks written at once (tests use small blocks). Default 4 MiB. */
  blockBytes?: number;
}

export const SALES_HEADER = 'id,date,region,product,quantity,amount,customer\n';
export const DEFAULT_BIG_CSV_BYTES = 100 * 1024 * 1024;
export const SMALL_CSV_ROWS = 1000;
const RANDOM_BYTES = 3 * 1024 * 1024;
const BIG_SEED = 0x5eed_0001;
const SMALL_SEED = 0x5eed_0002;

const REGIONS = ['north', 'south', 'east', 'west', 'central', 'emea', 'apac', 'latam'];
// [product, unit price in cents]
const PRODUCTS: [string, number][] = [
  ['widget', 1999], ['gadget', 4950], ['sprocket', 325], ['gizmo', 12900], ['flange', 780],
  ['bracket', 215], ['valve', 6400], ['gearbox', 89900], ['sensor', 15750], ['cable-5m', 1299],
  ['cable-10m', 2199], ['pump', 45900], ['filter', 1850], ['bearing', 560], ['relay-module', 3490],
  ['controller', 129900], ['display', 24900], ['battery-pack', 18900], ['charger', 3999], ['enclosure', 7600],
  ['fan', 1425], ['heatsink', 990], ['mount-kit', 2750], ['service-plan', 49900],
];
const CUSTOMER_FIRST = ['Acme', 'Globex', 'Initech', 'Umbrella', 'Stark', 'Wayne', 'Hooli', 'Vandelay', 'Soylent', 'Tyrell',
  'Cyberdyne', 'Wonka', 'Gringotts', 'Monarch', 'Aperture', 'Oscorp', 'Pied Piper', 'Nakatomi', 'Massive Dynamic', 'Dunder Mifflin',
  'Blue Sun', 'Virtucon', 'Gekko', 'Sterling', 'Prestige', 'Zorg', 'Ollivander', 'Bluth', 'Kramerica', 'Los Pollos'];
const CUSTOMER_SECOND = ['Logistics', 'Retail', 'Industries', 'Labs', 'Holdings', 'Foods', 'Energy', 'Systems', 'Trading', 'Works',
  'Partners', 'Supply', 'Motors', 'Pharma', 'Media', 'Group', 'Analytics', 'Outfitters', 'Robotics', 'Textiles',
  'Freight', 'Mining', 'Bank', 'Studios', 'Farms', 'Marine', 'Aviation', 'Hotels', 'Software', 'Chemicals', 'Imports', 'Exports'];
const CUSTOMERS = CUSTOMER_FIRST.flatMap((a) => CUSTOMER_SECOND.map((b) => `${a} ${b}`)); // 960 names, no commas or quotes

const DATES: string[] = [];
for (let t = Date.UTC(2024, 0, 1); t <= Date.UTC(2025, 11, 31); t += 86_400_000) DATES.push(new Date(t).toISOString().slice(0, 10));

// Rows are encoded straight into bytes (string building and number formatting are what make a
// naive generator slow): every text field is pre-encoded with its trailing separator.
const enc = (s: string) => Uint8Array.from(s, (c) => c.charCodeAt(0));
const DATE_BYTES = DATES.map((d) => enc(`${d},`));
const REGION_BYTES = REGIONS.map((r) => enc(`${r},`));
const PRODUCT_BYTES = PRODUCTS.map(([p]) => enc(`${p},`));
const CUSTOMER_BYTES = CUSTOMERS.map((c) => enc(`${c}\n`));
/** Longest possible row for ids below 1e12, so a block buffer never overflows. */
const MAX_ROW_BYTES = 13 + 11 + Math.max(...REGION_BYTES.map((b) => b.length)) + Math.max(...PRODUCT_BYTES.map((b) => b.length)) + 4 + 14 +
  Math.max(...CUSTOMER_BYTES.map((b) => b.length));

const digits = (n: number): number =>
  n < 10 ? 1 : n < 100 ? 2 : n < 1e3 ? 3 : n < 1e4 ? 4 : n < 1e5 ? 5 : n < 1e6 ? 6 : n < 1e7 ? 7 : n < 1e8 ? 8 : n < 1e9 ? 9 : String(n).length;

function putBytes(buf: Uint8Array, p: number, src: Uint8Array): number {
  for (let i = 0; i < src.length; i++) buf[p + i] = src[i]!;
  return p + src.length;
}

function putInt(buf: Uint8Array, p: number, n: number): number {
  const end = p + digits(n);
  let q = end;
  do {
    const d = n % 10;
    buf[--q] = 48 + d;
    n = (n - d) / 10;
  } while (n > 0);
  return end;
}

/** Deterministic sales rows (xorshift32). `next()` draws a row; `put()` encodes it; `length()` measures it without encoding. */
class SalesRows {
  private x: number;
  id = 0;
  private date = 0;
  private region = 0;
  private product = 0;
  private qty = 0;
  private cents = 0;
  private customer = 0;

  constructor(seed: number) {
    this.x = seed >>> 0 || 1;
  }

  next(): void {
    let x = this.x;
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    const a = x >>> 0;
    x ^= x << 13; x ^= x >>> 17; x ^= x << 5;
    const b = x >>> 0;
    this.x = x;
    this.id++;
    this.date = a % DATES.length;
    this.region = (a >>> 10) & 7;
    this.product = (a >>> 13) % PRODUCTS.length;
    // Mostly small orders, now and then a bulk one.
    this.qty = (b & 15) === 0 ? 20 + ((b >>> 4) % 80) : 1 + ((b >>> 4) % 12);
    const discount = (b >>> 11) % 16; // percent
    this.cents = Math.floor((PRODUCTS[this.product]![1] * this.qty * (100 - discount)) / 100);
    this.customer = (b >>> 15) % CUSTOMERS.length;
  }

  /** Encodes the current row at buf[p..]; returns the end offset. */
  put(buf: Uint8Array, p: number): number {
    p = putInt(buf, p, this.id);
    buf[p++] = 44; // ,
    p = putBytes(buf, p, DATE_BYTES[this.date]!);
    p = putBytes(buf, p, REGION_BYTES[this.region]!);
    p = putBytes(buf, p, PRODUCT_BYTES[this.product]!);
    p = putInt(buf, p, this.qty);
    buf[p++] = 44;
    const c = this.cents % 100;
    p = putInt(buf, p, (this.cents - c) / 100);
    buf[p++] = 46; // .
    buf[p++] = 48 + ((c / 10) | 0);
    buf[p++] = 48 + (c % 10);
    buf[p++] = 44;
    return putBytes(buf, p, CUSTOMER_BYTES[this.customer]!);
  }

  length(): number {
    return digits(this.id) + 1 + DATE_BYTES[this.date]!.length + REGION_BYTES[this.region]!.length + PRODUCT_BYTES[this.product]!.length +
      digits(this.qty) + 1 + digits(Math.floor(this.cents / 100)) + 4 + CUSTOMER_BYTES[this.customer]!.length;
  }
}

/** The exact size of sales/100mb.csv for a given bound: the header plus every row that fits. */
export function salesCsvBytes(bound: number): { bytes: number; rows: number } {
  const rows = new SalesRows(BIG_SEED);
  let bytes = SALES_HEADER.length;
  for (;;) {
    rows.next();
    const n = rows.length();
    if (bytes + n > bound) return { bytes, rows: rows.id - 1 };
    bytes += n;
  }
}

function smallCsv(): Buffer {
  const rows = new SalesRows(SMALL_SEED);
  const buf = Buffer.allocUnsafe(SALES_HEADER.length + SMALL_CSV_ROWS * MAX_ROW_BYTES);
  let p = buf.write(SALES_HEADER, 'latin1');
  for (let i = 0; i < SMALL_CSV_ROWS; i++) {
    rows.next();
    p = rows.put(buf, p);
  }
  return buf.subarray(0, p);
}

function eventsJson(): string {
  const types = ['connector.connected', 'request.created', 'request.acked', 'chunk.stored', 'request.completed', 'connector.disconnected'];
  const events = Array.from({ length: 40 }, (_, i) => ({
    id: i + 1,
    ts: new Date(Date.UTC(2025, 0, 15, 9, 0, 0) + i * 1500).toISOString(),
    type: types[i % types.length],
    connector: `cc-28-aa-0${(i % 3) + 1}`,
    bytes: (i * 7919) % 65_536,
    ok: i % 11 !== 10,
  }));
  return JSON.stringify(events, null, 2) + '\n';
}

async function sizeOf(path: string): Promise<number | undefined> {
  try {
    const s = await stat(path);
    return s.isFile() ? s.size : undefined;
  } catch {
    return undefined;
  }
}

async function writeAll(fh: FileHandle, buf: Buffer): Promise<void> {
  for (let off = 0; off < buf.length; ) {
    const { bytesWritten } = await fh.write(buf, off, buf.length - off);
    off += bytesWritten;
  }
}

/** Writes to a temporary name, then renames: a crash never leaves a half file under the real name. */
async function atomicWrite(path: string, fill: (fh: FileHandle) => Promise<void>): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`;
  const fh = await open(tmp, 'w');
  try {
    await fill(fh);
    await fh.close();
    await rename(tmp, path);
  } catch (err) {
    await fh.close().catch(() => undefined);
    await rm(tmp, { force: true });
    throw err;
  }
}

async function writeSalesCsv(path: string, bound: number, blockBytes: number): Promise<void> {
  await atomicWrite(path, async (fh) => {
    const rows = new SalesRows(BIG_SEED);
    // Two block buffers: one being written while the other is filled.
    const size = Math.min(blockBytes, bound) + SALES_HEADER.length + MAX_ROW_BYTES;
    const bufs = [Buffer.allocUnsafe(size), Buffer.allocUnsafe(size)];
    let which = 0;
    let buf = bufs[0]!;
    let p = buf.write(SALES_HEADER, 'latin1');
    let total = p; // bytes generated so far, this block included
    let pending: Promise<void> | undefined;
    let done = false;
    while (!done) {
      for (;;) {
        rows.next();
        const end = rows.put(buf, p);
        if (total + (end - p) > bound) {
          done = true; // this row does not fit: the file ends before it
          break;
        }
        total += end - p;
        p = end;
        if (p >= blockBytes) break;
      }
      if (pending) await pending;
      pending = writeAll(fh, buf.subarray(0, p));
      which ^= 1;
      buf = bufs[which]!;
      p = 0;
    }
    if (pending) await pending;
  });
}

/**
 * Writes the sample data set into `dir` and returns every file with its real size. Files that
 * already exist with the expected size are kept (random-3mb.bin keeps its old random bytes).
 */
export async function generateSampleData(dir: string, opts: SampleDataOptions = {}): Promise<{ files: SampleFile[] }> {
  const bound = opts.bigCsvBytes ?? DEFAULT_BIG_CSV_BYTES;
  const blockBytes = opts.blockBytes ?? 4 * 1024 * 1024;
  if (!Number.isSafeInteger(bound) || bound < SALES_HEADER.length) {
    throw new RangeError(`bigCsvBytes must be an integer ≥ ${SALES_HEADER.length}, got ${bound}`);
  }
  if (!Number.isSafeInteger(blockBytes) || blockBytes < 1) throw new RangeError(`blockBytes must be a positive integer, got ${blockBytes}`);
  await mkdir(dir, { recursive: true });

  const small = smallCsv();
  const events = eventsJson();
  const plan: { name: string; bytes: number; write: (path: string) => Promise<void> }[] = [
    { name: 'sales/100mb.csv', bytes: salesCsvBytes(bound).bytes, write: (p) => writeSalesCsv(p, bound, blockBytes) },
    { name: 'sales/small.csv', bytes: small.length, write: (p) => atomicWrite(p, (fh) => writeAll(fh, small)) },
    { name: 'empty.bin', bytes: 0, write: (p) => atomicWrite(p, async () => undefined) },
    { name: 'one.bin', bytes: 1, write: (p) => atomicWrite(p, (fh) => writeAll(fh, Buffer.from([0x2a]))) },
    { name: 'random-3mb.bin', bytes: RANDOM_BYTES, write: (p) => atomicWrite(p, (fh) => writeAll(fh, randomBytes(RANDOM_BYTES))) },
    { name: 'events.json', bytes: Buffer.byteLength(events), write: (p) => atomicWrite(p, (fh) => writeAll(fh, Buffer.from(events))) },
  ];

  const files: SampleFile[] = [];
  for (const f of plan) {
    const path = join(dir, ...f.name.split('/'));
    if ((await sizeOf(path)) !== f.bytes) await f.write(path);
    const bytes = await sizeOf(path);
    if (bytes === undefined) throw new Error(`sample data: ${path} was not written`);
    files.push({ name: f.name, bytes });
  }
  return { files };
}

/** `relay sample-data [dir]`: writes the sample data set (the connector's data directory). */
export function register(program: Command): void {
  program
    .command('sample-data')
    .description('write the sample data set (sales CSVs, edge-case binaries, JSON) into DIR')
    .argument('[dir]', 'target directory', 'data')
    .option('--big-csv-bytes <n>', 'upper bound for sales/100mb.csv in bytes', String(DEFAULT_BIG_CSV_BYTES))
    .action(async (dir: string, o: { bigCsvBytes: string }) => {
      const started = performance.now();
      const { files } = await generateSampleData(dir, { bigCsvBytes: Number(o.bigCsvBytes) });
      for (const f of files) process.stdout.write(`${String(f.bytes).padStart(12)}  ${join(dir, f.name)}\n`);
      process.stderr.write(`sample data ready in ${((performance.now() - started) / 1000).toFixed(2)} s\n`);
    });
}
