// readBody (router/http.ts) against real connections on loopback: the ways a body can fail to
// arrive, each answered at once or after the idle timeout, never waited on for good.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type IncomingMessage, type Server } from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { RelayError } from '../../src/protocol/errors.js';
import { bodyReads, readBody } from '../../src/router/http.js';

let server: Server;
let port: number;
/** What the next request's readBody gave, after the handler's own wait (ms in the path). */
let outcome: (r: { body?: Buffer; err?: RelayError; ms: number }) => void = () => undefined;

before(async () => {
  bodyReads.idleMs = 400;
  server = createServer(async (req: IncomingMessage, res) => {
    // Like a stream chunk waiting for room in the window before it reads its body.
    const wait = Number(new URL(req.url ?? '/', 'http://x').searchParams.get('wait') ?? 0);
    if (wait) await new Promise((r) => setTimeout(r, wait));
    const t0 = performance.now();
    try {
      const body = await readBody(req, 1 << 20);
      outcome({ body, ms: performance.now() - t0 });
    } catch (err) {
      outcome({ err: err as RelayError, ms: performance.now() - t0 });
    }
    if (!res.destroyed) res.end();
  });
  server.requestTimeout = 0;
  // As the router does: a body cut short is also a parse error on the socket.
  server.on('clientError', (_err, socket) => socket.destroy());
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  port = (server.address() as AddressInfo).port;
});
after(() => new Promise<void>((r) => server.close(() => r())));

/** Sends a head declaring 1000 bytes and `sent` of them, then does `then` after `ms`. */
function partial(path: string, sent: number, ms: number, then: (s: net.Socket) => void): Promise<{ body?: Buffer; err?: RelayError; ms: number }> {
  const got = new Promise<{ body?: Buffer; err?: RelayError; ms: number }>((r) => (outcome = r));
  const s = net.connect(port, '127.0.0.1', () => {
    s.write(`POST ${path} HTTP/1.1\r\nhost: x\r\ncontent-length: 1000\r\n\r\n${'a'.repeat(sent)}`);
    setTimeout(() => then(s), ms);
  });
  s.on('error', () => undefined);
  return got;
}

describe('readBody', () => {
  test('a whole body is read', async () => {
    const r = await partial('/', 1000, 0, (s) => s.end());
    assert.equal(r.body?.length, 1000);
  });

  for (const [how, close] of [
    ['closed (FIN)', (s: net.Socket) => s.end()],
    ['reset (RST)', (s: net.Socket) => s.resetAndDestroy()],
  ] as const) {
    test(`a connection ${how} before the route reads the body: rejected at once`, async () => {
      const r = await partial('/?wait=300', 400, 50, close);
      assert.equal(r.err?.code, 'BAD_REQUEST', `rejected, not read: ${r.err?.message ?? `${r.body?.length} bytes`}`);
      assert.ok(r.ms < 100, `at once, not after the ${bodyReads.idleMs} ms idle timeout (${Math.round(r.ms)} ms)`);
    });

    test(`a connection ${how} while the body is read: rejected at once`, async () => {
      const r = await partial('/', 400, 100, close);
      assert.equal(r.err?.code, 'BAD_REQUEST');
      assert.ok(r.ms < 300, `${Math.round(r.ms)} ms`);
    });
  }

  test('a body that stops coming is given up after the idle timeout, and its connection closed', async () => {
    let closed!: Promise<void>;
    const r = await partial('/', 400, 0, (s) => (closed = new Promise((res) => s.on('close', () => res()))));
    assert.equal(r.err?.code, 'TIMEOUT');
    assert.ok(r.ms >= bodyReads.idleMs - 50 && r.ms < bodyReads.idleMs + 500, `${Math.round(r.ms)} ms`);
    await closed;
  });
});
