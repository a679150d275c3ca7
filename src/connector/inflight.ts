// At most N uploads of one command in flight; the first failure stops the others.
import { setMaxListeners } from 'node:events';

export class InFlight {
  private readonly tasks = new Set<Promise<void>>();
  private readonly inner = new AbortController();
  private error: { err: unknown } | undefined;
  /** Aborted with the parent, or by the first failure. */
  readonly signal: AbortSignal;

  constructor(
    readonly limit: number,
    parent: AbortSignal,
  ) {
    this.signal = AbortSignal.any([parent, this.inner.signal]);
    // Every upload in flight listens on these (undici, retry sleeps): more than Node's
    // default of 10 is expected here, not a leak.
    setMaxListeners(Math.max(10, limit * 4 + 10), this.signal, parent);
  }

  get size(): number {
    return this.tasks.size;
  }

  /** Waits for a free slot; throws the first failure (or the abort reason) instead. */
  async slot(): Promise<void> {
    this.check();
    while (this.tasks.size >= this.limit) {
      await Promise.race(this.tasks);
      this.check();
    }
  }

  /** Starts a task (call slot() first). */
  launch(task: (signal: AbortSignal) => Promise<void>): void {
    const p: Promise<void> = task(this.signal)
      .catch((err: unknown) => {
        if (!this.error) {
          this.error = { err };
          this.inner.abort(err);
        }
      })
      .finally(() => this.tasks.delete(p));
    this.tasks.add(p);
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

  private check(): void {
    if (this.error) throw this.error.err;
    this.signal.throwIfAborted();
  }
}
