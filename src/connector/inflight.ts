// At most N uploads of one command in flight, and at most maxBytes of their bodies; the first
// failure stops the others.
import { setMaxListeners } from 'node:events';
import { anySignal } from 'any-signal';

export class InFlight {
  private readonly tasks = new Set<Promise<void>>();
  /** Body bytes of the tasks in flight (their weights). */
  private bytes = 0;
  private wake: (() => void) | null = null;
  private readonly inner = new AbortController();
  private error: { err: unknown } | undefined;
  /** Aborted with the parent, or by the first failure. */
  readonly signal: AbortSignal;

  constructor(
    readonly limit: number,
    parent: AbortSignal,
    /** Body bytes in flight at most (one task may always run, whatever its size). */
    readonly maxBytes = Infinity,
  ) {
    // any-signal, not AbortSignal.any (slow on Node 20, and it keeps signals alive:
    // nodejs/node#54614); its listener on the parent goes with the command.
    this.signal = anySignal([parent, this.inner.signal]);
    // Every upload in flight listens on these (undici, retry sleeps): more than Node's
    // default of 10 is expected here, not a leak.
    setMaxListeners(Math.max(10, limit * 4 + 10), this.signal, parent);
  }

  get size(): number {
    return this.tasks.size;
  }

  /** Whether a task weighing `bytes` may start now. */
  hasRoom(bytes = 0): boolean {
    return this.tasks.size < this.limit && (this.tasks.size === 0 || this.bytes + bytes <= this.maxBytes);
  }

  /** Waits for a free slot with room for `bytes`; throws the first failure (or the abort reason) instead. */
  async slot(bytes = 0): Promise<void> {
    this.check();
    while (!this.hasRoom(bytes)) {
      await Promise.race([...this.tasks, new Promise<void>((r) => (this.wake = r))]);
      this.check();
    }
  }

  /**
   * Starts a task weighing `bytes` (call slot(bytes) first). The task may resize itself once it
   * knows its real size (a chunk after compression), which may let the next one start.
   */
  launch(task: (signal: AbortSignal, resize: (bytes: number) => void) => Promise<void>, bytes = 0): void {
    let weight = bytes;
    this.bytes += weight;
    const resize = (n: number) => {
      this.bytes += n - weight;
      weight = n;
      this.wakeSlot();
    };
    const p: Promise<void> = task(this.signal, resize)
      .catch((err: unknown) => {
        if (!this.error) {
          this.error = { err };
          this.inner.abort(err);
        }
      })
      .finally(() => {
        this.bytes -= weight;
        weight = 0;
        this.tasks.delete(p);
      });
    this.tasks.add(p);
  }

  private wakeSlot(): void {
    const w = this.wake;
    this.wake = null;
    w?.();
  }

  /** Waits for every task; throws the first failure. */
  async drain(): Promise<void> {
    while (this.tasks.size) await Promise.race(this.tasks);
    this.check();
  }

  /** Aborts what is still running and waits for it to stop; never throws. */
  async cancel(reason: unknown): Promise<void> {
    if (!this.inner.signal.aborted) this.inner.abort(reason);
    await Promise.allSettled([...this.tasks]);
  }

  /** Throws the first failure (or the abort reason), if there was one; else returns at once. */
  check(): void {
    if (this.error) throw this.error.err;
    this.signal.throwIfAborted();
  }
}
