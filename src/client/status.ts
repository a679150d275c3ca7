// GET and DELETE /v1/requests/{id} (PROTOCOL.md §2.2), and the status lookups the
// data paths make when a body ends early or carries no checksum trailer.
import { setTimeout as sleep } from 'node:timers/promises';
import type { ClientConfig } from '../config.js';
import { RelayError, isErrorCode, type RequestStatusBody } from '../protocol/index.js';
import { callRouter, errorFromResponse, readJson } from './http.js';

const FINAL = new Set(['complete', 'failed', 'cancelled']);

export interface StatusOptions {
  signal?: AbortSignal;
}

export async function getStatus(cfg: ClientConfig, id: string, opts: StatusOptions = {}): Promise<RequestStatusBody> {
  const res = await callRouter(cfg, 'GET', `/v1/requests/${encodeURIComponent(id)}`, { signal: opts.signal, timeoutMs: 30_000 });
  if (res.statusCode !== 200) throw withRequestId(await errorFromResponse(res), id);
  return readJson<RequestStatusBody>(res, 'request status');
}

export async function cancel(cfg: ClientConfig, id: string, opts: StatusOptions = {}): Promise<RequestStatusBody> {
  const res = await callRouter(cfg, 'DELETE', `/v1/requests/${encodeURIComponent(id)}`, { signal: opts.signal, timeoutMs: 30_000 });
  if (res.statusCode !== 200) throw withRequestId(await errorFromResponse(res), id);
  return readJson<RequestStatusBody>(res, 'request status');
}

function withRequestId(err: RelayError, id: string): RelayError {
  err.requestId ??= id;
  return err;
}

/**
 * The status once it is final. The router may close the response a moment before it
 * records the outcome, so a non-final status is asked again for a short while.
 */
export async function settledStatus(cfg: ClientConfig, id: string, signal?: AbortSignal, waitMs = 3000): Promise<RequestStatusBody> {
  const deadline = Date.now() + waitMs;
  let delay = 50;
  for (;;) {
    const st = await getStatus(cfg, id, { signal });
    if (FINAL.has(st.status) || Date.now() + delay > deadline) return st;
    await sleep(delay, undefined, { signal });
    delay = Math.min(delay * 2, 500);
  }
}

/** The status's error as a RelayError; codes outside the table count as the connector's. */
export function statusError(st: RequestStatusBody, id: string): RelayError | undefined {
  if (!st.error) return undefined;
  const code = isErrorCode(st.error.code) ? st.error.code : 'CONNECTOR_ERROR';
  return new RelayError(code, st.error.message || `request ${st.status}`, { requestId: id });
}
