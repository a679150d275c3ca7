// The connector: one event stream in, a bounded pool of commands, results out.
// Per command: validate → ack (the lease starts) → queue → resolve the dataset → upload.
import { readFileSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ConnectorConfig } from '../config.js';
import { createLogger, fingerprint, type Logger } from '../log.js';
import { CONNECTOR_ERROR_CODES, RelayError, type ConnectorErrorCode } from '../protocol/errors.js';
import { cancelSchema, commandSchema, type Command, type Format } from '../protocol/wire.js';
import { CompressionChooser } from './compression.js';
import { requestPath, type ResultSummary, type UploadContext } from './context.js';
import { EventStream } from './events.js';
import { HttpError, RouterHttp } from './http.js';
import { SLOW_BACKOFF_MS, useLocalFs } from './local-fs.js';
import { createConnectorMetrics, serveMetrics } from './metrics.js';
import { offloadResult } from './offload.js';
import { WorkerPool, type PoolJob } from './pool.js';
import { UPLOAD_RETRY, type RetryPolicy } from './retry.js';
import { resolveDataset } from './sandbox.js';
import { Databases } from './databases.js';
import { encodeTable, type TableFormat } from './encoders/index.js';
import { FileSource, type ChunkSource } from './sources/file.js';
import { StreamSource } from './sources/stream.js';
import { describeColumns } from './tables/columns.js';
import type { TableResult } from './tables/table.js';
import { uploadResult } from './uploader.js';

export interface ConnectorOptions {
  /** Reported to the router as `version=`; defaults to the package version. */
  version?: string;
  /** Upload retry policy; tests shorten it. */
  retryPolicy?: RetryPolicy;
  /** Delay after the router refuses the token; tests shorten it. */
  authRetryMs?: number;
}

export interface RunningConnector {
  /** Closes the event stream, lets running commands finish for up to graceMs (default 10 s), then aborts them. */
  stop(graceMs?: number): Promise<void>;
  readonly stats: { running: number; queued: number; connected: boolean };
}

const MAX_ERROR_MESSAGE = 8192;

function packageVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return '0.0.0';
  }
}

/** Abort reasons, so the log says why a command stopped. */
class Stopped extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'Stopped';
  }
}

/**
 * Repeats the ack while the router has accepted nothing from this command for a heartbeat
 * (queued, resolving, a long read, backpressure, object-store PUTs the router never sees), so
 * a busy command is not taken for a dead one and re-sent.
 */
class Lease {
  private last = Date.now();
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(
    private readonly periodMs: () => number,
    private readonly ping: () => void,
  ) {
    this.schedule();
  }

  renew(): void {
    this.last = Date.now();
  }

  stop(): void {
    this.stopped = true;
    clearTimeout(this.timer);
  }

  private schedule(): void {
    if (this.stopped) return;
    const period = this.periodMs();
    this.timer = setTimeout(
      () => {
        if (Date.now() - this.last >= period - 50) {
          this.last = Date.now();
          this.ping();
        }
        this.schedule();
      },
      Math.max(50, this.last + period - Date.now()),
    );
  }
}

/** What a failure is reported as: a connector error code, or nothing (GONE: stop quietly). */
export function toReport(err: unknown): { code: ConnectorErrorCode; message: string } | 'gone' {
  if (err instanceof RelayError && err.code === 'GONE') return 'gone';
  // The router's own answers are never passed on as the connector's codes: a router FORBIDDEN
  // is not "path outside the data directory".
  if (err instanceof HttpError) return { code: 'CONNECTOR_ERROR', message: `${err.message} (router answered ${err.httpStatus} ${err.code})` };
  if (err instanceof RelayError) {
    if ((CONNECTOR_ERROR_CODES as readonly string[]).includes(err.code)) return { code: err.code as ConnectorErrorCode, message: err.message };
    return { code: 'CONNECTOR_ERROR', message: `${err.code}: ${err.message}` };
  }
  return { code: 'CONNECTOR_ERROR', message: err instanceof Error ? err.message : String(err) };
}

