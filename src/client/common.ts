// What the three modes share: the POST that starts a request, turning a failure after the
// first byte into the request's own error, and the end-to-end checksum check.
import type { ClientConfig } from '../config.js';
import { HEADERS, RelayError, type ClientRequest, type Mode } from '../protocol/index.js';
import { DecodeError, OutputError, type ProgressFn, type Sink } from './body.js';
import { abortedError, callRouter, ConnectionLost, describe, errorFromResponse, header, waitMs, type Response } from './http.js';
import { settledStatus, statusError } from './status.js';

export interface RequestOptions {
  /** Called as decoded bytes are written; total when known (Content-Length, offload size). */
  onProgress?: ProgressFn;
  signal?: AbortSignal;
  /** Same key within 24 h returns the same request on the router (safe retries). */
  idempotencyKey?: string;
  /** Called once the router has named the request (lets a caller cancel it). */
  onRequestId?: (id: string) => void;
  /** false: fail at once when the connection to the router is lost (default: retry ~30 s). */
  retry?: boolean;
  /** Called before each retry after a lost connection. */
  onRetry?: (err: RelayError, retry: number, delayMs: number) => void;
}

export interface RequestResult {
  requestId: string;
  /** Decoded bytes written to the output. */
  bytes: number;
  /** xxh64 of the decoded bytes (for offload --url-only: the router's value). */
  checksum: string;
  /** True when the bytes were checked against the router's checksum. */
  verified: boolean;
  seconds: number;
  downloadUrl?: string;
  expiresAt?: string;
}

export async function startRequest(
  cfg: ClientConfig,
  mode: Mode,
  req: ClientRequest,
  opts: RequestOptions,
  headers: Record<string, string>,
): Promise<{ res: Response; requestId: string }> {
  const h: Record<string, string> = { ...headers };
  if (opts.idempotencyKey) h[HEADERS.idempotencyKey] = opts.idempotencyKey;
  const res = await callRouter(cfg, 'POST', `/v1/datasets/request-${mode}`, {
    body: JSON.stringify(req),
    headers: h,
    signal: opts.signal,
    timeoutMs: waitMs(req.timeout_s),
  });
  if (res.statusCode < 200 || res.statusCode > 299) throw await errorFromResponse(res);
  const requestId = header(res, HEADERS.requestId) ?? '';
  if (requestId) opts.onRequestId?.(requestId);
  return { res, requestId };
}

/**
 * Why a body that started well did not finish: our output, the user, or the router.
 * The router aborts the response on failure and records the error in the request's
 * status, so that status is the authority for what went wrong.
 */
export async function failureAfterStart(
  cfg: ClientConfig,
  requestId: string,
  sink: Sink,
  err: unknown,
  signal: AbortSignal | undefined,
  what: string,
): Promise<RelayError> {
  if (signal?.aborted) return abortedError(err);
  if (sink.failure) return sink.failure;
  if (err instanceof OutputError) return err;
  if (err instanceof RelayError) return err;
  let status;
  if (requestId) {
    try {
      status = await settledStatus(cfg, requestId, signal);
    } catch {
      // The router is gone too: report the truncation itself.
    }
  }
  if (status) {
    const fromStatus = statusError(status, requestId);
    if (fromStatus) return fromStatus;
    if (status.status === 'cancelled') return new RelayError('GONE', 'the request was cancelled', { requestId, cause: err });
  }
  if (err instanceof DecodeError) {
    return new RelayError('CHECKSUM_MISMATCH', `${err.message} (after ${sink.bytes} decoded bytes)`, { requestId, cause: err });
  }
  const message = `${what} truncated after ${sink.bytes} bytes (${describe(err)})`;
  if (status?.status === 'failed') return new RelayError('CONNECTOR_ERROR', message, { requestId, cause: err });
  // The request is alive, or complete but its bytes were lost on the way, or the router is
  // unreachable: a retry with the same Idempotency-Key re-attaches (a completed request is
  // fetched from the connector again).
  return new ConnectionLost(message, { requestId, cause: err });
}

/** The checksum for a body that came without one: the request's status once complete. */
export async function checksumFromStatus(cfg: ClientConfig, requestId: string, signal?: AbortSignal): Promise<string | undefined> {
  if (!requestId) throw new RelayError('INTERNAL', 'the router sent neither a checksum nor a request id: cannot verify the result');
  const st = await settledStatus(cfg, requestId, signal);
  const failed = statusError(st, requestId);
  if (failed) throw failed;
  if (st.status !== 'complete') {
    throw new RelayError('INTERNAL', `the body ended but the request is ${st.status}: cannot verify the result`, { requestId });
  }
  return st.checksum ?? undefined;
}

/** Compares the decoded bytes' xxh64 with the router's; no checksum at all → unverified. */
export function verify(requestId: string, actual: string, bytes: number, expected: string | undefined): boolean {
  if (expected === undefined || expected === '') return false;
  if (expected.trim().toLowerCase() !== actual) {
    throw new RelayError('CHECKSUM_MISMATCH', `received ${bytes} bytes with xxh64 ${actual}, the router says ${expected.trim()}`, { requestId });
  }
  return true;
}

export function elapsed(start: bigint): number {
  return Number(process.hrtime.bigint() - start) / 1e9;
}

/** Retries after a lost connection (same Idempotency-Key): 0.5 s doubling to 8 s, ~30 s in all. */
const RETRY_DELAYS_MS = [500, 1000, 2000, 4000, 8000, 8000, 8000];

/**
 * Runs one try of a request (or of an offload download), and again while the connection is
 * lost (router restart, dropped link, cut download) — only with an Idempotency-Key, so the
 * router hands back the same request rather than starting a second one. The sink carries
 * over: bytes already written are compared, not written twice.
 */
export async function withReconnects<T>(opts: RequestOptions, sink: Pick<Sink, 'replay'> | null, once: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await once();
    } catch (err) {
      const delay = RETRY_DELAYS_MS[i];
      if (!(err instanceof ConnectionLost) || !opts.idempotencyKey || opts.retry === false || delay === undefined || opts.signal?.aborted) throw err;
      opts.onRetry?.(err, i + 1, delay);
      sink?.replay();
      await new Promise((r) => setTimeout(r, delay));
    }
  }
}
