// A stand-in router on 127.0.0.1 for the client tests: records every call and lets each
// test answer as the real router would (or would not).
import { createServer, type IncomingMessage, type ServerResponse, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { xxh64 } from '../../src/protocol/index.js';

export interface Call {
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}

export type Handler = (req: IncomingMessage, res: ServerResponse, call: Call) => void | Promise<void>;

export interface FakeRouter {
  url: string;
  calls: Call[];
  close(): Promise<void>;
}

export async function fakeRouter(handler: Handler): Promise<FakeRouter> {
  const calls: Call[] = [];
  const server = createServer(async (req, res) => {
    const parts: Buffer[] = [];
    for await (const c of req) parts.push(c as Buffer);
    const call: Call = { method: req.method ?? '', url: req.url ?? '', headers: req.headers, body: Buffer.concat(parts).toString('utf8') };
    calls.push(call);
    try {
      await handler(req, res, call);
    } catch (err) {
      res.destroy(err as Error);
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    calls,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A sync answer of `data` with its checksum (or the given one, to fake a mismatch). */
export function syncAnswer(data: Buffer, checksum = xxh64(data)): Handler {
  return (_req, res) => {
    res.writeHead(200, { 'content-length': data.length, 'x-relay-request-id': RID, 'x-relay-checksum': checksum });
    res.end(data);
  };
}

export function json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { 'content-type': 'application/json', ...headers });
  res.end(JSON.stringify(body));
}

export function errorBody(code: string, message: string, requestId?: string): unknown {
  return { status: 'error', ...(requestId ? { request_id: requestId } : {}), error: { code, message } };
}

export function statusBody(id: string, status: string, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    request_id: id,
    status,
    mode: 'stream',
    connector: 'cc-28-aa-01',
    attempt: 1,
    created_at: new Date().toISOString(),
    updated_at: new Date().toISOString(),
    bytes: 0,
    chunks: 0,
    checksum: null,
    error: null,
    ...extra,
  };
}

/** A Writable that keeps what it gets; optionally slow, to exercise backpressure. */
export function collector(opts: { highWaterMark?: number; delayMs?: number } = {}): { out: Writable; data(): Buffer; writes(): number } {
  const chunks: Buffer[] = [];
  const out = new Writable({
    highWaterMark: opts.highWaterMark ?? 16 * 1024,
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk);
      if (opts.delayMs) setTimeout(cb, opts.delayMs);
      else cb();
    },
  });
  return { out, data: () => Buffer.concat(chunks), writes: () => chunks.length };
}

export const RID = 'r_test0000001';
