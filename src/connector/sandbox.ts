// Confines dataset names to the data directory. A name arrives from the network, so every
// check here runs before anything is opened: opening alone can block (a FIFO) or have side
// effects (a device), and the answer must not reveal what exists outside the directory.
import path from 'node:path';
import { RelayError } from '../protocol/errors.js';
import { fsCalls } from './local-fs.js';

export const MAX_NAME_BYTES = 1024;

export interface ResolvedDataset {
  /** The name as requested (safe to put in messages: it reveals nothing the client did not send). */
  name: string;
  /** The real path of the file, symlinks resolved, inside the real data directory. */
  realPath: string;
  size: number;
  /** Identity of the checked file: the source re-checks it after opening to defeat swaps. */
  dev: number;
  ino: number;
}

interface FileStatus {
  isFile(): boolean;
  isDirectory(): boolean;
  size: number;
  dev: number;
  ino: number;
}

/** The only file-system calls the sandbox makes; none of them opens the file. */
export interface SandboxFs {
  realpath(p: string): Promise<string>;
  stat(p: string): Promise<FileStatus>;
  lstat(p: string): Promise<FileStatus & { isSymbolicLink(): boolean }>;
}

// On the event loop or the thread pool, as local-fs.ts decides.
const nodeFs: SandboxFs = { realpath: fsCalls.realpath, stat: fsCalls.stat, lstat: fsCalls.lstat };

// Lone surrogates would be written to the file system as U+FFFD and could name another file.
const LONE_SURROGATE = /\p{Cs}/u;
// Control characters have no place in a dataset name and would corrupt logs.
const CONTROL = /[\u0001-\u001f\u007f]/;

/** True when `p` is strictly below `root` (both absolute and normalised). */
export function isInside(root: string, p: string): boolean {
  const rel = path.relative(root, p);
  return rel !== '' && rel !== '..' && !rel.startsWith(`..${path.sep}`) && !path.isAbsolute(rel);
}

/** Checks a dataset name and finds its file; throws RelayError with a connector error code. */
export async function resolveDataset(dataDir: string, name: string, fs: SandboxFs = nodeFs): Promise<ResolvedDataset> {
  if (typeof name !== 'string' || name.length === 0) throw new RelayError('BAD_REQUEST', 'empty dataset name');
  if (name.includes('\0')) throw new RelayError('BAD_REQUEST', 'dataset name contains a NUL byte');
  if (Buffer.byteLength(name, 'utf8') > MAX_NAME_BYTES) throw new RelayError('BAD_REQUEST', `dataset name is longer than ${MAX_NAME_BYTES} bytes`);
  if (LONE_SURROGATE.test(name)) throw new RelayError('BAD_REQUEST', 'dataset name is not valid Unicode');
  if (CONTROL.test(name)) throw new RelayError('BAD_REQUEST', 'dataset name contains control characters');
  if (path.isAbsolute(name)) throw new RelayError('FORBIDDEN', `absolute paths are not allowed: ${name}`);
  // Any '..' is refused, not only escapes: the kernel resolves 'link/..' against the link's
  // target, so a lexical check of '..' cannot be trusted.
  if (name.split('/').includes('..')) throw new RelayError('FORBIDDEN', `'..' is not allowed in dataset paths: ${name}`);

  const root = await realRoot(dataDir, fs);
  // Concatenated, not path.join'ed: joining would normalise the name before the kernel sees it.
  const full = `${root}${path.sep}${name}`;

  let found: { real: string; st: FileStatus } | null;
  try {
    found = await withoutLinks(root, name, fs);
    if (!found) {
      const real = await fs.realpath(full);
      if (real === root) throw new RelayError('BAD_REQUEST', `${name} is a directory, not a dataset`);
      if (!isInside(root, real)) throw new RelayError('FORBIDDEN', `${name} resolves outside the data directory`);
      found = { real, st: await fs.stat(real) };
    }
  } catch (err) {
    throw err instanceof RelayError ? err : fsError(err, name);
  }
  const { real, st } = found;
  if (st.isDirectory()) throw new RelayError('BAD_REQUEST', `${name} is a directory, not a dataset`);
  if (!st.isFile()) throw new RelayError('BAD_REQUEST', `${name} is not a regular file`);
  return { name, realPath: real, size: st.size, dev: st.dev, ino: st.ino };
}

/**
 * root/name checked with one lstat per component of the name, from the (real) root down. While
 * none is a symbolic link the path is already its own real path, inside the root, and the last
 * lstat is the file's status. realpath walks from / instead (a call for each component of the
 * data directory as well) and a stat follows it: a 1 KB request of a file at the top of the
 * bench's data directory made 5 such calls, now 1. null at the first link, or for a name with
 * an empty or '.' component, which realpath then resolves as before. On Windows always null:
 * there a backslash inside a component is a separator too (an unchecked junction could hide
 * behind it), and names have other spellings that only the real path settles.
 */
async function withoutLinks(root: string, name: string, fs: SandboxFs): Promise<{ real: string; st: FileStatus } | null> {
  if (path.sep !== '/') return null;
  const parts = name.split('/');
  if (parts.some((p) => p === '' || p === '.')) return null;
  let p = root;
  for (let i = 0; ; i++) {
    p = `${p}${path.sep}${parts[i]!}`;
    const st = await fs.lstat(p);
    if (st.isSymbolicLink()) return null;
    if (i === parts.length - 1) return { real: p, st };
  }
}

/**
 * How long the data directory's real path is reused. Each file-system call the connector makes
 * goes through the thread pool (about 10 µs of its CPU alone, far more on a loaded machine);
 * resolving the same directory for every small request was a sixth of them. A directory moved
 * or re-pointed (a symlink) is seen within this time.
 */
const ROOT_TTL_MS = 1000;
const roots = new Map<string, { real: string; until: number }>();

async function realRoot(dataDir: string, fs: SandboxFs): Promise<string> {
  const dir = path.resolve(dataDir);
  const hit = roots.get(dir);
  if (hit && hit.until > Date.now() && fs === nodeFs) return hit.real;
  let real: string;
  try {
    real = await fs.realpath(dir);
  } catch (err) {
    roots.delete(dir);
    throw new RelayError('CONNECTOR_ERROR', `data directory is not usable: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, { cause: err });
  }
  // Only the real file system is cached: a test's fake answers differently from call to call.
  if (fs === nodeFs) {
    if (roots.size > 16) roots.clear();
    roots.set(dir, { real, until: Date.now() + ROOT_TTL_MS });
  }
  return real;
}

function fsError(err: unknown, name: string): RelayError {
  const code = (err as NodeJS.ErrnoException).code;
  switch (code) {
    case 'ENOENT':
    case 'ENOTDIR':
      return new RelayError('DATASET_NOT_FOUND', `no such dataset: ${name}`);
    case 'ENAMETOOLONG':
      return new RelayError('BAD_REQUEST', `dataset name is too long for the file system: ${name}`);
    case 'ELOOP':
      return new RelayError('BAD_REQUEST', `too many symbolic links in ${name}`);
    case 'EACCES':
    case 'EPERM':
      return new RelayError('FORBIDDEN', `permission denied: ${name}`);
    default:
      return new RelayError('CONNECTOR_ERROR', `cannot resolve ${name}: ${code ?? (err as Error).message}`, { cause: err });
  }
}
