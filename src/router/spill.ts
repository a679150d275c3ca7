// Sync results past a router-wide memory budget go to temporary files (one per request).
//
// Every SyncSink of this router takes the memory for its chunks from one MemoryBudget; a chunk
// that does not fit any more is written to the sink's own SpillFile instead. The files live in
// a directory of this process (`<RELAY_SPILL_DIR>/<host>.<pid>`), created at start and removed
// at a clean stop; at start the router also removes what dead routers of the same host left
// behind (a crash), and nothing else.
import { hostname } from 'node:os';
import { randomBytes } from 'node:crypto';
import { mkdir, open, readdir, rm, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import type { Logger } from '../log.js';
import type { Metrics } from './metrics.js';

/** Bytes of sync results held in memory, shared by every sync request of this router. */
export class MemoryBudget {
  private inUse = 0;

  constructor(
    readonly capacity: number,
    private readonly onChange: (used: number) => void = () => undefined,
  ) {}

  get used(): number {
    return this.inUse;
  }

  /** Takes n bytes if they fit; false (nothing taken) when the budget is used up. */
  tryTake(n: number): boolean {
    if (n > 0 && this.inUse + n > this.capacity) return false;
    this.take(n);
    return true;
  }

  /** Takes n bytes even past the capacity (the spill file failed: memory is the only place left). */
  take(n: number): void {
    this.inUse += n;
    this.onChange(this.inUse);
  }

  give(n: number): void {
    this.inUse = Math.max(0, this.inUse - n);
    this.onChange(this.inUse);
  }
}

/** One request's temporary file: positional writes and reads, removed once. */
export class SpillFile {
  private removed: Promise<void> | null = null;

  private constructor(
    readonly path: string,
    private readonly fh: FileHandle,
    private readonly onRemoved: () => void,
  ) {}

  static async create(path: string, onRemoved: () => void): Promise<SpillFile> {
    const fh = await open(path, 'wx+', 0o600);
    return new SpillFile(path, fh, onRemoved);
  }

  async write(buf: Buffer, position: number): Promise<void> {
    let done = 0;
    while (done < buf.length) {
      const { bytesWritten } = await this.fh.write(buf, done, buf.length - done, position + done);
      if (bytesWritten === 0) throw new Error(`short write to ${this.path}`);
      done += bytesWritten;
    }
  }

  /** Reads exactly `length` bytes at `position`, into the start of `into` or a fresh buffer. */
  async read(position: number, length: number, into?: Buffer): Promise<Buffer> {
    const buf = into && into.length >= length ? into.subarray(0, length) : Buffer.allocUnsafe(length);
    let done = 0;
    while (done < length) {
      const { bytesRead } = await this.fh.read(buf, done, length - done, position + done);
      if (bytesRead === 0) throw new Error(`${this.path} ends at ${position + done}, expected ${length} bytes at ${position}`);
      done += bytesRead;
    }
    return buf;
  }

  /** Closes and deletes the file (idempotent; never throws). */
  remove(): Promise<void> {
    this.removed ??= (async () => {
      await this.fh.close().catch(() => undefined);
      await rm(this.path, { force: true }).catch(() => undefined);
      this.onRemoved();
    })();
    return this.removed;
  }
}

export interface SyncSpillOptions {
  /** The budget of sync result bytes held in memory by this router (RELAY_SYNC_MEMORY_BYTES). */
  memoryBytes: number;
  /** Root of the spill directories (RELAY_SPILL_DIR); this process works in a subdirectory. */
  root: string;
}

const safeHost = () => hostname().replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 64) || 'host';

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** What the sync sinks of one router share: the memory budget, the spill directory, the counters. */
export class SyncSpill {
  private files = 0;

  private constructor(
    readonly budget: MemoryBudget,
    /** This process's own directory: every spill file is in here. */
    readonly dir: string,
    private readonly metrics: Metrics | null,
    readonly log: Logger | null,
  ) {}

  static async open(opts: SyncSpillOptions, metrics: Metrics | null = null, log: Logger | null = null): Promise<SyncSpill> {
    const host = safeHost();
    await mkdir(opts.root, { recursive: true, mode: 0o700 });
    // Leftovers of earlier runs on this host: a directory whose process is gone, or that has our
    // own pid (a restarted container is pid 1 again; our own directory does not exist yet).
    for (const name of await readdir(opts.root)) {
      const m = /^(.+)\.(\d+)$/.exec(name);
      if (!m || m[1] !== host) continue;
      const pid = Number(m[2]);
      if (pid === process.pid || !alive(pid)) {
        await rm(join(opts.root, name), { recursive: true, force: true });
        log?.info({ dir: join(opts.root, name) }, 'removed spill files left by an earlier router run');
      }
    }
    const dir = join(opts.root, `${host}.${process.pid}`);
    await mkdir(dir, { recursive: true, mode: 0o700 });
    const budget = new MemoryBudget(opts.memoryBytes, (used) => metrics?.syncMemoryBytes.set(used));
    return new SyncSpill(budget, dir, metrics, log);
  }

  /** A new temporary file for one request. */
  async createFile(requestId: string): Promise<SpillFile> {
    const path = join(this.dir, `${requestId.replace(/[^A-Za-z0-9_-]/g, '_')}.${randomBytes(4).toString('hex')}.spill`);
    const f = await SpillFile.create(path, () => this.metrics?.syncSpillFiles.set(--this.files));
    this.metrics?.syncSpillFiles.set(++this.files);
    return f;
  }

  /** Counts bytes written to spill files. */
  spilled(bytes: number): void {
    this.metrics?.syncSpillBytes.inc(bytes);
  }

  /** Removes this process's directory (at a clean stop, after every sink has ended). */
  async close(): Promise<void> {
    await rm(this.dir, { recursive: true, force: true });
  }
}
