// What every uploader needs to work on one command.
import type { Logger } from '../log.js';
import type { CompressionChooser } from './compression.js';
import type { Command } from '../protocol/wire.js';
import type { RouterHttp } from './http.js';
import { retryReason, type ConnectorMetrics } from './metrics.js';
import type { RetryPolicy } from './retry.js';

export interface UploadContext {
  http: RouterHttp;
  cmd: Command;
  /** Aborted on cancel, supersession, deadline or shutdown; threaded through every await. */
  signal: AbortSignal;
  log: Logger;
  policy: RetryPolicy;
  /** zstd level of offload parts (stream and sync chunks: the chooser's Choice.level). */
  zstdLevel: number;
  /** Offload: let the level follow the pipeline from zstdLevel (OffloadLevel; RELAY_ZSTD=auto). */
  adaptLevel?: boolean;
  /** Which chunks of this command are compressed (measured per command when 'auto'). */
  compression: CompressionChooser;
  /** Uploads in flight at once for this command. */
  parallel: number;
  /** Body bytes of those uploads in flight at most (stream/sync chunks). */
  inflightBytes?: number;
  /** Called whenever the router accepted something: that renews the lease (PROTOCOL §3.2). */
  renew(): void;
  /** The connector's metrics (upload retries are counted where they are logged). */
  metrics?: ConnectorMetrics;
}

export interface ResultSummary {
  /** Decoded bytes of the whole result. */
  bytes: number;
  /** Chunks (or object-store parts, for offload) the result was cut into. */
  chunks: number;
  /** xxh64 of the whole decoded result. */
  checksum: string;
  /** Chunks uploaded by this attempt (the rest were stored by an earlier one: resume_from). */
  sentChunks?: number;
  /** Decoded bytes uploaded by this attempt. */
  sentBytes?: number;
  /** Offload: the zstd level of the last stored frames (raised on a slow uplink: OffloadLevel). */
  zstdLevel?: number;
  /** Offload: bytes stored, i.e. put on the uplink. */
  storedBytes?: number;
}

export function requestPath(requestId: string): string {
  return `/v1/requests/${encodeURIComponent(requestId)}`;
}

/** Logs retries at debug level; they are routine (backpressure) until they run out. */
export function retryLogger(ctx: Pick<UploadContext, 'log' | 'cmd' | 'metrics'>) {
  return (info: { what: string; delayMs: number; outcome: { kind: string; status?: number } }) => {
    ctx.metrics?.uploadRetries.inc({ reason: retryReason(info.outcome.status) });
    ctx.log.debug({ request: ctx.cmd.request_id, what: info.what, status: info.outcome.status, delayMs: info.delayMs }, 'retrying upload');
  };
}
