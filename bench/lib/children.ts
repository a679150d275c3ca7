// Child processes of the benchmark: helpers (bench/lib/helper-process.ts) and any command, each
// killed when the benchmark exits, whatever way it exits (one process tree, nothing left behind).
import { spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { reapOnExit } from '../../test/helpers/reap.js';

export interface Child {
  child: ChildProcess;
  pid: number;
  /** stdout/stderr lines (the last 2,000). */
  lines: string[];
  /** Calls fn with every line from now on; returns a function that stops that. */
  onLine(fn: (line: string) => void): () => void;
  exited: Promise<number | null>;
  stop(): Promise<void>;
}

export function spawnChild(cmd: string, args: string[], opts: SpawnOptions = {}): Child {
  const child = spawn(cmd, args, { stdio: ['pipe', 'pipe', 'pipe'], ...opts });
  const lines: string[] = [];
  const listeners = new Set<(line: string) => void>();
  for (const s of [child.stdout, child.stderr]) {
    if (!s) continue;
    createInterface({ input: s }).on('line', (l) => {
      lines.push(l);
      if (lines.length > 2000) lines.shift();
      for (const fn of listeners) fn(l);
      if (process.env.RELAY_BENCH_VERBOSE) process.stderr.write(`[${cmd.split('/').at(-1)}] ${l}\n`);
    });
  }
  const exited = new Promise<number | null>((r) => {
    child.on('exit', (code) => r(code));
    child.on('error', () => r(-1));
  });
  reapOnExit(child);
  return {
    child,
    pid: child.pid ?? 0,
    lines,
    onLine(fn) {
      listeners.add(fn);
      return () => listeners.delete(fn);
    },
    exited,
    async stop() {
      if (child.exitCode !== null || child.signalCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited;
      clearTimeout(t);
    },
  };
}

/** Waits for a line matching `re` (or the process's exit). */
export async function waitForLine(c: Child, re: RegExp, ms: number, what: string): Promise<string> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const hit = c.lines.find((l) => re.test(l));
    if (hit) return hit;
    if (c.child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`${what}: no ${re} within ${ms} ms:\n${c.lines.slice(-20).join('\n')}`);
}

export interface Helper<T> extends Child {
  info: T;
}

/** Starts a helper process (see helper-process.ts) and waits for its ready line. */
export async function startHelper<T>(kind: 'fileserver' | 's3' | 'proxies' | 'spawner', opts: object): Promise<Helper<T>> {
  const c = spawnChild(process.execPath, [join(import.meta.dirname, 'helper-process.js'), kind, JSON.stringify(opts)]);
  const line = await waitForLine(c, /^\{/, 20_000, `helper ${kind}`).catch(async (err: unknown) => {
    await c.stop();
    throw err;
  });
  return { ...c, info: JSON.parse(line) as T };
}

export type ProxyStats = Record<string, { bytesUp: number; bytesDown: number; connections: number }>;

/** Asks a proxies helper for its counters. */
export async function proxyStats(h: Child): Promise<ProxyStats> {
  const from = h.lines.length;
  h.child.stdin?.write('stats\n');
  const end = Date.now() + 5000;
  while (Date.now() < end) {
    const line = h.lines.slice(from).find((l) => l.startsWith('{"stats"'));
    if (line) return (JSON.parse(line) as { stats: ProxyStats }).stats;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('the proxy helper did not answer stats');
}
