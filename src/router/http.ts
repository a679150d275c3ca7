// Raw-Node HTTP helpers for the hot paths (bodies read straight from the socket, errors in the
// protocol's format), shared by every route.
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Logger } from '../log.js';
import { RelayError, type ErrorCode } from '../protocol/errors.js';

/**
 * Calls fn once when res closes, or at once if it already has: a route that awaited (auth,
 * limits, Redis) before listening may have missed its 'close', which Node says only once.
 */
export function onClosed(res: ServerResponse, fn: () => void): void {
  let called = false;
  const once = () => {
    if (called) return;
    called = true;
    fn();
  };
  res.once('close', once);
  if (res.destroyed) once();
}

/** The URL of a server listening on host and port (an IPv6 address in brackets). */
export function urlOf(host: string, port: number, tls: boolean): string {
  return `${tls ? 'https' : 'http'}://${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/** Whether host is the every-interface address (0.0.0.0, ::). */
export const isWildcard = (host: string) => host === '0.0.0.0' || host === '::';

/** A refused, cut or timed-out connection (Node's socket errors, ioredis's closed connection). */
export function isConnectionError(err: unknown): boolean {
  const { code, message } = err as { code?: string; message?: string };
  return (code !== undefined && ['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ETIMEDOUT', 'ENOTCONN'].includes(code)) || /^Connection is closed|socket hang up/i.test(message ?? '');
}

/**
 * Logs an answer of INTERNAL (nothing else). With a Retry-After it is a passing failure of
 * something the router depends on (the object store, another instance): one warning line.
 * Without, it is a bug: an error with its stack.
 */
export function logInternal(log: Logger, e: RelayError, cause: unknown, fields: Record<string, unknown>): void {
  if (e.code !== 'INTERNAL') return;
  if (e.retryAfterMs === undefined) log.error({ ...fields, request: e.requestId, err: cause }, 'internal error');
  else log.warn({ ...fields, request: e.requestId, err: e.message }, 'a passing failure: the caller was asked to retry');
}

export function sendError(res: ServerResponse, err: RelayError): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const headers: Record<string, string> = { 'content-type': 'application/json' };
  if (err.retryAfterMs !== undefined) {
    headers['retry-after'] = String(Math.max(1, Math.ceil(err.retryAfterMs / 1000)));
    headers['retry-after-ms'] = String(err.retryAfterMs);
  }
  res.writeHead(err.status, headers);
  res.end(JSON.stringify(err.toBody()));
}

/**
 * How long a body being read may go without a byte (RELAY_BODY_IDLE_TIMEOUT_S, set once by
 * server.ts). A peer that vanished without closing (a NAT that forgot the flow, a cut cable)
 * would otherwise hold the route for good: the router takes no request timeout (event streams
 * live long). A stream chunk held that way keeps its window place (a repeat replaces it sooner:
 * results.ts, SUPERSEDE_IDLE_MS).
 */
export const bodyReads = { idleMs: 30_000 };

/**
 * Reads a request body into one Buffer, refusing more than `limit` bytes (or more or less than
 * its Content-Length). With `into`, the bytes are copied there (a pooled buffer; the limit is
 * at most its size) and the answer is the filled part of it. A body that stops coming for
 * bodyReads.idleMs is given up: its connection is closed.
 */
export function readBody(req: IncomingMessage, limit: number, tooLarge: ErrorCode = 'BAD_REQUEST', into?: Buffer): Promise<Buffer> {
  if (into) limit = Math.min(limit, into.length);
  const declared = req.headers['content-length'];
  const length = declared === undefined ? null : Number(declared);
  const over = () => new RelayError(tooLarge, `body over the limit of ${limit} bytes for this route`);
  if (length !== null && (!Number.isSafeInteger(length) || length < 0)) return Promise.reject(new RelayError('BAD_REQUEST', 'bad Content-Length'));
  if (length !== null && length > limit) {
    req.resume();
    return Promise.reject(over());
  }
  // A route may await (room in a stream window, a Redis call) before it reads the body. A
  // connection closed meanwhile has already said 'aborted', and listeners added now would wait
  // for events that never come: the upload held its chunk's place until the idle timeout (the
  // soak's stream stalls; before the idle timeout, for good).
  if (req.destroyed) return Promise.reject(new RelayError('BAD_REQUEST', 'the connection closed before the body was read'));
  return new Promise<Buffer>((resolve, reject) => {
    let buf = into ?? (length !== null ? Buffer.allocUnsafe(length) : null);
    const pieces: Buffer[] = [];
    let got = 0;
    const idle = setTimeout(() => {
      reject(new RelayError('TIMEOUT', `no body bytes for ${bodyReads.idleMs / 1000} s (after ${got} bytes): connection closed`));
      req.destroy();
    }, bodyReads.idleMs);
    idle.unref();
    const done = () => clearTimeout(idle);
    req.on('data', (d: Buffer) => {
      idle.refresh();
      if (got + d.length > (length ?? limit)) {
        done();
        req.removeAllListeners('data');
        req.resume();
        reject(length !== null ? new RelayError('BAD_REQUEST', 'body longer than its Content-Length') : over());
        return;
      }
      if (buf) d.copy(buf, got);
      else pieces.push(d);
      got += d.length;
    });
    req.on('end', () => {
      done();
      if (length !== null && got !== length) reject(new RelayError('BAD_REQUEST', `body ended after ${got} of ${length} bytes`));
      else if (buf) resolve(buf.length === got ? buf : buf.subarray(0, got));
      else resolve(Buffer.concat(pieces, got));
      buf = null;
    });
    req.on('error', (e) => {
      done();
      reject(new RelayError('BAD_REQUEST', `body could not be read: ${e.message}`));
    });
    req.on('aborted', () => {
      done();
      reject(new RelayError('BAD_REQUEST', 'client aborted the body'));
    });
  });
}

/** Parses a JSON body with a size limit and a zod-like schema. */
export async function readJson<T>(req: IncomingMessage, limit: number, schema: { safeParse(v: unknown): { success: true; data: T } | { success: false; error: { issues: { path: PropertyKey[]; message: string }[] } } }): Promise<T> {
  const raw = await readBody(req, limit);
  checkJsonDepth(raw);
  let value: unknown;
  try {
    value = raw.length ? JSON.parse(raw.toString('utf8')) : undefined;
  } catch {
    throw new RelayError('BAD_REQUEST', 'body is not valid JSON');
  }
  const parsed = schema.safeParse(value);
  if (!parsed.success) {
    const issues = parsed.error.issues.map((i) => (i.path.length ? `${i.path.map(String).join('.')}: ${i.message}` : i.message));
    throw new RelayError('BAD_REQUEST', `invalid body: ${issues.join('; ')}`);
  }
  return parsed.data;
}

/** No control body of the protocol nests deeper than a few levels; refuse deep ones before parsing. */
export const MAX_JSON_DEPTH = 16;

/** Throws BAD_REQUEST when the JSON text nests arrays/objects deeper than MAX_JSON_DEPTH (strings skipped). */
export function checkJsonDepth(raw: Uint8Array, max = MAX_JSON_DEPTH): void {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < raw.length; i++) {
    const c = raw[i]!;
    if (inString) {
      if (c === 0x5c) i++; // backslash: skip the escaped byte
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) throw new RelayError('BAD_REQUEST', `JSON nested deeper than ${max} levels`);
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
}
