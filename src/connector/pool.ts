// A bounded worker pool for commands, keyed by request id. The router delivers at least once
// (a command whose ack got lost comes again on the next stream), so the pool is also where
// duplicates are recognised: one attempt of a request runs at most once, and a newer attempt
// replaces an older one.

export type JobState = 'queued' | 'running' | 'done';

/** Runs one command. Resolving with `false` means "not done, run it again if redelivered". */
export type JobRun = (signal: AbortSignal) => Promise<boolean | void>;

export interface PoolJob {
  readonly key: string;
  readonly attempt: number;
  readonly signal: AbortSignal;
  readonly state: JobState;
  /** Settles when the job has finished or was dropped; never rejects. */
  readonly done: Promise<void>;
}

export type SubmitResult =
  /** New work: queued, or already started if a slot was free. */
  | { kind: 'accepted'; job: PoolJob; superseded?: PoolJob }
  /** The same attempt is queued, running or finished recently: acknowledge again, do not redo. */
  | { kind: 'duplicate'; job?: PoolJob }
  /** An older attempt than one already seen: superseded, ignore it. */
  | { kind: 'stale'; current: number }
  | { kind: 'closed' };

class Job implements PoolJob {
  state: JobState = 'queued';
  readonly controller = new AbortController();
  readonly done: Promise<void>;
  resolve!: () => void;

  constructor(
    readonly key: string,
    readonly attempt: number,
    readonly run: JobRun,
  ) {
    this.done = new Promise((r) => (this.resolve = r));
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }
}

export class WorkerPool {
  /** The current attempt per request (queued or running). */
  private readonly current = new Map<string, Job>();
  private readonly queue: Job[] = [];
  /** Running jobs, including superseded ones still winding down: they hold their slot until then. */
  private readonly running = new Set<Job>();
  /** Last finished attempt per request, oldest first, bounded. */
  private readonly finished = new Map<string, number>();
  private idleWaiters: (() => void)[] = [];
  private closed = false;

  constructor(
    readonly concurrency: number,
    private readonly finishedMemory = 10_000,
  ) {
    if (!Number.isInteger(concurrency) || concurrency < 1) throw new RangeError(`concurrency must be a positive integer, got ${concurrency}`);
  }

  submit(key: string, attempt: number, run: JobRun): SubmitResult {
    const cur = this.current.get(key);
    let superseded: Job | undefined;
    if (cur) {
      if (attempt === cur.attempt) return { kind: 'duplicate', job: cur };
      if (attempt < cur.attempt) return { kind: 'stale', current: cur.attempt };
      superseded = cur;
    } else {
      const last = this.finished.get(key);
      if (last !== undefined && attempt === last) return { kind: 'duplicate' };
      if (last !== undefined && attempt < last) return { kind: 'stale', current: last };
    }
    if (this.closed) return { kind: 'closed' };
    if (superseded) this.abort(superseded, new SupersededError(key, superseded.attempt, attempt), false);
    const job = new Job(key, attempt, run);
    this.current.set(key, job);
    this.queue.push(job);
    this.pump();
    return superseded ? { kind: 'accepted', job, superseded } : { kind: 'accepted', job };
  }

  /** Stops the current job of a request (queued or running); with `attempt`, only that attempt. */
  cancel(key: string, reason: unknown, attempt?: number): boolean {
    const job = this.current.get(key);
    if (!job || (attempt !== undefined && job.attempt !== attempt)) return false;
    this.abort(job, reason, true);
    return true;
  }

  /** Starts nothing more; queued jobs are dropped (they were never started). */
  close(reason: unknown = new Error('pool closed')): void {
    this.closed = true;
    for (const job of [...this.queue]) this.abort(job, reason, false);
  }

  /** Aborts everything, running or queued. */
  abortAll(reason: unknown): void {
    for (const job of [...this.queue]) this.abort(job, reason, false);
    for (const job of this.running) job.controller.abort(reason);
  }

  /** Resolves once nothing is running or queued. */
  idle(): Promise<void> {
    if (this.running.size === 0 && this.queue.length === 0) return Promise.resolve();
    return new Promise((r) => this.idleWaiters.push(r));
  }

  get stats(): { running: number; queued: number } {
    return { running: this.running.size, queued: this.queue.length };
  }

  /** The job currently standing for a request, if any. */
  get(key: string): PoolJob | undefined {
    return this.current.get(key);
  }

  private abort(job: Job, reason: unknown, remember: boolean): void {
    job.controller.abort(reason);
    if (job.state === 'queued') {
      const i = this.queue.indexOf(job);
      if (i >= 0) this.queue.splice(i, 1);
      this.settle(job, remember);
    }
  }

  private pump(): void {
    while (this.running.size < this.concurrency && this.queue.length > 0) {
      const job = this.queue.shift()!;
      job.state = 'running';
      this.running.add(job);
      let remember = false;
      void Promise.resolve()
        .then(() => job.run(job.signal))
        .then(
          (r) => (remember = r !== false),
          () => (remember = false),
        )
        .finally(() => {
          this.running.delete(job);
          this.settle(job, remember);
          this.pump();
        });
    }
    this.checkIdle();
  }

  private settle(job: Job, remember: boolean): void {
    job.state = 'done';
    if (this.current.get(job.key) === job) {
      this.current.delete(job.key);
      if (remember) {
        this.finished.delete(job.key);
        this.finished.set(job.key, job.attempt);
        if (this.finished.size > this.finishedMemory) this.finished.delete(this.finished.keys().next().value!);
      }
    }
    job.resolve();
    this.checkIdle();
  }

  private checkIdle(): void {
    if (this.running.size === 0 && this.queue.length === 0 && this.idleWaiters.length) {
      const waiters = this.idleWaiters;
      this.idleWaiters = [];
      for (const w of waiters) w();
    }
  }
}

/** Abort reason of a job replaced by a newer attempt of the same request. */
export class SupersededError extends Error {
  constructor(key: string, old: number, next: number) {
    super(`attempt ${old} of ${key} superseded by attempt ${next}`);
    this.name = 'SupersededError';
  }
}
