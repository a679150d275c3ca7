// One keep-alive connection pool for everything the connector sends (router calls and the
// object store's presigned PUTs), and the small helpers that turn answers into RelayErrors.
import { setTimeout as sleep } from 'node:timers/promises';
import { Readable } from 'node:stream';
import { rootCertificates } from 'node:tls';
import { Agent, type Dispatcher } from 'undici';
import { RelayError, type ErrorCode } from '../protocol/errors.js';
import { RetryState, UPLOAD_RETRY, parseRetryAfter, type RetryOptions, type RetryPolicy, type TryOutcome } from './retry.js';

export type ResponseHeaders = Record<string, string | string[] | undefined>;

export interface HttpResult {
  status: number;
  headers: ResponseHeaders;
  /** Parsed JSON when the answer was JSON, else the text (error bodies only; success bodies are usually empty). */
  data: unknown;
  retryAfterMs?: number;
}

/**
 * A non-2xx answer. Keeps the real HTTP status next to the protocol code, because the retry
 * policy speaks in statuses (408 has no code of its own) and because a router's FORBIDDEN must
 * not be confused with the connector's own FORBIDDEN (path outside the data directory).
 */
export class HttpError extends RelayError {
  constructor(
    code: ErrorCode,
    message: string,
    readonly httpStatus: number,
    opts: { requestId?: string; retryAfterMs?: number } = {},
  ) {
    super(code, message, opts);
    this.name = 'HttpError';
  }

  static fromResult(r: HttpResult, what: string): HttpError {
    let base: RelayError;
    if (r.data && typeof r.data === 'object') base = RelayError.fromBody(r.status, r.data);
    else {
      base = RelayError.fromBody(r.status, undefined);
      const text = typeof r.data === 'string' ? r.data.trim().slice(0, 300) : '';
      if (text) base = new RelayError(base.code, `HTTP ${r.status}: ${text}`);
    }
    return new HttpError(base.code, `${what}: ${base.message}`, r.status, { requestId: base.requestId, retryAfterMs: r.retryAfterMs });
  }
}

export const isOk = (status: number) => status >= 200 && status < 300;

export interface HttpOptions {
  routerUrl: string;
  token: string;
  connections: number;
  /** Extra CA certificates (PEM) to trust, on top of the system's, for router and object store. */
  ca?: string;
}

export class RouterHttp {
  readonly agent: Agent;
  private readonly base: string;
  private readonly auth: string;

  constructor(opts: HttpOptions) {
    this.base = opts.routerUrl.replace(/\/+$/, '');
    this.auth = `Bearer ${opts.token}`;
    this.agent = new Agent({
      connections: opts.connections,
      keepAliveTimeout: 30_000,
      keepAliveMaxTimeout: 600_000,
      headersTimeout: 60_000,
      bodyTimeout: 60_000,
      ...(opts.ca ? { connect: { ca: [...rootCertificates, opts.ca] } } : {}),
    });
  }

  url(path: string): string {
    return this.base + path;
  }

  /** Authorization header for router calls (the event stream uses it too). */
  get authorization(): string {
    return this.auth;
  }

  async postJson(path: string, body: unknown, signal?: AbortSignal): Promise<HttpResult> {
    return this.call(this.url(path), 'POST', JSON.stringify(body), { 'content-type': 'application/json', authorization: this.auth }, signal);
  }

  async postBinary(path: string, body: Buffer, headers: Record<string, string>, signal?: AbortSignal): Promise<HttpResult> {
    return this.call(this.url(path), 'POST', body, { ...headers, 'content-type': 'application/octet-stream', authorization: this.auth }, signal);
  }

  /** A PUT to a presigned object-store URL: never carries the router's token. */
  async putPresigned(url: string, body: Buffer, signal?: AbortSignal): Promise<HttpResult> {
    return this.call(url, 'PUT', body, {}, signal);
  }

  /**
   * A PUT to a presigned URL whose body is produced while it is sent: `length` bytes exactly
   * (the iterable failing before that aborts the request).
   */
  async putPresignedStream(url: string, body: AsyncIterable<Buffer>, length: number, signal?: AbortSignal): Promise<HttpResult> {
    return this.call(url, 'PUT', Readable.from(body, { objectMode: false }), { 'content-length': String(length) }, signal);
  }

