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

/** The only file-system calls the sandbox makes; none of them opens the file. */
export interface SandboxFs {
  realpath(p: string): Promise<string>;
  stat(p: string): Promise<{ isFile(): boolean; isDirectory(): boolean; size: number; dev: number; ino: number }>;
}

// On the event loop or the thread pool, as local-fs.ts decides.
const nodeFs: SandboxFs = { realpath: fsCalls.realpath, stat: fsCalls.stat };

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

  let real: string;
  try {
    // Concatenated, not path.join'ed: joining would normalise the name before the kernel sees it.
    real = await fs.realpath(`${root}${path.sep}${name}`);
  } catch (err) {
    throw fsError(err, name);
  }
  if (real === root) throw new RelayError('BAD_REQUEST', `${name} is a directory, not a dataset`);
  if (!isInside(root, real)) throw new RelayError('FORBIDDEN', `${name} resolves outside the data directory`);

  let st: Awaited<ReturnType<SandboxFs['stat']>>;
  try {
    st = await fs.stat(real);
  } catch (err) {
    throw fsError(err, name);
  }
  if (st.isDirectory()) throw new RelayError('BAD_REQUEST', `${name} is a directory, not a dataset`);
  if (!st.isFile()) throw new RelayError('BAD_REQUEST', `${name} is not a regular file`);
  return { name, realPath: real, size: st.size, dev: st.dev, ino: st.ino };
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