/**
 * One command's signal: its job's (cancelled, superseded, shutting down), its deadline's, or
 * the router's refusal of its ack. One AbortController and one listener on the job's signal:
 * the deadline and the refusal each took an any-signal pair before (a controller of its own, a
 * linked one and their listeners), and objects like these are much of what a 1 KB command
 * costs. Not AbortSignal.any: on Node 20 it cost ~20 µs per call and keeps signals alive
 * (nodejs/node#54614).
 */
class CommandStop {
  private readonly ac = new AbortController();
  readonly signal = this.ac.signal;
  /** The router did not take the ack: the command is dropped unreported. */
  refused = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly onJob = () => this.ac.abort(this.job.reason);

  constructor(
    private readonly job: AbortSignal,
    cmd: Command,
    log: Logger,
  ) {
    if (job.aborted) this.ac.abort(job.reason);
    else job.addEventListener('abort', this.onJob, { once: true });
    const at = Date.parse(cmd.deadline);
    if (Number.isNaN(at)) return;
    const ms = at - Date.now();
    if (ms <= 0) {
      // The router enforces the deadline itself and answers GONE after it; a connector clock
      // running ahead must not turn every command into a no-op.
      log.warn({ request: cmd.request_id, deadline: cmd.deadline }, 'command arrived past its deadline (clock skew?); relying on the router to stop it');
      return;
    }
    this.timer = setTimeout(() => this.ac.abort(new Stopped('deadline passed')), Math.min(ms, 2 ** 31 - 1));
  }

  refuse(): void {
    this.refused = true;
    this.ac.abort(new Stopped('the router did not take the ack'));
  }

  clear(): void {
    clearTimeout(this.timer);
    this.job.removeEventListener('abort', this.onJob);
  }
}

/** The format a dataset file already is, judged by its name: served as stored when asked for. */
function storedFormat(path: string): Format | null {
  const p = path.toLowerCase();
  if (p.endsWith('.csv')) return 'csv';
  if (p.endsWith('.parquet')) return 'parquet';
  if (p.endsWith('.ndjson') || p.endsWith('.jsonl')) return 'ndjson';
  if (p.endsWith('.arrows') || p.endsWith('.arrow')) return 'arrow';
  return null;
}

function tableSource(cmd: Command, format: TableFormat, table: TableResult, signal: AbortSignal): ChunkSource {
  const schema = format === 'arrow' ? describeColumns(table.schema, table.specs) : undefined;
  return new StreamSource(() => encodeTable(format, table), cmd.chunk_size, () => table.close(), signal, schema);
}