  /**
   * One exchange, its answer read to the end (so the socket goes back to the pool). Through
   * the agent's dispatch() with a handler that only gathers the body: undici's request() wraps
   * every answer in a Readable stream and the signal in listeners of its own, which cost a
   * small POST ~60 µs more CPU here (10 at a time: 148-214 against 96-134 µs with the test
   * server's share); a 1 KB result takes two of them (ack and result), a 1 MB result five.
   */
  private call(url: string, method: 'POST' | 'PUT', body: string | Buffer | Readable, headers: Record<string, string>, signal?: AbortSignal): Promise<HttpResult> {
    if (signal?.aborted) return Promise.reject(signal.reason as Error);
    const u = new URL(url);
    return new Promise<HttpResult>((resolve, reject) => {
      let controller: Dispatcher.DispatchController | undefined;
      let status = 0;
      let resHeaders: ResponseHeaders = {};
      const chunks: Buffer[] = [];
      const abort = () => controller?.abort(signal!.reason as Error);
      signal?.addEventListener('abort', abort, { once: true });
      const settle = () => signal?.removeEventListener('abort', abort);
      const handler: Dispatcher.DispatchHandler = {
        onRequestStart: (c) => {
          controller = c;
          if (signal?.aborted) c.abort(signal.reason as Error);
        },
        onResponseStart: (_c, statusCode, h) => {
          status = statusCode;
          resHeaders = h;
        },
        onResponseData: (_c, chunk) => {
          chunks.push(chunk);
        },
        onResponseEnd: () => {
          settle();
          const text = chunks.length === 0 ? '' : Buffer.concat(chunks).toString('utf8');
          let data: unknown = text;
          const type = String(resHeaders['content-type'] ?? '');
          if (text && type.includes('json')) {
            try {
              data = JSON.parse(text);
            } catch {
              // keep the text; it still says something in the error message
            }
          }
          resolve({ status, headers: resHeaders, data, retryAfterMs: parseRetryAfter(resHeaders) });
        },
        onResponseError: (_c, err) => {
          settle();
          reject(err);
        },
      };
      try {
        this.agent.dispatch({ origin: u.origin, path: u.pathname + u.search, method, body, headers }, handler);
      } catch (err) {
        // Refused before it started (invalid options): the signal must not keep our listener.
        settle();
        reject(err as Error);
      }
    });
  }

  /**
   * Runs `once` under the upload retry policy. Resolves with the 2xx result; throws HttpError
   * for a final non-2xx answer (GONE included: the caller stops quietly), RelayError
   * CONNECTOR_ERROR when the network never answered, or the signal's reason when aborted.
   */
  async send(
    what: string,
    once: () => Promise<HttpResult>,
    opts: { signal?: AbortSignal; policy?: RetryPolicy; retry?: RetryOptions; retryWhen?: (r: HttpResult) => boolean; onRetry?: (info: { what: string; outcome: TryOutcome; delayMs: number }) => void } = {},
  ): Promise<HttpResult> {
    const state = new RetryState(opts.policy ?? UPLOAD_RETRY, opts.retry);
    for (;;) {
      opts.signal?.throwIfAborted();
      let outcome: TryOutcome;
      let result: HttpResult | undefined;
      try {
        result = await once();
      } catch (err) {
        if (opts.signal?.aborted) throw opts.signal.reason;
        if (err instanceof RelayError) throw err;
        outcome = { kind: 'network', error: err };
      }
      if (result) {
        if (isOk(result.status)) return result;
        // An extra retryable answer (a presigned URL that expired) counts as a failed try.
        outcome = opts.retryWhen?.(result) ? { kind: 'network' } : { kind: 'status', status: result.status, retryAfterMs: result.retryAfterMs };
      }
      const delay = state.next(outcome!);
      if (delay === null) {
        if (result) throw HttpError.fromResult(result, what);
        const cause = outcome!.kind === 'network' ? outcome!.error : undefined;
        throw new RelayError('CONNECTOR_ERROR', `${what}: ${cause instanceof Error ? cause.message : 'no answer'} (after ${state.failures} tries)`, { cause });
      }
      opts.onRetry?.({ what, outcome: outcome!, delayMs: delay });
      try {
        await sleep(delay, undefined, { signal: opts.signal });
      } catch (err) {
        throw opts.signal?.aborted ? opts.signal.reason : err;
      }
    }
  }

  async close(): Promise<void> {
    await this.agent.close();
  }

  async destroy(): Promise<void> {
    await this.agent.destroy();
  }
}
