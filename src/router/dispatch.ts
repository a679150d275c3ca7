// At-least-once delivery, owned by BullMQ: a request is a job; one processing run is one
// attempt: append the command to the connector's log, wait for the ack (ack timeout), then for
// the end of the request while its lease is renewed (progress timeout). A timeout throws and
// BullMQ retries with exponential backoff; the last failure fails the request with a clear code.
// A new request's job waits (delayed) until the first moment a timeout could strike; a request
// that ends sooner has its job removed unrun (see watchDelayMs and settle).
import { Queue, UnrecoverableError, Worker, type Job } from 'bullmq';
import type { Logger } from '../log.js';
import { RelayError } from '../protocol/errors.js';
import type { Command, OffloadPartsResponse } from '../protocol/wire.js';
import type { Bus } from './bus.js';
import { isOnline, type CommandLog } from './commands.js';
import { isConnectionError } from './http.js';
import type { Metrics } from './metrics.js';
import { IN_FLIGHT_TTL_S, keys, type Redis } from './redis.js';
import { TERMINAL, type RequestRecord, type RequestSpec, type Requests, type TerminalStatus } from './requests.js';

export const QUEUE_NAME = 'relay-commands';

export interface DispatchConfig {
  ackTimeoutS: number;
  attempts: number;
  backoffS: number;
  progressTimeoutS: number;
  chunkSize: number;
  compression: 'zstd' | 'none';
  concurrency: number;
  /**
   * URLs for an offload's first parts, sent in its command: the connector's first PUT then
   * need not wait a round trip for offload/parts (80 ms over the WAN bench's link).
   */
  partUrls?: (offload: NonNullable<RequestRecord['offload']>, parts: number[]) => Promise<OffloadPartsResponse>;
}

/** Parts whose URLs go with an offload command: the parts a connector PUTs at once (offload.ts). */
const COMMAND_PART_URLS = [1, 2, 3, 4];

/** What the queue dashboard shows of a job: the request, its connector and what it asks for. */
interface JobData {
  requestId: string;
  connector: string;
  tenant: string;
  mode: string;
  dataset?: string;
  /** The first 200 characters of the SQL text. */
  sql?: string;
  format?: string;
}

export class Dispatcher {
  readonly queue: Queue<JobData>;
  private worker?: Worker<JobData>;
  private depthTimer?: NodeJS.Timeout;
  /**
   * Requests whose job this instance's worker runs. Their end is seen by the job itself, which
   * may complete before finish() returns (the end event is published inside its script): a
   * removal then would take the completed job off the dashboard.
   */
  private readonly running = new Set<string>();

  constructor(
    connection: Redis,
    private readonly workerConnection: Redis,
    private readonly redis: Redis,
    private readonly cfg: DispatchConfig,
    private readonly requests: Requests,
    private readonly commands: CommandLog,
    private readonly bus: Bus,
    private readonly metrics: Metrics,
    private readonly log: Logger,
  ) {
    this.queue = new Queue<JobData>(QUEUE_NAME, { connection });
    requests.onEnd((id, status) => this.settle(id, status));
  }

  start(): void {
    this.worker = new Worker<JobData>(QUEUE_NAME, (job) => this.process(job), {
      connection: this.workerConnection,
      // A running job occupies a slot until its request ends (it waits on the connector), so many run at once.
      concurrency: this.cfg.concurrency,
      lockDuration: 30_000,
      stalledInterval: 15_000,
      // A router that stops or dies leaves its jobs stalled; another instance adopts them.
      // Restarts must not use up a request's chances.
      maxStalledCount: 5,
    });
    this.worker.on('error', (err) => {
      // Redis away: BullMQ reports each failed try (~40 a second); the connections' own
      // handler already says so once every few seconds (server.ts).
      if (isConnectionError(err)) this.log.debug({ err: err.message }, 'dispatch worker: Redis unreachable');
      else this.log.error({ err }, 'dispatch worker error');
    });
    // A job in the failed set marks its request, so that retrying the job from the dashboard
    // opens the request again instead of finding it failed and failing once more.
    this.worker.on('failed', (job) => {
      if (!job) return;
      void job
        .isFailed()
        .then((failed) => (failed ? this.requests.markJobFailed(job.data.requestId) : undefined))
        .catch((err: unknown) => this.log.warn({ request: job.data.requestId, err: (err as Error).message }, 'could not mark the failed job on its request'));
    });
    this.depthTimer = setInterval(() => void this.sampleDepth(), 5000);
    this.depthTimer.unref();
  }

