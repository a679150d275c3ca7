// A fake router (and object store) on 127.0.0.1 for the connector's tests: it speaks just
// enough of PROTOCOL.md to record what the connector sends, checks every checksum, and lets a
// test inject faults. Not a test file itself.
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { xxh64 } from '../../src/protocol/checksum.js';
import { decodeChunk } from '../../src/protocol/codec.js';

export interface Recorded {
  method: string;
  path: string;
  headers: IncomingMessage['headers'];
  body: Buffer;
  /** Parsed JSON body, when it was JSON. */
  json?: any;
  at: number;
}

export interface Reply {
  status: number;
  headers?: Record<string, string>;
  body?: unknown;
  /** Delay before answering, ms. */
  delay?: number;
  /** Drop the connection instead of answering. */
  destroy?: boolean;
}

/** Return a Reply to override the default answer, or undefined to keep it. */
export type Fault = (req: Recorded, nth: number) => Reply | undefined | Promise<Reply | undefined>;

export class FakeRouter {
  readonly requests: Recorded[] = [];
  /** Decoded chunks per request id and index. */
  readonly chunks = new Map<string, Map<number, Buffer>>();
  readonly results = new Map<string, Buffer>();
  /** Parts PUT to the fake object store, per part number. */
  readonly parts = new Map<number, Buffer>();
  faults: Fault[] = [];
  /** Answered as soon as a request's headers arrive, before its body is read (a store refusing early). */
  headFaults: ((req: { method: string; path: string }) => Reply | undefined)[] = [];
  /** When each request's headers arrived (before its body is read), oldest first. */
  readonly arrivals: { method: string; path: string; at: number }[] = [];
  /** Requests whose body broke off before its end (the sender aborted). */
  readonly aborted: { method: string; path: string }[] = [];
  /** SSE connections, newest last. */
  readonly streams: { req: IncomingMessage; res: ServerResponse; headers: IncomingMessage['headers'] }[] = [];
  onStream?: (res: ServerResponse, req: IncomingMessage, n: number) => void;
  private readonly counts = new Map<string, number>();
  private server!: Server;
  url = '';

