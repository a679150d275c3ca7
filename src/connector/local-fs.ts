// The file-system calls a dataset request makes (resolve, stat, open, fstat, read, close), run
// on the event loop when the data directory is on a local file system, on libuv's thread pool
// otherwise.
//
// Why: each call through the pool is two thread switches, and on a virtual machine those cost
// more than the call itself. A 1 KB dataset request took the connector 16 context switches,
// and a plain node:http server answering a 1 KB file with stat + a read stream managed 1,750
// req/s where reading it synchronously managed 16,000-20,000 (bench/RESULTS.md, 2026-12-06).
// A local file system answers these calls from its caches in microseconds. A network or FUSE
// file system can take seconds, and a synchronous call would stop every other command and the
// event stream meanwhile, so those keep the pool. A synchronous call that is slow all the same
// (a cold disk, a network mount inside the directory) sends every call back to the pool for a
// while. Large reads always use the pool: they overlap with compression and uploads.
import { close, closeSync, fstat, fstatSync, lstat, lstatSync, open, openSync, read, readSync, realpath, realpathSync, stat, statfsSync, statSync, type Stats } from 'node:fs';

/** statfs(2) f_type of the file systems whose metadata calls are served from local caches. */
const LOCAL_FS: Record<number, string> = {
  0xef53: 'ext2/3/4',
  0x58465342: 'xfs',
  0x9123683e: 'btrfs',
  0x01021994: 'tmpfs',
  0x858458f6: 'ramfs',
  0x794c7630: 'overlayfs',
  0x2fc12fc1: 'zfs',
  0xf2f52010: 'f2fs',
  0xca451a4e: 'bcachefs',
  0x73717368: 'squashfs',
  0x52654973: 'reiserfs',
  0x3153464a: 'jfs',
};

/** A synchronous call slower than this sends calls back to the pool for SLOW_BACKOFF_MS. */
export const SLOW_SYNC_MS = 20;
export const SLOW_BACKOFF_MS = 5 * 60_000;
/** Reads up to this many bytes run synchronously (a small dataset, a file's short tail). */
export const SYNC_READ_MAX = 64 * 1024;

let enabled = false;
let poolUntil = 0;
let onSlow: ((what: string, ms: number) => void) | undefined;

export interface LocalFsDecision {
  sync: boolean;
  /** The file system's name, or why the pool is used. */
  reason: string;
}

/**
 * Decides, once at connector start, whether dataset calls may run synchronously: only on Linux,
 * for a data directory on a known local file system. slow: told when a synchronous call was slow.
 */
export function useLocalFs(dataDir: string, slow?: (what: string, ms: number) => void): LocalFsDecision {
  onSlow = slow;
  enabled = false;
  poolUntil = 0;
  if (process.platform !== 'linux') return { sync: false, reason: `not on Linux (${process.platform})` };
  let type: number;
  try {
    type = statfsSync(dataDir).type;
  } catch (err) {
    return { sync: false, reason: `statfs failed: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}` };
  }
  const name = LOCAL_FS[type];
  if (!name) return { sync: false, reason: `file system type 0x${type.toString(16)} is not a known local one` };
  enabled = true;
  return { sync: true, reason: name };
}

/** Turns synchronous calls off again (tests). */
export function usePool(): void {
  enabled = false;
}

function syncNow(): boolean {
  return enabled && Date.now() >= poolUntil;
}

/** Where the next call runs. */
export function currentMode(): 'sync' | 'pool' {
  return syncNow() ? 'sync' : 'pool';
}

/** Runs a synchronous call, timing it; a slow one sends the next calls to the pool for a while. */
export function timed<T>(what: string, fn: () => T): T {
  const t0 = performance.now();
  try {
    return fn();
  } finally {
    const ms = performance.now() - t0;
    if (ms > SLOW_SYNC_MS) {
      poolUntil = Date.now() + SLOW_BACKOFF_MS;
      onSlow?.(what, ms);
    }
  }
}

/**
 * Synchronous when allowed (and `small`: large reads always use the pool), else the callback
 * API on the pool; both settle a promise the same way.
 */
function call<T>(what: string, sync: () => T, pooled: (cb: (err: NodeJS.ErrnoException | null, v: T) => void) => void, small = true): Promise<T> {
  if (small && syncNow()) {
    try {
      return Promise.resolve(timed(what, sync));
    } catch (err) {
      return Promise.reject(err as Error);
    }
  }
  return new Promise<T>((ok, no) => pooled((err, v) => (err ? no(err) : ok(v))));
}

export const fsCalls = {
  realpath: (p: string) => call<string>('realpath', () => realpathSync(p), (cb) => realpath(p, cb)),
  stat: (p: string) => call<Stats>('stat', () => statSync(p), (cb) => stat(p, cb)),
  lstat: (p: string) => call<Stats>('lstat', () => lstatSync(p), (cb) => lstat(p, cb)),
  open: (p: string, flags: number) => call<number>('open', () => openSync(p, flags), (cb) => open(p, flags, cb)),
  fstat: (fd: number) => call<Stats>('fstat', () => fstatSync(fd), (cb) => fstat(fd, cb)),
  read: (fd: number, buf: Buffer, off: number, len: number, pos: number) =>
    call<number>('read', () => readSync(fd, buf, off, len, pos), (cb) => read(fd, buf, off, len, pos, cb), len <= SYNC_READ_MAX),
  /** Never fails: a descriptor is closed once, and there is nothing to do about an error. */
  close: (fd: number) =>
    call<void>(
      'close',
      () => {
        try {
          closeSync(fd);
        } catch {
          /* see above */
        }
      },
      (cb) => close(fd, () => cb(null, undefined)),
    ),
};
