// The progress bar of `relay request-*` on a terminal (a module of its own: request.ts loads it
// only when stderr is a TTY).
import type { Writable } from 'node:stream';
import cliProgress from 'cli-progress';
import { human } from './units.js';

/** cli-progress on stderr, redrawn at most every 100 ms: callbacks come per socket read. */
export class Progress {
  private bar: cliProgress.SingleBar | undefined;
  private last = 0;
  private readonly started = Date.now();

  constructor(private readonly stream: Writable) {}

  update(bytes: number, total: number | null): void {
    const now = Date.now();
    if (this.bar && now - this.last < 100 && bytes !== total) return;
    this.last = now;
    const seconds = (now - this.started) / 1000;
    const payload = { done: human(bytes), size: total === null ? '?' : human(total), speed: seconds > 0 ? (bytes / 1e6 / seconds).toFixed(1) : '0.0' };
    if (!this.bar) {
      const known = total !== null && total > 0;
      this.bar = new cliProgress.SingleBar(
        {
          stream: this.stream as NodeJS.WritableStream,
          format: known
            ? ' {bar} {percentage}% | {done} / {size} | {speed} MB/s | ETA {eta_formatted}'
            : ' {done} | {speed} MB/s | {duration_formatted}',
          hideCursor: true,
          clearOnComplete: true,
          etaBuffer: 20,
        },
        cliProgress.Presets.shades_classic,
      );
      this.bar.start(known ? total : 0, bytes, payload);
      return;
    }
    this.bar.update(bytes, payload);
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}
