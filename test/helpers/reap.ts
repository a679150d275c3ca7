// Child processes that must not outlive the test, probe or benchmark that started them: a
// router left behind keeps taking its Redis's jobs (and skews every later measurement on that
// Redis), a Redis or sshd keeps its port. They are killed when this process exits, and when a
// signal ends it (a timeout's SIGTERM, Ctrl-C, pkill), which would otherwise skip the 'exit'
// handlers.
import type { ChildProcess } from 'node:child_process';
import { constants } from 'node:os';

const live = new Set<ChildProcess>();
let installed = false;

function install(): void {
  installed = true;
  process.on('exit', () => {
    for (const c of live) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  });
  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    // Ends the process as the signal's default action would, but through 'exit'. A process with
    // a handler of its own (bench/run.ts exits with the signal's code) is left to it.
    process.on(sig, () => {
      if (process.listenerCount(sig) === 1) process.exit(128 + constants.signals[sig]);
    });
  }
}

/** Kills `child` (SIGKILL) if it still runs when this process exits or is ended by a signal. */
export function reapOnExit(child: ChildProcess): void {
  if (!installed) install();
  live.add(child);
  child.once('exit', () => live.delete(child));
}
