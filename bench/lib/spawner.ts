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
/** Commands sent and not answered yet, by id. */
const pending = new Map<number, { resolve(r: CommandResult): void; reject(err: Error): void }>();

function start(): Promise<Helper<{ ready: boolean }>> {
  return startHelper<{ ready: boolean }>('spawner', {}).then((h) => {
    h.onLine((line) => {
      if (!line.startsWith('{"id":')) return;
      const r = JSON.parse(line) as CommandResult & { id: number };
      spentCpuS += r.cpuS;
      pending.get(r.id)?.resolve(r);
      pending.delete(r.id);
    });
    void h.exited.then(() => {
      for (const p of pending.values()) p.reject(new Error('the spawner helper exited while running a command'));
      pending.clear();
    });
    return h;
  });
}

/** Runs cmd in the spawner helper (started at first use) and resolves when it has exited. */
export async function runCommand(cmd: string, args: string[]): Promise<CommandResult> {
  helper ??= start();
  const h = await helper;
  const id = ++seq;
  return new Promise<CommandResult>((resolve, reject) => {
    pending.set(id, { resolve, reject });
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
