// What every scenario shares: options, the work directory, the datasets (generated once), the
// object store process, and how a scenario starts its router and connectors.
import { execFile } from 'node:child_process';
import { existsSync, rmSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { cpus, loadavg, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { generateSampleData } from '../../src/cli/sample-data.js';
import { Stack, csv, run, type Proc } from '../../test/helpers/stack.js';
import { startHelper, type Helper } from './children.js';
import { stopSpawner } from './spawner.js';
import { MiB } from './stats.js';
import type { Table } from './table.js';

const exec = promisify(execFile);

export interface BenchOptions {
  quick: boolean;
  /** Runs per measured case (medians). */
  runs: number;
  record: boolean;
}

export const DATASETS = {
  csv: 'sales/100mb.csv',
  random: 'random-100mb.bin',
  tiny: 'bench/1kb.csv',
  seed: 'bench/1mb.csv',
} as const;

export class BenchContext {
  readonly dataDir: string;
  private s3Helper: Helper<{ endpoint: string }> | null = null;
  private fileHelper: Helper<{ port: number }> | null = null;
  private generated = new Set<string>();

  constructor(
    readonly opts: BenchOptions,
    readonly work: string,
  ) {
    this.dataDir = join(work, 'data');
  }

  static async create(opts: BenchOptions): Promise<BenchContext> {
    const work = await mkdtemp(join(tmpdir(), 'relay-bench-'));
    await mkdir(join(work, 'data'));
    // Also on an aborted run (watchdog, Ctrl-C): 200+ MB of data must not pile up in /tmp.
    process.once('exit', () => rmSync(work, { recursive: true, force: true }));
    return new BenchContext(opts, work);
  }

  log(msg: string): void {
    process.stderr.write(`bench: ${msg}\n`);
  }

  /** Generates a dataset once (the 100 MB files take a few seconds). */
  async ensureData(...which: (keyof typeof DATASETS)[]): Promise<void> {
    for (const w of which) {
      if (this.generated.has(w)) continue;
      const path = join(this.dataDir, DATASETS[w]);
      await mkdir(join(path, '..'), { recursive: true });
      if (w === 'csv' && !existsSync(path)) {
        this.log('generating sales/100mb.csv');
        await generateSampleData(this.dataDir, { bigCsvBytes: 100 * MiB });
      } else if (w === 'random') {
        this.log('generating random-100mb.bin');
        await exec('bash', ['-c', `head -c ${100 * MiB} /dev/urandom > '${path}'`]);
      } else if (w === 'tiny') await writeFile(path, csv(1024));
      else if (w === 'seed') await writeFile(path, csv(MiB));
      this.generated.add(w);
    }
  }

  /** The object store (s3rver) in a process of its own, shared by every scenario. */
  async s3(): Promise<Helper<{ endpoint: string }>> {
    this.s3Helper ??= await startHelper<{ endpoint: string }>('s3', { dir: join(this.work, 's3'), bucket: 'relay-results' });
    return this.s3Helper;
  }

  /** A plain node:http file server over the data directory, in a process of its own. */
  async fileServer(): Promise<Helper<{ port: number }>> {
    this.fileHelper ??= await startHelper<{ port: number }>('fileserver', { dir: this.dataDir });
    return this.fileHelper;
  }

  /** A router (real process, Redis from RELAY_REDIS_URL, flushed) using the shared store. */
  async startStack(routerEnv: Record<string, string> = {}): Promise<Stack> {
    const s3 = await this.s3();
    return Stack.start({
      connector: false,
      routerEnv: {
        RELAY_S3_ENDPOINT: s3.info.endpoint,
        RELAY_S3_ACCESS_KEY: 'S3RVER',
        RELAY_S3_SECRET_KEY: 'S3RVER',
        RELAY_SPILL_DIR: join(this.work, 'spill'),
        ...routerEnv,
      },
    });
  }

  /** A connector process serving the shared data directory; the stack's own one unless id/token say otherwise. */
  async startConnector(stack: Stack, opts: { id?: string; token?: string; via?: string; env?: Record<string, string> } = {}): Promise<Proc> {
    const id = opts.id ?? stack.connectorId;
    const p = run(['connector', '--router', opts.via ?? stack.routerUrl, '--id', id, '--token', opts.token ?? stack.connectorToken, '--data-dir', this.dataDir], opts.env ?? {});
    if (id === stack.connectorId) stack.connector = p;
    try {
      await stack.waitOnline(id, true, 30_000);
    } catch (err) {
      p.child.kill('SIGKILL');
      throw err;
    }
    return p;
  }

  async close(): Promise<void> {
    await stopSpawner();
    await this.s3Helper?.stop();
    await this.fileHelper?.stop();
    await rm(this.work, { recursive: true, force: true });
  }
}

export interface Scenario {
  /** --only name. */
  name: string;
  /** What it measures (README, --help). */
  summary: string;
  /** Part of --quick. */
  quick: boolean;
  /** Upper bound on the scenario's wall time (full, quick), seconds: past it the run is aborted. */
  budgetS: [number, number];
  run(ctx: BenchContext, emit: (t: Table) => void): Promise<void>;
}

export async function machine(): Promise<string> {
  const cpu = cpus()[0]?.model ?? '?';
  const debian = await exec('cat', ['/etc/debian_version']).then((r) => r.stdout.trim(), () => '?');
  return `${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, Debian ${debian}, Node ${process.version}, loopback`;
}

export const loadAverage = (): string => loadavg().map((x) => x.toFixed(2)).join(', ');