  /** The job that watches a request whose attempt is sent now (delayed: watchDelayMs). */
  async enqueue(rec: Pick<RequestRecord, 'id' | 'connector' | 'tenant' | 'mode' | 'deadline'> & { spec?: RequestSpec }, jobId = rec.id): Promise<void> {
    const what = rec.spec
      ? { ...(rec.spec.dataset !== undefined ? { dataset: rec.spec.dataset } : {}), ...(rec.spec.sql !== undefined ? { sql: rec.spec.sql.slice(0, 200) } : {}), format: rec.spec.format }
      : {};
    await this.queue.add(
      `${rec.mode} ${rec.connector}`,
      { requestId: rec.id, connector: rec.connector, tenant: rec.tenant, mode: rec.mode, ...what },
      {
        jobId,
        delay: this.watchDelayMs(rec.deadline),
        attempts: this.cfg.attempts,
        backoff: { type: 'exponential', delay: this.cfg.backoffS * 1000 },
        removeOnComplete: { age: 3600, count: 10_000 },
        removeOnFail: { age: 7 * 86_400, count: 10_000 },
      },
    );
  }

  /**
   * A new request: its record (`stored`: Requests.create as attempt 1, under way) and its job
   * are written at once, and once both are persisted attempt 1 is sent. The worker that picks
   * the job up adopts that attempt (its lease is fresh) instead of the command waiting for a
   * worker's turn. Two writes at once, not one after the other: one round trip less before the
   * command goes out. If only the job was written, its worker finds no record and ends it.
   */
  async submit(rec: Pick<RequestRecord, 'id' | 'connector' | 'tenant' | 'mode' | 'spec' | 'deadline' | 'offload'>, stored: Promise<void>): Promise<void> {
    const job = this.enqueue(rec);
    // Both settle before anything is thrown: a failed record write must not leave the job's
    // rejection unhandled.
    const [a, b] = await Promise.allSettled([stored, job]);
    if (a.status === 'rejected') throw a.reason;
    if (b.status === 'rejected') throw b.reason;
    await this.commands.sendCommand(rec.connector, await this.command(rec, 1, 0));
    this.metrics.commandsDispatched.inc();
  }

  /**
   * How long the job of an attempt sent just now waits before its worker first looks: until
   * the earliest moment a timeout could strike (its ack timeout, a lease taken at once running
   * out, or the deadline). Nothing the worker does is due before that, and most requests end
   * sooner: settle() then removes the job unrun, which saves the worker's Redis calls
   * (moveToActive, the record's read, moveToFinished, a blocking pop) and their replies:
   * ~13 % of the router's CPU in the fleet scenario (1 KB requests, 10 at a time).
   */
  private watchDelayMs(deadline: number): number {
    return Math.max(0, Math.min(this.cfg.ackTimeoutS * 1000, this.cfg.progressTimeoutS * 1000, deadline - Date.now()));
  }

