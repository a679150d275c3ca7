// What processes cost, read from /proc: CPU seconds (utime + stime), RSS, open descriptors.
import { readdir, readFile } from 'node:fs/promises';
import { MB } from './stats.js';

/** Clock ticks per second of /proc/<pid>/stat times (USER_HZ, 100 on Linux). */
const HZ = 100;

/** Fields of /proc/<pid>/stat after the command name (which may contain spaces). */
async function statFields(pid: number | 'self'): Promise<string[] | null> {
  const text = await readFile(`/proc/${pid}/stat`, 'utf8').catch(() => null);
  if (!text) return null;
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}

/** CPU seconds a running process has used so far (all its threads); null once it is gone. */
export async function cpuSeconds(pid: number | undefined): Promise<number | null> {
  if (!pid) return null;
  const f = await statFields(pid);
  // After the name: state(0) ppid(1) ... utime(11) stime(12) cutime(13) cstime(14)
  return f ? (Number(f[11]) + Number(f[12])) / HZ : null;
}

/** CPU seconds of this process's children that have exited and been reaped (curl, CLI runs). */
export async function reapedChildrenCpu(): Promise<number> {
  const f = await statFields('self');
  return f ? (Number(f[13]) + Number(f[14])) / HZ : 0;
}

/** This process's own CPU seconds (every thread: zstd and hashing run on the libuv pool). */
export function selfCpu(): number {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1e6;
}

/** A process and all its descendants (sshd forks a process per connection). */
export async function treeCpu(root: number | undefined): Promise<number | null> {
  if (!root) return null;
  const parent = new Map<number, number>();
  for (const name of await readdir('/proc').catch(() => [] as string[])) {
    if (!/^\d+$/.test(name)) continue;
    const f = await statFields(Number(name));
    if (f) parent.set(Number(name), Number(f[1]));
  }
  const inTree = (pid: number): boolean => {
    for (let p: number | undefined = pid, hops = 0; p && hops < 64; p = parent.get(p), hops++) if (p === root) return true;
    return false;
  };
  let total = 0;
  let any = false;
  for (const pid of parent.keys()) {
    if (!inTree(pid)) continue;
    const s = await cpuSeconds(pid);
    if (s !== null) {
      total += s;
      any = true;
    }
  }
  return any ? total : null;
}

export async function rssMb(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = /^VmRSS:\s+(\d+) kB$/m.exec(status);
  if (!kb) throw new Error(`no VmRSS in /proc/${pid}/status`);
  return (Number(kb[1]) * 1024) / MB;
}

export async function openFds(pid: number): Promise<number | null> {
  return (await readdir(`/proc/${pid}/fd`).catch(() => null))?.length ?? null;
}

/** Samples the VmRSS of a process every `everyMs`. */
export class RssSampler {
  private timer: NodeJS.Timeout | null = null;
  private samples: number[] = [];

  constructor(
    private readonly pid: number,
    private readonly everyMs = 100,
    private readonly trace?: (samples: number[]) => void,
  ) {}

  read(): Promise<number> {
    return rssMb(this.pid);
  }

  start(): void {
    this.samples = [];
    const tick = () => void this.read().then((mb) => this.samples.push(mb), () => undefined);
    tick();
    this.timer = setInterval(tick, this.everyMs);
  }

  /** Stops sampling; the peak and median of the window, in MB. */
  async stop(): Promise<{ peak: number; median: number; n: number }> {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
    this.samples.push(await this.read());
    this.trace?.(this.samples);
    const s = [...this.samples].sort((a, b) => a - b);
    return { peak: s.at(-1)!, median: s[s.length >> 1]!, n: s.length };
  }

  async during<T>(fn: () => Promise<T>): Promise<{ peak: number; median: number; n: number; result: T }> {
    this.start();
    try {
      const result = await fn();
      return { ...(await this.stop()), result };
    } catch (err) {
      await this.stop();
      throw err;
    }
  }
}

/** CPU seconds of named processes over a span: call the returned function at the end. */
export async function cpuMeter(pids: Record<string, number | undefined>): Promise<() => Promise<Record<string, number | null>>> {
  const before: Record<string, number | null> = {};
  for (const [k, pid] of Object.entries(pids)) before[k] = await cpuSeconds(pid);
  return async () => {
    const out: Record<string, number | null> = {};
    for (const [k, pid] of Object.entries(pids)) {
      const now = await cpuSeconds(pid);
      out[k] = now !== null && before[k] !== null ? now - before[k]! : null;
    }
    return out;
  };
}