export async function startConnector(cfg: ConnectorConfig, log: Logger = createLogger('connector', cfg.logLevel), opts: ConnectorOptions = {}): Promise<RunningConnector> {
  const version = opts.version ?? packageVersion();
  const policy = opts.retryPolicy ?? UPLOAD_RETRY;
  const http = new RouterHttp({ routerUrl: cfg.routerUrl, token: cfg.token, connections: cfg.connections, ca: cfg.ca });
  const pool = new WorkerPool(cfg.concurrency);
  /** Aborts what outlives the commands themselves (error reports, repeated acks) at shutdown. */
  const closing = new AbortController();
  const leases = new Map<PoolJob, Lease>();
  // `events` is assigned below; the gauges are only read once the metrics server is up.
  const metrics = createConnectorMetrics(() => ({ ...pool.stats, connected: events.isConnected }));
  const databases = new Databases(cfg.databases, cfg, log);
  const fsMode = useLocalFs(cfg.dataDir, (what, ms) =>
    log.warn({ call: what, ms: Math.round(ms), poolForS: SLOW_BACKOFF_MS / 1000 }, 'a synchronous file-system call was slow: dataset files go through the thread pool for a while'),
  );

  log.info(
    {
      router: cfg.routerUrl,
      id: cfg.id,
      tokenFingerprint: fingerprint(cfg.token),
      dataDir: cfg.dataDir,
      // local-fs.ts: dataset file calls on the event loop (a local file system) or the thread pool.
      datasetFs: fsMode.sync ? `synchronous (${fsMode.reason})` : `thread pool (${fsMode.reason})`,
      databases: databases.describe(),
      concurrency: cfg.concurrency,
      uploadParallel: cfg.uploadParallel,
      version,
    },
    'connector starting',
  );

  const postAck = (cmd: { request_id: string; attempt: number }, signal: AbortSignal, tries = policy.maxTries) =>
    http.send('ack', () => http.postJson(`${requestPath(cmd.request_id)}/ack`, { attempt: cmd.attempt }, signal), {
      signal,
      policy: { ...policy, maxTries: tries },
      retry: { resend422: false },
    });

  const onAckError = (cmd: Command, err: unknown, quiet: boolean) => {
    if (err instanceof RelayError && err.code === 'GONE') {
      if (pool.cancel(cmd.request_id, new Stopped('the router answered GONE (cancelled or superseded)'), cmd.attempt)) log.info({ request: cmd.request_id, attempt: cmd.attempt }, 'ack answered GONE: stopping');
      return;
    }
    if (closing.signal.aborted) return;
    const fields = { request: cmd.request_id, attempt: cmd.attempt, err: (err as Error).message };
    if (quiet) log.debug(fields, 'lease ack failed');
    else log.warn(fields, 'ack failed');
  };

  const reportError = async (requestId: string, attempt: number, code: ConnectorErrorCode, message: string) => {
    const body = { attempt, code, message: message.length > MAX_ERROR_MESSAGE ? `${message.slice(0, MAX_ERROR_MESSAGE - 3)}...` : message };
    try {
      await http.send('error', () => http.postJson(`${requestPath(requestId)}/error`, body, closing.signal), { signal: closing.signal, policy, retry: { resend422: false } });
    } catch (err) {
      if (err instanceof RelayError && (err.code === 'GONE' || err.code === 'CONFLICT')) return;
      if (!closing.signal.aborted) log.warn({ request: requestId, err: (err as Error).message }, 'could not report the failure to the router');
    }
  };

  /** The command's result as chunks: a file as stored, or a table (query, converted file) encoded. */
  const openSource = async (cmd: Command, signal: AbortSignal): Promise<ChunkSource> => {
    if (cmd.sql !== undefined) {
      if (cmd.format === 'raw') throw new RelayError('BAD_REQUEST', 'format "raw" is for datasets; SQL results are arrow, csv, ndjson or parquet');
      return tableSource(cmd, cmd.format, await databases.query(cmd.database, cmd.sql, signal), signal);
    }
    if (cmd.dataset === undefined) throw new RelayError('BAD_REQUEST', 'command has neither "dataset" nor "sql"');
    const dataset = await resolveDataset(cfg.dataDir, cmd.dataset);
    signal.throwIfAborted();
    if (cmd.format === 'raw' || storedFormat(dataset.realPath) === cmd.format) return FileSource.open(dataset, cmd.chunk_size, { signal });
    return tableSource(cmd, cmd.format, await databases.dataset(dataset, signal), signal);
  };

  // One chooser for every upload to the router: the link's speed and zstd's are properties of
  // this connector and its link, not of one command (a result of a chunk or two would otherwise
  // always be compressed while the chooser warms up).
  const routerCompression = new CompressionChooser(cfg.zstdMode, { base: cfg.zstdLevel });
  /** The zstd level the last offload ended at (OffloadLevel): the store link is likely the same. */
  let lastOffloadLevel = cfg.zstdLevel;

  const execute = async (cmd: Command, signal: AbortSignal, renew: () => void, opened?: Promise<ChunkSource>): Promise<ResultSummary> => {
    // (run() opens nothing early for such a command.)
    if (cmd.mode === 'offload' && !cmd.offload) throw new RelayError('BAD_REQUEST', 'offload command without an "offload" section');
    const source = await (opened ?? openSource(cmd, signal));
    try {
      // Offload always compresses: the object is stored and downloaded later, and an S3 store
      // handles fewer bytes faster (measured: raw made loopback offload slower, bench/RESULTS.md).
      const compression = cmd.compression !== 'zstd' ? new CompressionChooser('never') : cmd.mode === 'offload' ? new CompressionChooser('always', { base: cfg.zstdLevel }) : routerCompression;
      if (cmd.mode !== 'offload') {
        const ctx: UploadContext = { http, cmd, signal, log, policy, zstdLevel: cfg.zstdLevel, compression, parallel: cfg.uploadParallel, inflightBytes: cfg.uploadBytes, renew, metrics };
        return await uploadResult(ctx, source);
      }
      // The store is reached over the same uplink as the router: what the router uploads
      // measured about it, or the level the last offload ended at, sets the first level; then
      // OffloadLevel follows this upload's own pipeline.
      const adapt = cfg.zstdMode === 'auto';
      const zstdLevel = adapt ? Math.max(routerCompression.level(), lastOffloadLevel) : cfg.zstdLevel;
      const ctx: UploadContext = { http, cmd, signal, log, policy, zstdLevel, adaptLevel: adapt, compression, parallel: cfg.uploadParallel, renew, metrics };
      const summary = await offloadResult(ctx, source);
      if (adapt && summary.zstdLevel !== undefined) lastOffloadLevel = summary.zstdLevel;
      return summary;
    } finally {
      await source.close();
    }
  };

  /** Runs one accepted command; resolves false when it should run again if redelivered. */
  const run = async (cmd: Command, jobSignal: AbortSignal, acked: Promise<boolean>, renew: () => void): Promise<boolean> => {
    const stop = new CommandStop(jobSignal, cmd, log);
    const { signal } = stop;
    // A dataset is opened and uploaded while the ack is on its way: waiting for its answer cost
    // a round trip per command (80 ms on a WAN). The router takes uploads before the ack, and a
    // late ack still clears the pending command (requests.ts relayAck). An ack the router
    // refuses stops the work. A query starts only once acknowledged: it may be costly, and an
    // ack answered GONE means nobody wants it.
    const early = cmd.dataset !== undefined && (cmd.mode !== 'offload' || cmd.offload) ? openSource(cmd, signal) : undefined;
    early?.catch(() => undefined);
    if (early) void acked.then((ok) => ok || stop.refuse());
    else if (!(await acked)) {
      stop.clear();
      return jobSignal.aborted;
    }
    const started = Date.now();
    const fields = { request: cmd.request_id, attempt: cmd.attempt, mode: cmd.mode };
    log.info({ ...fields, dataset: cmd.dataset, database: cmd.sql !== undefined ? (cmd.database ?? databases.specs[0]?.name) : undefined, format: cmd.format, resumeFrom: cmd.resume_from || undefined }, 'command started');
    try {
      const summary = await execute(cmd, signal, renew, early);
      metrics.commands.inc({ mode: cmd.mode, outcome: 'delivered' });
      metrics.bytesSent.inc({ mode: cmd.mode }, summary.sentBytes ?? summary.bytes);
      // What the compression choice is based on (connector/compression.ts), for operators.
      const zstd = cmd.mode === 'offload' ? undefined : routerCompression.estimates;
      log.info({ ...fields, ...summary, ms: Date.now() - started, ...(zstd ? { zstd } : {}) }, 'result delivered');
    } catch (err) {
      // Not acknowledged: dropped unreported, and run again if the router sends it again.
      if (stop.refused) return jobSignal.aborted;
      if (signal.aborted) {
        const reason = signal.reason instanceof Error ? signal.reason.message : String(signal.reason);
        metrics.commands.inc({ mode: cmd.mode, outcome: 'stopped' });
        log.info({ ...fields, reason }, 'command stopped');
        return true;
      }
      const report = toReport(err);
      if (report === 'gone') {
        metrics.commands.inc({ mode: cmd.mode, outcome: 'gone' });
        log.info({ ...fields, err: (err as Error).message }, 'router answered GONE: stopping');
        return true;
      }
      metrics.commands.inc({ mode: cmd.mode, outcome: 'failed' });
      log.warn({ ...fields, code: report.code, err: report.message }, 'command failed');
      // A failure is reported only for an acknowledged command (the ack may still be on its way).
      if (!(await acked)) return jobSignal.aborted;
      await reportError(cmd.request_id, cmd.attempt, report.code, report.message);
    } finally {
      stop.clear();
    }
    return true;
  };

  const onCommand = (data: string) => {
    let raw: unknown;
    try {
      raw = JSON.parse(data);
    } catch {
      log.warn({ data: data.slice(0, 200) }, 'command event is not JSON');
      return;
    }
    const parsed = commandSchema.safeParse(raw);
    if (!parsed.success) {
      const r = raw as { request_id?: unknown; attempt?: unknown } | null;
      const issues = parsed.error.issues.map((i) => `${i.path.join('.') || 'command'}: ${i.message}`).join('; ');
      log.warn({ request: r?.request_id, issues }, 'invalid command');
      if (typeof r?.request_id === 'string' && Number.isInteger(r.attempt) && (r.attempt as number) >= 1) {
        void reportError(r.request_id, r.attempt as number, 'BAD_REQUEST', `invalid command: ${issues}`);
      }
      return;
    }
    const cmd = parsed.data;
    let open!: (ok: boolean) => void;
    const acked = new Promise<boolean>((r) => (open = r));
    let lease: Lease | undefined;
    const res = pool.submit(cmd.request_id, cmd.attempt, (signal) => run(cmd, signal, acked, () => lease?.renew()));
    switch (res.kind) {
      case 'duplicate':
        metrics.commandsRedelivered.inc();
        // A redelivery: the router did not see our ack. Ack again; the work is not repeated.
        log.debug({ request: cmd.request_id, attempt: cmd.attempt }, 'duplicate command acknowledged again');
        postAck(cmd, closing.signal).catch((err: unknown) => onAckError(cmd, err, false));
        return;
      case 'stale':
        log.debug({ request: cmd.request_id, attempt: cmd.attempt, current: res.current }, 'ignoring an older attempt');
        return;
      case 'closed':
        return;
      case 'accepted': {
        const { job } = res;
        metrics.commandsReceived.inc();
        if (res.superseded) log.info({ request: cmd.request_id, attempt: cmd.attempt, old: res.superseded.attempt }, 'newer attempt replaces the running one');
        lease = new Lease(
          () => events.heartbeatMs,
          () => postAck(cmd, job.signal, 1).catch((err: unknown) => onAckError(cmd, err, true)),
        );
        leases.set(job, lease);
        void job.done.then(() => {
          lease?.stop();
          leases.delete(job);
        });
        // The ack goes out on receipt, before any work and even while the command waits for a slot.
        postAck(cmd, job.signal).then(
          () => open(true),
          (err: unknown) => {
            if (!job.signal.aborted) onAckError(cmd, err, false);
            open(false);
          },
        );
        return;
      }
    }
  };

  const onCancel = (data: string) => {
    let requestId: string;
    try {
      requestId = cancelSchema.parse(JSON.parse(data)).request_id;
    } catch {
      log.warn({ data: data.slice(0, 200) }, 'invalid cancel event');
      return;
    }
    if (pool.cancel(requestId, new Stopped('cancelled by the router'))) log.info({ request: requestId }, 'cancelling');
    else log.debug({ request: requestId }, 'cancel for a request not running here');
  };

  const events = new EventStream({
    routerUrl: cfg.routerUrl,
    authorization: http.authorization,
    concurrency: cfg.concurrency,
    version,
    dispatcher: http.agent,
    log,
    handlers: { onCommand, onCancel, onHello: () => metrics.streamConnects.inc() },
    authRetryMs: opts.authRetryMs,
  });
  events.start();
  const metricsServer = cfg.metricsPort === undefined ? null : await serveMetrics(metrics, cfg.metricsHost, cfg.metricsPort, log);

  let stopping: Promise<void> | undefined;
  const stop = (graceMs = 10_000): Promise<void> =>
    (stopping ??= (async () => {
      log.info({ graceMs, ...pool.stats }, 'connector stopping');
      await events.stop();
      pool.close(new Stopped('connector stopping'));
      const wait = async (p: Promise<unknown>, ms: number) => {
        const ac = new AbortController();
        await Promise.race([p, sleep(ms, undefined, { signal: ac.signal }).catch(() => undefined)]);
        ac.abort();
      };
      await wait(pool.idle(), graceMs);
      if (pool.stats.running > 0) {
        log.warn({ running: pool.stats.running }, 'grace period over: aborting running commands');
        pool.abortAll(new Stopped('connector stopping'));
        await wait(pool.idle(), 5_000);
      }
      closing.abort(new Stopped('connector stopping'));
      for (const lease of leases.values()) lease.stop();
      await databases.close().catch(() => undefined);
      await wait(http.close().catch(() => undefined), 2_000);
      await http.destroy().catch(() => undefined);
      await metricsServer?.close();
      log.info('connector stopped');
    })());

  return {
    stop,
    get stats() {
      return { ...pool.stats, connected: events.isConnected };
    },
  };
}

