// One keep-alive connection pool for everything the CLI sends. undici.request rather than
// fetch: request exposes HTTP trailers (the stream checksum arrives in one) and does not
// try to decode Content-Encoding behind our back.
import { rootCertificates } from 'node:tls';
import type { Dispatcher } from 'undici';
import type { ClientConfig } from '../config.js';
import { HEADERS, RelayError } from '../protocol/index.js';
import { Agent, request } from './undici.js';

export type Response = Dispatcher.ResponseData;

/** Margin on top of the request's own timeout_s: the router answers TIMEOUT itself first. */
const TIMEOUT_MARGIN_MS = 60_000;
const DEFAULT_TIMEOUT_S = 300;
/** Larger reads than undici's 64 KiB default: fewer iterations at hundreds of MB/s. */
const HIGH_WATER_MARK = 1 << 20;

let agent: Agent | undefined;
let trustedCa: string | undefined;

export function dispatcher(): Agent {
  agent ??= new Agent({ keepAliveTimeout: 10_000, keepAliveMaxTimeout: 60_000, connections: 32, ...(trustedCa ? { connect: { ca: [...rootCertificates, trustedCa] } } : {}) });
  return agent;
}

/** Extra CA certificates (PEM) to trust, on top of the system's, for router and object store. */
export function trustCa(pem: string | undefined): void {
  if (pem === trustedCa) return;
  trustedCa = pem;
  const old = agent;
  agent = undefined;
  void old?.close().catch(() => undefined);
}

/** Drops the pool so a CLI process can exit without waiting for idle sockets. */
export async function closeHttp(): Promise<void> {
  const a = agent;
  agent = undefined;
  if (a) await a.destroy().catch(() => undefined);
}

/** Joins a path to the router URL, keeping any path prefix (https://host/relay/). */
export function routerUrl(cfg: ClientConfig, path: string): URL {
  const base = cfg.routerUrl.endsWith('/') ? cfg.routerUrl : `${cfg.routerUrl}/`;
  return new URL(path.replace(/^\/+/, ''), base);
}

/** How long to wait for headers and between body bytes, given the request's own bound. */
export function waitMs(timeoutS: number | undefined): number {
  return (timeoutS ?? DEFAULT_TIMEOUT_S) * 1000 + TIMEOUT_MARGIN_MS;
}

export interface CallOptions {
  body?: string;
  headers?: Record<string, string>;
  signal?: AbortSignal;
  timeoutMs?: number;
}

export async function callRouter(cfg: ClientConfig, method: Dispatcher.HttpMethod, path: string, opts: CallOptions = {}): Promise<Response> {
  trustCa(cfg.ca);
  const headers: Record<string, string> = { authorization: `Bearer ${cfg.apiKey}`, ...opts.headers };
  if (opts.body !== undefined) headers['content-type'] = 'application/json';
  return send(routerUrl(cfg, path), method, headers, opts, `router at ${cfg.routerUrl}`);
}

/** A presigned URL: no Authorization header, the signature is in the query string. */
export async function callPresigned(url: string, opts: CallOptions = {}): Promise<Response> {
  let where: string;
  try {
    where = `object store at ${new URL(url).origin}`;
  } catch {
    throw new RelayError('INTERNAL', `the router gave an invalid download URL: ${url.slice(0, 200)}`);
  }
  return send(url, 'GET', opts.headers ?? {}, opts, where);
}

async function send(url: URL | string, method: Dispatcher.HttpMethod, headers: Record<string, string>, opts: CallOptions, where: string): Promise<Response> {
  const timeout = opts.timeoutMs ?? waitMs(undefined);
  try {
    return await request(dispatcher(), typeof url === 'string' ? new URL(url) : url, {
      method,
      headers,
      body: opts.body,
      signal: opts.signal,
      headersTimeout: timeout,
      bodyTimeout: timeout,
      highWaterMark: HIGH_WATER_MARK,
    });
  } catch (err) {
    throw networkError(err, where, opts.signal);
  }
}

/**
 * The connection to the router broke (refused, reset, cut mid-body) while the request may
 * still be alive: a retry with the same Idempotency-Key can pick it up again.
 */
export class ConnectionLost extends RelayError {
  constructor(message: string, opts: { requestId?: string; cause?: unknown } = {}) {
    super('INTERNAL', message, opts);
  }
}

export function abortedError(cause?: unknown): RelayError {
  return new RelayError('INTERNAL', 'cancelled', { cause });
}

/** Turns an undici/socket failure into a RelayError that says where and why. */
export function networkError(err: unknown, where: string, signal?: AbortSignal): RelayError {
  if (err instanceof RelayError) return err;
  if (signal?.aborted) return abortedError(err);
  const code = (err as { code?: string }).code;
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') {
    return new RelayError('TIMEOUT', `no answer from the ${where} in time (${code})`, { cause: err });
  }
  return new ConnectionLost(`cannot reach ${where}: ${describe(err)}`, { cause: err });
}

export function describe(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const parts = [err.message || (err as { code?: string }).code || err.name];
  // Connection failures come as "fetch failed"-style wrappers around the socket error.
  const cause = err.cause;
  if (cause instanceof Error && cause.message && !parts[0]!.includes(cause.message)) parts.push(cause.message);
  if (err instanceof AggregateError) for (const e of err.errors) if (e instanceof Error) parts.push(e.message);
  return parts.join(': ');
}

export function header(res: Response, name: string): string | undefined {
  const v = res.headers[name];
  return Array.isArray(v) ? v[0] : v;
}

const ERROR_BODY_LIMIT = 64 * 1024;

/** Builds the RelayError for a non-2xx answer from its JSON error body (PROTOCOL.md §1). */
export async function errorFromResponse(res: Response): Promise<RelayError> {
  let text = '';
  try {
    for await (const chunk of res.body as AsyncIterable<Buffer>) {
      text += chunk.toString('utf8');
      if (text.length >= ERROR_BODY_LIMIT) {
        res.body.destroy();
        break;
      }
    }
  } catch {
    // A body cut short still leaves the status code to go by.
  }
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    body = undefined;
  }
  const parsed = RelayError.fromBody(res.statusCode, body);
  const hasMessage = typeof (body as { error?: { message?: unknown } } | undefined)?.error?.message === 'string';
  const snippet = text.trim().replace(/\s+/g, ' ').slice(0, 200);
  const message = hasMessage ? parsed.message : `HTTP ${res.statusCode}${snippet ? `: ${snippet}` : ''}`;
  return new RelayError(parsed.code, message, {
    requestId: parsed.requestId ?? header(res, HEADERS.requestId),
    retryAfterMs: retryAfterMs(res),
  });
}

function retryAfterMs(res: Response): number | undefined {
  const ms = Number(header(res, HEADERS.retryAfterMs));
  if (Number.isFinite(ms) && ms >= 0 && header(res, HEADERS.retryAfterMs) !== undefined) return ms;
  const ra = header(res, 'retry-after');
  if (ra === undefined) return undefined;
  const s = Number(ra);
  if (Number.isFinite(s) && s >= 0) return s * 1000;
  const at = Date.parse(ra);
  return Number.isFinite(at) ? Math.max(0, at - Date.now()) : undefined;
}

/** Reads a small JSON body of a 2xx answer. */
export async function readJson<T>(res: Response, what: string): Promise<T> {
  try {
    return (await res.body.json()) as T;
  } catch (err) {
    throw new RelayError('INTERNAL', `invalid JSON in the ${what}: ${describe(err)}`, { requestId: header(res, HEADERS.requestId), cause: err });
  }
}