  /**
   * A request ended here (Requests.finish). Its job, usually still waiting out its delay: a
   * complete or cancelled request's is removed; a failed one's is promoted, so that the worker
   * ends it in the failed set at once (the dashboard's failures and their retry). A job being
   * run is left to its worker, which sees the end itself (here: `running`; on another instance
   * BullMQ does not remove a locked job, though one its worker completed a moment before loses
   * its dashboard entry). Best effort: a job left behind by an error or a crash runs at its
   * delay, finds the request ended and ends.
   */
  private settle(id: string, status: TerminalStatus): void {
    if (this.running.has(id)) return;
    // A request's job never has children: not looking for them spares the removal script ~5 of
    // its ~18 Redis commands, on every request.
    const done = status === 'failed' ? this.queue.getJob(id).then((job) => job?.promote()) : this.queue.remove(id, { removeChildren: false });
    done.catch((err: unknown) => this.log.debug({ request: id, err: (err as Error).message }, 'job of an ended request left to run'));
  }

  private async sampleDepth(): Promise<void> {
    try {
      const c = await this.queue.getJobCounts('waiting', 'active', 'delayed', 'failed', 'completed');
      for (const [state, n] of Object.entries(c)) this.metrics.queueDepth.set({ state }, n);
    } catch {
      /* Redis down: readiness reports it */
    }
  }

  private async process(job: Job<JobData>): Promise<string> {
    const id = job.data.requestId;
    this.running.add(id);
    try {
      return await this.attempt(job, id);
    } finally {
      this.running.delete(id);
    }
  }

  private async attempt(job: Job<JobData>, id: string): Promise<string> {
    let rec = await this.requests.get(id);
    if (!rec) return 'expired';
    if (rec.status === 'failed' && (await this.requests.reopen(id, Date.now() + Math.max(1000, rec.deadline - Date.parse(rec.createdAt))))) {
      this.log.info({ request: id, connector: rec.connector, tenant: rec.tenant, attempt: rec.attempt, error: rec.error?.code }, 'failed request retried from the queue: dispatching it again');
      await job.log(`retried after ${rec.error?.code ?? 'failure'}: dispatching again`).catch(() => undefined);
      rec = (await this.requests.get(id)) ?? rec;
    }
    if (TERMINAL.includes(rec.status)) return this.ended(rec);
    if (Date.now() >= rec.deadline) return this.giveUp(rec, new RelayError('TIMEOUT', `deadline passed before attempt ${rec.attempt + 1}`, { requestId: id }));

    // A request whose current attempt is alive (lease fresh) is adopted, not sent again: a job
    // picked up after its router stopped, or an attempt a re-attached client started. The first
    // attempt of a new request is adopted too: submit() sent it (its ack wait starts at the send).
    const leaseS = rec.ackedAttempt >= rec.attempt ? this.cfg.progressTimeoutS : this.cfg.ackTimeoutS;
    const submitted = rec.attempt === 1 && job.attemptsMade === 0 && !job.stalledCounter;
    const alive = rec.attempt > 0 && Date.now() - rec.leaseAt < leaseS * 1000;
    let attempt = rec.attempt;
    let sentAt = rec.leaseAt;
    // The dashboard shows each attempt (progress, log line). Attempt 1, sent by submit(), is not
    // worth the two writes for a request that ends within a second: it is noted only once it
    // has lived that long, or when it fails.
    const connector = rec.connector;
    let noted = !submitted;
    const note = async () => {
      if (noted) return;
      noted = true;
      await this.noteAttempt(job, connector, 1, 0);
    };
    const noteLater = submitted ? setTimeout(() => void note(), 1000) : undefined;
    try {
      if (!submitted && alive) {
        this.log.info({ request: id, connector, attempt }, 'adopting the running attempt');
      } else if (!submitted) {
        attempt = rec.attempt + 1;
        const resumeFrom = await this.requests.newAttempt(id, attempt);
        if (resumeFrom === null) return await this.ended((await this.requests.get(id)) ?? rec);
        // Offload parts are not tracked across attempts, so an offload starts over.
        const cmd = await this.command(rec, attempt, rec.mode === 'offload' ? 0 : resumeFrom);
        await this.send(rec, cmd);
        sentAt = Date.now();
        if (attempt > 1) this.metrics.commandsRedelivered.inc();
        await this.noteAttempt(job, rec.connector, attempt, cmd.resume_from);
        this.log.debug({ request: id, connector: rec.connector, attempt, resume_from: cmd.resume_from }, 'command dispatched');
      }
      return await this.follow(job, rec, attempt, sentAt, note);
    } finally {
      clearTimeout(noteLater);
    }
  }

