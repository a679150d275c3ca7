// Commands the benchmark runs per measured run (curl, the CLI, sync) are started by a helper
// process, never by the benchmark process itself. libuv starts a child with fork(), which
// marks every page of the parent copy-on-write: the next run of the client library in this
// process then took a page fault per page it wrote. On this VM page faults are dear: a probe
// reading 100 MB from node:http used 110 ms of CPU between runs without a spawn and 190-320 ms
// when `true` or `sync` was spawned before each run (system time 50 → 135-245 ms).
import { startHelper, type Helper } from './children.js';

export interface CommandResult {
  code: number | null;
  /** CPU seconds the command used (its own, once reaped). */
  cpuS: number;
  /** The first lines of its output. */
  lines: string[];
}

let helper: Promise<Helper<{ ready: boolean }>> | null = null;
let seq = 0;
let spentCpuS = 0;

/** Runs cmd in the spawner helper (started at first use) and resolves when it has exited. */
export async function runCommand(cmd: string, args: string[]): Promise<CommandResult> {
  helper ??= startHelper<{ ready: boolean }>('spawner', {});
  const h = await helper;
  const id = ++seq;
  return new Promise<CommandResult>((resolve, reject) => {
    const stop = h.onLine((line) => {
      if (!line.startsWith(`{"id":${id},`)) return;
      stop();
      const r = JSON.parse(line) as CommandResult;
      spentCpuS += r.cpuS;
      resolve(r);
    });
    void h.exited.then(() => {
      stop();
      reject(new Error(`the spawner helper exited while running ${cmd}`));
    });
    h.child.stdin!.write(`${JSON.stringify({ id, cmd, args })}\n`);
  });
}

/** CPU seconds of every command run so far (a run's share is the difference). */
export function commandsCpu(): number {
  return spentCpuS;
}

export async function stopSpawner(): Promise<void> {
  const h = helper;
  helper = null;
  if (h) await (await h).stop();
}
