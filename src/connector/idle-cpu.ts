// The share of this machine's CPU time left idle over the last second (all processes, from
// the kernel's per-core idle counters). The compression chooser raises the zstd level only when
// this shows spare CPU: a slow result can mean a slow link, or a CPU that every process is
// competing for, and only in the first case are more cycles per byte worth it. Without spare
// CPU it also compresses only when zstd is far faster than raw (CompressionChooser.best).
import { cpus } from 'node:os';

const WINDOW_MS = 1000;

let timer: NodeJS.Timeout | undefined;
let share: number | null = null;

function totals(): { idle: number; all: number } {
  let idle = 0;
  let all = 0;
  for (const c of cpus()) {
    idle += c.times.idle;
    all += c.times.user + c.times.nice + c.times.sys + c.times.idle + c.times.irq;
  }
  return { idle, all };
}

/** Idle share (0..1) of the last full second; null until one has passed since the first call. */
export function idleShare(): number | null {
  if (!timer) {
    let last = totals();
    timer = setInterval(() => {
      const now = totals();
      const all = now.all - last.all;
      if (all > 0) share = (now.idle - last.idle) / all;
      last = now;
    }, WINDOW_MS);
    timer.unref();
  }
  return share;
}