  /**
   * Waits for the ack of `attempt` (until the ack timeout counted from its send), then for the
   * request's end while its lease is renewed. Events say most of what happens (acked, complete),
   * so the record is read only to start, on a failure, and on the 1 s poll.
   */
  private async follow(job: Job<JobData>, rec: RequestRecord, attempt: number, sentAt: number, note: () => Promise<void>): Promise<string> {
    const id = rec.id;
    const lastTry = job.attemptsMade + 1 >= (job.opts.attempts ?? 1);
    const terminal = (s: string) => (TERMINAL as string[]).includes(s);
    // What the loop below knows without reading: the record as of the ack.
    let known: RequestRecord | null = null;
    if (rec.ackedAttempt < attempt) {
      const ackDeadline = Math.min(rec.deadline, sentAt + this.cfg.ackTimeoutS * 1000);
      const acked = await this.bus.waitFor<RequestRecord>(
        id,
        async () => {
          const r = await this.requests.get(id);
          return !r || TERMINAL.includes(r.status) || r.attempt !== attempt || r.ackedAttempt >= attempt ? r ?? rec : null;
        },
        ackDeadline,
        {
          onEvent: (ev) => (ev.status === 'acked' && ev.attempt === attempt ? { ...rec, attempt, ackedAttempt: attempt, leaseAt: Date.now() } : terminal(ev.status) ? null : undefined),
          // The record was read just now; an ack that slips between is caught by the poll.
          checkFirst: false,
        },
      );
      if (!acked) {
        await note();
        const online = await isOnline(this.redis, rec.connector);
        const err = online
          ? new RelayError('TIMEOUT', `connector ${rec.connector} did not acknowledge attempt ${attempt} within ${this.cfg.ackTimeoutS} s`, { requestId: id })
          : new RelayError('CONNECTOR_OFFLINE', `connector ${rec.connector} has no open event stream`, { requestId: id });
        if (lastTry || Date.now() >= rec.deadline) return this.giveUp(rec, err);
        throw new Error(`${err.code}: ${err.message}`);
      }
      known = acked;
    } else known = rec;

    // Acknowledged: wait for the end while the lease is renewed (acks and uploads renew it).
    for (;;) {
      const r: RequestRecord | null = known ?? (await this.requests.get(id));
      known = null;
      if (!r || TERMINAL.includes(r.status)) {
        if (r?.status !== 'complete') await note();
        return this.ended(r ?? rec);
      }
      // A newer attempt (a re-attached client restarted the transfer): watch that one.
      if (r.attempt !== attempt) {
        attempt = r.attempt;
        continue;
      }
      const leaseEnd: number = r.leaseAt + this.cfg.progressTimeoutS * 1000;
      const now = Date.now();
      if (now >= r.deadline) {
        await note();
        return this.giveUp(r, new RelayError('TIMEOUT', `request did not finish within its timeout`, { requestId: id }));
      }
      if (now >= leaseEnd) {
        await note();
        const err = new RelayError('TIMEOUT', `no progress from connector ${r.connector} for ${this.cfg.progressTimeoutS} s`, { requestId: id });
        if (lastTry) return this.giveUp(r, err);
        throw new Error(`${err.code}: ${err.message}`);
      }
      const outcome: true | RequestRecord | null = await this.bus.waitFor<true | RequestRecord>(
        id,
        async () => {
          const x = await this.requests.get(id);
          return !x || TERMINAL.includes(x.status) || x.attempt !== attempt ? (x ?? true) : null;
        },
        Math.min(leaseEnd, r.deadline) + 10,
        {
          // Complete needs no read; a failure does (its error goes to the job).
          onEvent: (ev) => (ev.status === 'complete' ? { ...r, status: 'complete' } : terminal(ev.status) ? null : undefined),
          checkFirst: false,
        },
      );
      if (outcome !== null && outcome !== true) known = outcome;
    }
  }

