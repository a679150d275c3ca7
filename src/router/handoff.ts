// Result hand-off between router instances. Behind a load balancer a connector's uploads and
// the client's request may land on different instances (DESIGN.md, Router), while a sync or
// stream answer lives in the memory of the instance that holds the client's response. That
// instance writes its address on the request (`answer_at`, found through Redis); an upload
// reaching another instance is passed to it as it came, and its answer passed back. The holder
// does every check (checksum, window, idempotency), so nothing is decided twice.
import type { IncomingMessage } from 'node:http';
import { hostname } from 'node:os';
import { rootCertificates } from 'node:tls';
import { Agent, request } from 'undici';
import type { Logger } from '../log.js';
import { RelayError } from '../protocol/errors.js';
import { isWildcard, urlOf } from './http.js';

/** Set on a passed-on upload, naming the instance that passed it: it is never passed on again. */
export const FORWARDED_BY = 'x-relay-forwarded-by';

// Hop-by-hop headers, and what undici sets itself.
const NOT_PASSED = new Set(['host', 'connection', 'keep-alive', 'transfer-encoding', 'te', 'trailer', 'upgrade', 'expect', 'proxy-authorization', 'proxy-connection', FORWARDED_BY]);
const ANSWER_HEADERS = ['content-type', 'retry-after', 'retry-after-ms'];
/** undici's connect failures: nothing reached the holder, which is gone (or was never there). */
const UNREACHABLE = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN', 'UND_ERR_CONNECT_TIMEOUT']);

const HOLDERS_KEPT = 10_000;
const HOLDER_KEPT_MS = 60_000;

/** The address other instances reach this one at: RELAY_ADVERTISE_URL, else host and port. */
export function advertisedUrl(configured: string | undefined, host: string, port: number, tls: boolean): string {
  if (configured) return configured.replace(/\/+$/, '');
  return urlOf(isWildcard(host) ? hostname() : host, port, tls);
}

export class Handoff {
  private readonly agent: Agent;
  /** `<request>:<attempt>` → the instance holding its answer, oldest first (bounded). */
  private readonly holders = new Map<string, { at: string; until: number }>();
  /** This instance's advertised URL, set once it listens (advertisedUrl). */
  self = '';

  /** ca: this instance's own certificate, trusted for instances that share it. */
  constructor(
    private readonly log: Logger,
    ca?: string,
  ) {
    // The holder answers a chunk within its room wait (2 s) plus the time to read it.
    this.agent = new Agent({ connections: 128, keepAliveTimeout: 30_000, headersTimeout: 60_000, bodyTimeout: 60_000, ...(ca ? { connect: { ca: [...rootCertificates, ca] } } : {}) });
  }

  /**
   * The instance to pass this upload to, or null: the answer is here, unknown, or the upload was
   * passed already. `answerAt` reads the record. Only a re-attach moves an answer, and it starts
   * a new attempt, so a request's holder is kept per attempt: a stream's chunks after its first
   * cost no Redis call here.
   */
  async target(req: IncomingMessage, id: string, attempt: number, answerAt: () => Promise<string | null>): Promise<string | null> {
    if (req.headers[FORWARDED_BY] !== undefined) return null;
    const key = `${id}:${attempt}`;
    const known = this.holders.get(key);
    if (known && known.until > Date.now()) return known.at;
    const at = await answerAt();
    if (!at || at === this.self) return null;
    if (this.holders.size >= HOLDERS_KEPT) this.holders.delete(this.holders.keys().next().value!);
    this.holders.set(key, { at, until: Date.now() + HOLDER_KEPT_MS });
    return at;
  }

  /**
   * Passes a connector's upload to the instance holding the answer and returns that instance's
   * answer. `body`: the bytes when the route has read them already, else the body is streamed.
   */
  async forward(target: string, req: IncomingMessage, requestId: string, body?: Buffer | string): Promise<Response> {
    const headers: Record<string, string> = { [FORWARDED_BY]: this.self };
    for (const [name, value] of Object.entries(req.headers)) {
      if (value === undefined || NOT_PASSED.has(name)) continue;
      headers[name] = Array.isArray(value) ? value.join(', ') : value;
    }
    if (body !== undefined) headers['content-length'] = String(Buffer.byteLength(body));
    // Taken now: Node detaches the connection from a request that was destroyed.
    const conn = req.socket as IncomingMessage['socket'] | null;
    try {
      const res = await request(`${target}${req.url ?? '/'}`, { method: 'POST', headers, body: body ?? req, dispatcher: this.agent });
      const bytes = Buffer.from(await res.body.arrayBuffer());
      const out = new Headers();
      for (const name of ANSWER_HEADERS) {
        const v = res.headers[name];
        if (typeof v === 'string') out.set(name, v);
      }
      return new Response(bytes.length > 0 && res.statusCode !== 204 ? bytes : null, { status: res.statusCode, headers: out });
    } catch (err) {
      const code = (err as { code?: string }).code ?? '';
      // The connector's own link broke while its body was being passed on: as for a direct upload
      // (nobody reads this answer; it keeps the log quiet). Told by its connection, not by the
      // request: undici destroys the request it was passing when the holder fails mid-body, and
      // Node destroys any request read to the end. Either way the connector is still there and
      // must be told to retry, not that its body was cut.
      if (body === undefined && !req.complete && conn && !conn.writable) throw new RelayError('BAD_REQUEST', 'client aborted the body', { requestId });
      if (UNREACHABLE.has(code)) {
        // Its client went with it; a client that re-attaches elsewhere starts a new attempt. Said
        // once per attempt (the connector stops at GONE); a wrong RELAY_ADVERTISE_URL shows here.
        this.log.warn({ request: requestId, target, err: code }, 'the instance holding the answer cannot be reached');
        throw new RelayError('GONE', `the router instance holding this request's client (${target}) cannot be reached: stop sending`, { requestId });
      }
      // Logged once, by the error handler (a passing failure).
      throw new RelayError('INTERNAL', `passing the upload to the router instance holding this request's client failed (${code || (err as Error).message}); retry`, { requestId, retryAfterMs: 1000 });
    }
  }

  async close(): Promise<void> {
    await this.agent.close();
  }
}