  async start(): Promise<this> {
    this.server = createServer((req, res) => void this.handle(req, res));
    await new Promise<void>((r) => this.server.listen(0, '127.0.0.1', r));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}`;
    return this;
  }

  async close(): Promise<void> {
    for (const s of this.streams) s.res.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((r) => this.server.close(() => r()));
  }

  /** Forgets what was recorded (and the per-path try counters faults see). */
  reset(): void {
    this.requests.length = 0;
    this.arrivals.length = 0;
    this.aborted.length = 0;
    this.faults = [];
    this.headFaults = [];
    this.parts.clear();
    this.counts.clear();
  }

  find(pred: (r: Recorded) => boolean): Recorded[] {
    return this.requests.filter(pred);
  }

  paths(): string[] {
    return this.requests.filter((r) => !r.path.startsWith('/v1/connectors/events')).map((r) => `${r.method} ${r.path}`);
  }

  /** Writes an SSE event to the newest stream. */
  send(event: string, data: unknown, id?: string): void {
    const s = this.streams.at(-1);
    if (!s) throw new Error('no event stream open');
    s.res.write(`${id ? `id: ${id}\n` : ''}event: ${event}\ndata: ${JSON.stringify(data)}\n\n`);
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url!, 'http://x');
    if (req.method === 'GET' && url.pathname === '/v1/connectors/events') {
      const rec: Recorded = { method: 'GET', path: url.pathname + url.search, headers: req.headers, body: Buffer.alloc(0), at: Date.now() };
      this.requests.push(rec);
      const n = this.bump('GET events');
      for (const f of this.faults) {
        const r = await f(rec, n);
        if (r) return this.reply(res, r);
      }
      this.streams.push({ req, res, headers: req.headers });
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache, no-transform' });
      res.flushHeaders();
      this.onStream?.(res, req, n);
      return;
    }
    this.arrivals.push({ method: req.method!, path: url.pathname, at: Date.now() });
    for (const f of this.headFaults) {
      const r = f({ method: req.method!, path: url.pathname });
      if (r) {
        req.resume();
        return this.reply(res, r);
      }
    }
    const parts: Buffer[] = [];
    try {
      for await (const c of req) parts.push(c as Buffer);
    } catch {
      this.aborted.push({ method: req.method!, path: url.pathname });
      return;
    }
    const body = Buffer.concat(parts);
    const rec: Recorded = { method: req.method!, path: url.pathname, headers: req.headers, body, at: Date.now() };
    if (String(req.headers['content-type'] ?? '').includes('json')) rec.json = JSON.parse(body.toString('utf8'));
    this.requests.push(rec);
    const n = this.bump(`${rec.method} ${rec.path}`);
    for (const f of this.faults) {
      const r = await f(rec, n);
      if (r) return this.reply(res, r);
    }
    return this.reply(res, await this.answer(rec, url));
  }

  private bump(key: string): number {
    const n = (this.counts.get(key) ?? 0) + 1;
    this.counts.set(key, n);
    return n;
  }

  private async answer(rec: Recorded, url: URL): Promise<Reply> {
    const m = /^\/v1\/requests\/([^/]+)\/(.+)$/.exec(rec.path);
    if (rec.method === 'PUT' && rec.path.startsWith('/s3/part/')) {
      const n = Number(rec.path.split('/').at(-1));
      if (Number(url.searchParams.get('exp')) < Date.now()) return { status: 403, body: '<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>' };
      this.parts.set(n, rec.body);
      return { status: 200, headers: { etag: `"etag-${n}-${xxh64(rec.body)}"` } };
    }
    if (!m) return { status: 404, body: { status: 'error', error: { code: 'NOT_FOUND', message: 'no route' } } };
    const [, id, what] = m as unknown as [string, string, string];
    const binary = what === 'result' || what.startsWith('stream/chunk/');
    if (binary) {
      if (xxh64(rec.body) !== rec.headers['x-relay-checksum']) return { status: 422, body: { status: 'error', error: { code: 'CHECKSUM_MISMATCH', message: 'bad checksum' } } };
      const decoded = await decodeChunk(rec.body, rec.headers['content-encoding'] === 'zstd' ? 'zstd' : 'identity', Number(rec.headers['x-relay-decoded-length']));
      if (what === 'result') {
        this.results.set(id, decoded);
        return { status: 204 };
      }
      const i = Number(what.split('/').at(-1));
      const map = this.chunks.get(id) ?? new Map<number, Buffer>();
      this.chunks.set(id, map);
      const had = map.has(i);
      map.set(i, decoded);
      return { status: had ? 200 : 201 };
    }
    if (what === 'offload/parts') {
      const urls: Record<string, string> = {};
      for (const p of rec.json.parts as number[]) urls[String(p)] = `${this.url}/s3/part/${p}?exp=${Date.now() + 3_600_000}`;
      return { status: 200, body: { urls, expires_at: new Date(Date.now() + 3_600_000).toISOString() } };
    }
    return { status: 204 };
  }

  private async reply(res: ServerResponse, r: Reply): Promise<void> {
    if (r.delay) await new Promise((ok) => setTimeout(ok, r.delay).unref());
    if (res.destroyed) return;
    if (r.destroy) {
      res.socket?.destroy();
      return;
    }
    const headers: Record<string, string> = { ...r.headers };
    let payload: string | undefined;
    if (r.body !== undefined) {
      if (typeof r.body === 'string') {
        payload = r.body;
        headers['content-type'] ??= 'application/xml';
      } else {
        payload = JSON.stringify(r.body);
        headers['content-type'] = 'application/json';
      }
    }
    res.writeHead(r.status, headers);
    res.end(payload);
  }
}

/** Reassembles a chunked result from what the fake router stored. */
export function assembled(router: FakeRouter, id: string): Buffer {
  const map = router.chunks.get(id) ?? new Map<number, Buffer>();
  return Buffer.concat([...map.entries()].sort(([a], [b]) => a - b).map(([, b]) => b));
}

export const waitFor = async (pred: () => boolean, ms = 5000, what = 'condition'): Promise<void> => {
  const until = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
};