  /** What the queue dashboard shows of an attempt sent: the job's progress and a log line. */
  private async noteAttempt(job: Job<JobData>, connector: string, attempt: number, resumeFrom: number): Promise<void> {
    await Promise.all([
      job.updateProgress({ attempt, resume_from: resumeFrom }),
      job.log(`attempt ${attempt} sent to ${connector}${resumeFrom ? ` (resume from chunk ${resumeFrom})` : ''}`),
    ]).catch(() => undefined);
  }

  private async command(rec: Pick<RequestRecord, 'id' | 'mode' | 'spec' | 'deadline' | 'offload'>, attempt: number, resumeFrom: number): Promise<Command> {
    const off = rec.offload;
    // Without them (a signing failure) the connector asks offload/parts as the protocol says.
    const urls = off && this.cfg.partUrls ? await this.cfg.partUrls(off, COMMAND_PART_URLS).catch(() => undefined) : undefined;
    return {
      request_id: rec.id,
      attempt,
      mode: rec.mode,
      ...(rec.spec.dataset !== undefined ? { dataset: rec.spec.dataset } : {}),
      ...(rec.spec.sql !== undefined ? { sql: rec.spec.sql, database: rec.spec.database } : {}),
      format: rec.spec.format,
      chunk_size: this.cfg.chunkSize,
      compression: this.cfg.compression,
      resume_from: resumeFrom,
      deadline: new Date(rec.deadline).toISOString(),
      ...(off ? { offload: { upload_id: off.uploadId, key: off.key, part_size: off.partSize, ...urls } } : {}),
    };
  }

  private async send(rec: RequestRecord, cmd: Command): Promise<void> {
    await this.redis.multi().sadd(keys.inFlight(rec.connector), rec.id).expire(keys.inFlight(rec.connector), IN_FLIGHT_TTL_S).exec();
    await this.commands.sendCommand(rec.connector, cmd);
    this.metrics.commandsDispatched.inc();
  }

  /**
   * A client re-attached (same Idempotency-Key) to a sync or stream request whose bytes went
   * to an answer that is gone: start a new attempt from chunk 0 now. The job that owns the
   * request follows the new attempt. Returns false if the request has ended.
   */
  async restartFromZero(id: string): Promise<boolean> {
    const restarted = await this.requests.restart(id);
    if (restarted === null) return false;
    const { attempt, wasComplete } = restarted;
    const rec = await this.requests.get(id);
    if (!rec) return false;
    // The job of a completed request is over: a new one watches this attempt (and retries it).
    if (wasComplete) await this.enqueue(rec, `${id}.${attempt}`);
    await this.send(rec, await this.command(rec, attempt, 0));
    this.metrics.commandsRedelivered.inc();
    this.log.info({ request: id, connector: rec.connector, attempt }, 'client re-attached: transfer restarted from chunk 0');
    return true;
  }

  private async ended(rec: RequestRecord): Promise<string> {
    if (rec.status === 'failed' && rec.error) throw new UnrecoverableError(`${rec.error.code}: ${rec.error.message}`);
    return rec.status;
  }

  private async giveUp(rec: RequestRecord, err: RelayError): Promise<never> {
    // fail() also takes the request out of its connector's in-flight set.
    if (await this.requests.fail(rec.id, err)) await this.commands.sendCancel(rec.connector, rec.id);
    throw new UnrecoverableError(`${err.code}: ${err.message}`);
  }

  /** force: do not wait for running jobs; they stall and another router adopts them. */
  async close(force = false): Promise<void> {
    clearInterval(this.depthTimer);
    await this.worker?.close(force);
    await this.queue.close();
  }
}
