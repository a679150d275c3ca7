// The fault-injecting TCP proxy (test/helpers/fault-proxy.ts), on real loopback sockets.
import { test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import { FaultProxy, type Faults } from '../helpers/fault-proxy.js';

const T = { timeout: 10_000 };
const MB = 1 << 20;

async function listen<S extends net.Server>(server: S): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return (server.address() as net.AddressInfo).port;
}

async function closeServer(server: net.Server): Promise<void> {
  if (!server.listening) return;
  const closed = new Promise<void>((r) => server.close(() => r()));
  if (server instanceof http.Server) server.closeAllConnections();
  await closed;
}

/** An upstream plus a proxy in front of it, both torn down after the test. */
async function setup<S extends net.Server>(t: TestContext, server: S, faults?: Faults, seed?: number) {
  const port = await listen(server);
  const sockets = new Set<net.Socket>();
  server.on('connection', (s: net.Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port }, faults, seed });
  t.after(async () => {
    await proxy.close();
    for (const s of sockets) s.destroy();
    await closeServer(server);
  });
  return { proxy, port };
}

function echoServer(): net.Server {
  return net.createServer((s) => {
    s.on('error', () => {});
    s.pipe(s);
  });
}

interface Res {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

function request(
  port: number,
  opts: { method?: string; path?: string; headers?: Record<string, string>; body?: Buffer; agent?: http.Agent } = {},
): Promise<Res> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method: opts.method ?? 'GET',
        path: opts.path ?? '/',
        headers: { ...(opts.body ? { 'content-length': String(opts.body.length) } : {}), ...opts.headers },
        agent: opts.agent ?? false,
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

function readAll(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

/** Resolves when the socket has closed (events.once would reject on its 'error'). */
function closed(s: net.Socket): Promise<void> {
  return s.closed ? Promise.resolve() : new Promise((r) => s.once('close', () => r()));
}

// The endpoints of the throughput test run in a worker thread so that the proxy, on the main
// thread, gets a core of its own (2-core machine): that measures the proxy, not the test.
const ENDPOINTS = `
const { parentPort } = require('node:worker_threads');
const net = require('node:net');
const { randomBytes } = require('node:crypto');
const data = randomBytes(50 * 1024 * 1024);
let onSink = null;
const sink = net.createServer((s) => {
  const chunks = [];
  s.on('data', (c) => chunks.push(c));
  s.on('end', () => { onSink(chunks); s.end(); });
});
const source = net.createServer((s) => { s.on('error', () => {}); s.end(data); });
let ready = 0;
const up = () => { if (++ready === 2) parentPort.postMessage({ sink: sink.address().port, source: source.address().port }); };
sink.listen(0, '127.0.0.1', up);
source.listen(0, '127.0.0.1', up);
parentPort.on('message', ({ op, port }) => {
  if (op === 'close') { sink.close(); source.close(); parentPort.close(); return; }
  const t0 = performance.now();
  const c = net.connect(port, '127.0.0.1');
  const done = (chunks) => {
    const secs = (performance.now() - t0) / 1000; // time to the last byte, before any checking
    parentPort.postMessage({ secs, identical: Buffer.concat(chunks).equals(data), bytes: data.length });
    c.destroy();
  };
  if (op === 'upload') {
    onSink = done;
    let off = 0; // 1 MiB writes with backpressure, like a real sender
    const send = () => {
      while (off < data.length) {
        const ok = c.write(data.subarray(off, (off += 1 << 20)));
        if (!ok) return void c.once('drain', send);
      }
      c.end();
    };
    send();
  } else {
    const chunks = [];
    c.on('data', (b) => chunks.push(b));
    c.on('end', () => done(chunks));
  }
});
`;

test('zero faults: 50 MB each way is byte-identical, and fast', T, async (t) => {
  const worker = new Worker(ENDPOINTS, { eval: true });
  t.after(() => worker.terminate());
  const reply = <R>() => once(worker, 'message').then(([m]) => m as R);
  const { sink, source } = await reply<{ sink: number; source: number }>();
  const run = async (op: 'upload' | 'download', port: number) => {
    worker.postMessage({ op, port });
    const r = await reply<{ secs: number; identical: boolean; bytes: number }>();
    assert.ok(r.identical, `${op} via port ${port} is byte-identical`);
    return r.bytes / MB / r.secs;
  };
  const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port: sink } });
  t.after(() => proxy.close());
  // Best of two runs each: the first run also pays for warm-up (JIT, page faults).
  const best = async (op: 'upload' | 'download', port: number) => Math.max(await run(op, port), await run(op, port));
  const directUp = await best('upload', sink);
  const proxyUp = await best('upload', proxy.port);
  proxy.retarget({ host: '127.0.0.1', port: source });
  const directDown = await best('download', source);
  const proxyDown = await best('download', proxy.port);
  worker.postMessage({ op: 'close' });

  const f = (x: number) => x.toFixed(0);
  t.diagnostic(`upload:   direct ${f(directUp)} MiB/s, via proxy ${f(proxyUp)} MiB/s`);
  t.diagnostic(`download: direct ${f(directDown)} MiB/s, via proxy ${f(proxyDown)} MiB/s`);
  assert.equal(proxy.stats.bytesUp, 2 * 50 * MB);
  assert.equal(proxy.stats.bytesDown, 2 * 50 * MB);
  // Loose floor only (the machine is shared with other test runs); the diagnostic above carries
  // the real number.
  assert.ok(proxyUp > 50 && proxyDown > 50, 'proxy forwards at > 50 MiB/s');
});

test('non-HTTP streams and chunked requests pass through untouched even with request faults on', T, async (t) => {
  const { proxy } = await setup(t, echoServer(), { corruptRate: 1, truncateRate: 1, http502Rate: 1 });
  // A Redis-protocol exchange, split oddly across writes.
  const c = net.connect(proxy.port, '127.0.0.1');
  const resp = Buffer.from('*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$5\r\nvalue\r\n*1\r\n$4\r\nPING\r\n');
  const got: Buffer[] = [];
  c.on('data', (b: Buffer) => got.push(b));
  c.write(resp.subarray(0, 5));
  await sleep(20);
  c.end(resp.subarray(5));
  await once(c, 'end');
  assert.deepEqual(Buffer.concat(got), resp);

  // HTTP with Transfer-Encoding: chunked → rest of the connection is passed through as-is.
  const body = randomBytes(10_000);
  const server = http.createServer(async (req, res) => res.end(await readAll(req)));
  const { proxy: p2 } = await setup(t, server, { corruptRate: 1, truncateRate: 1 });
  const echoed = await new Promise<Buffer>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: p2.port, method: 'POST', path: '/chunked', agent: false }, async (res) =>
      resolve(await readAll(res)),
    );
    req.on('error', reject);
    req.write(body.subarray(0, 4000));
    req.end(body.subarray(4000)); // no content-length: node sends it chunked
  });
  assert.deepEqual(echoed, body);
  assert.equal(p2.stats.corrupted + p2.stats.truncated, 0);
  assert.equal(p2.stats.requests, 1);
});

test('refuse: connections are accepted and reset, upstream never sees them', T, async (t) => {
  let upstreamConns = 0;
  const server = net.createServer((s) => {
    upstreamConns++;
    s.destroy();
  });
  const { proxy } = await setup(t, server, { refuse: true });
  await assert.rejects(request(proxy.port), (e: NodeJS.ErrnoException) => ['ECONNRESET', 'EPIPE'].includes(e.code!) || /hang up/.test(e.message));
  const c = net.connect(proxy.port, '127.0.0.1');
  c.on('error', () => {});
  await closed(c);
  assert.equal(proxy.stats.refused, 2);
  assert.equal(upstreamConns, 0);
});

test('an unreachable upstream resets the client; retarget() follows a restarted upstream', T, async (t) => {
  const first = echoServer();
  const { proxy } = await setup(t, first);
  await closeServer(first); // upstream goes away: connecting to it is refused
  const c = net.connect(proxy.port, '127.0.0.1');
  let err: NodeJS.ErrnoException | undefined;
  c.on('error', (e) => (err = e));
  c.write('lost');
  await closed(c);
  assert.equal(err?.code, 'ECONNRESET');

  const second = echoServer();
  const port = await listen(second);
  t.after(() => closeServer(second));
  proxy.retarget({ host: '127.0.0.1', port });
  const c2 = net.connect(proxy.port, '127.0.0.1');
  c2.end('back');
  const got: Buffer[] = [];
  c2.on('data', (b: Buffer) => got.push(b));
  await closed(c2);
  assert.equal(Buffer.concat(got).toString(), 'back');
});

test('blackhole: nothing flows (the client times out), and flows again when lifted', T, async (t) => {
  const { proxy } = await setup(t, echoServer(), { blackhole: true });
  const c = net.connect(proxy.port, '127.0.0.1');
  const got: Buffer[] = [];
  c.on('data', (b: Buffer) => got.push(b));
  c.write('ping');
  c.setTimeout(300);
  await once(c, 'timeout');
  assert.equal(got.length, 0);
  assert.equal(proxy.stats.bytesUp, 0);
  await assert.rejects(
    new Promise((_, reject) => {
      const req = http.request({ host: '127.0.0.1', port: proxy.port, agent: false, timeout: 200 });
      req.on('timeout', () => req.destroy(new Error('client timeout')));
      req.on('error', reject);
      req.end();
    }),
    /client timeout/,
  );
  c.setTimeout(0);
  proxy.set({ blackhole: false });
  await once(c, 'data');
  assert.equal(Buffer.concat(got).toString(), 'ping');
  c.destroy();
});

test('latency: a request/response round trip takes at least 2 × latency', T, async (t) => {
  const server = http.createServer((req, res) => res.end('ok'));
  const { proxy, port } = await setup(t, server, { latencyMs: 100 });
  const t0 = performance.now();
  const direct = await request(port);
  const directMs = performance.now() - t0;
  const t1 = performance.now();
  const res = await request(proxy.port);
  const ms = performance.now() - t1;
  t.diagnostic(`round trip: direct ${directMs.toFixed(1)} ms, via proxy with 100 ms latency ${ms.toFixed(1)} ms`);
  assert.equal(direct.status, 200);
  assert.equal(res.body.toString(), 'ok');
  assert.ok(ms >= 200, `round trip ${ms} ms >= 200 ms`);
  assert.ok(ms < 600, `round trip ${ms} ms is not wildly more`);
});

test('bandwidth: 5 MB at 10 MB/s takes ≈ 0.5 s, and the link is shared by all connections', T, async (t) => {
  const done = new Map<number, () => void>();
  const sink = net.createServer((s) => {
    let n = 0;
    s.on('data', (c: Buffer) => (n += c.length));
    s.on('end', () => {
      done.get(n)?.();
      s.end();
    });
  });
  const { proxy } = await setup(t, sink, { bandwidthBytesPerSec: 10_000_000 });
  const payload = randomBytes(5_000_001);
  const send = (bytes: number) => {
    const arrived = new Promise<void>((r) => done.set(bytes, r));
    const c = net.connect(proxy.port, '127.0.0.1');
    c.end(payload.subarray(0, bytes));
    c.resume();
    return arrived.then(() => c.destroy());
  };
  let t0 = performance.now();
  await send(5_000_000);
  const one = (performance.now() - t0) / 1000;
  t0 = performance.now();
  await Promise.all([send(2_500_000), send(2_500_001)]);
  const two = (performance.now() - t0) / 1000;
  t.diagnostic(`5 MB at 10 MB/s: one connection ${one.toFixed(3)} s, two connections ${two.toFixed(3)} s`);
  assert.ok(one > 0.35 && one < 0.65, `one connection: ${one} s ≈ 0.5 s`);
  assert.ok(two > 0.35 && two < 0.65, `two connections share the link: ${two} s ≈ 0.5 s`);
});

test('bandwidth with latency: the link stays full (bytes on the wire do not pause reading)', T, async (t) => {
  // 100 ms one way at 10 MB/s is 1 MB on the wire, as much as the proxy's high-water mark: the
  // link must not idle while the next bytes sit out their latency (it did: ~1.6 s).
  let arrived!: () => void;
  const done = new Promise<void>((r) => (arrived = r));
  const sink = net.createServer((s) => {
    s.resume();
    s.on('end', () => {
      arrived();
      s.end();
    });
  });
  const { proxy } = await setup(t, sink, { bandwidthBytesPerSec: 10_000_000, latencyMs: 100 });
  const t0 = performance.now();
  const c = net.connect(proxy.port, '127.0.0.1');
  c.end(randomBytes(8_000_000));
  c.resume();
  await done;
  c.destroy();
  const s = (performance.now() - t0) / 1000;
  t.diagnostic(`8 MB at 10 MB/s with 100 ms latency: ${s.toFixed(3)} s (ideal 0.9 s)`);
  assert.ok(s > 0.85 && s < 1.3, `${s} s ≈ 0.9 s`);
});

test('per-direction bandwidth: only the shaped direction is slow', T, async (t) => {
  const payload = randomBytes(3_000_000);
  const server = net.createServer((s) => {
    s.on('error', () => {});
    s.once('data', () => s.end(payload)); // any request: answer 3 MB
  });
  const { proxy } = await setup(t, server, { bandwidthUpBytesPerSec: 1_000_000 });
  const t0 = performance.now();
  const c = net.connect(proxy.port, '127.0.0.1');
  c.write('go');
  let n = 0;
  c.on('data', (d: Buffer) => (n += d.length));
  await once(c, 'end');
  c.destroy();
  const down = (performance.now() - t0) / 1000;
  assert.equal(n, payload.length);
  assert.ok(down < 1, `3 MB downstream is not shaped by a 1 MB/s upstream limit (${down} s)`);
  proxy.set({ bandwidthDownBytesPerSec: 10_000_000 });
  const t1 = performance.now();
  const c2 = net.connect(proxy.port, '127.0.0.1');
  c2.write('go');
  c2.resume();
  await once(c2, 'end');
  c2.destroy();
  const shaped = (performance.now() - t1) / 1000;
  t.diagnostic(`3 MB down: unshaped ${down.toFixed(3)} s, at 10 MB/s ${shaped.toFixed(3)} s`);
  assert.ok(shaped > 0.2 && shaped < 0.45, `3 MB at 10 MB/s: ${shaped} s ≈ 0.3 s`);
});

test('resetRate=1: the connection is reset', T, async (t) => {
  const { proxy } = await setup(t, echoServer(), { resetRate: 1 });
  const c = net.connect(proxy.port, '127.0.0.1');
  c.write('hello');
  const [err] = (await once(c, 'error').catch((e: unknown) => [e])) as [NodeJS.ErrnoException];
  assert.equal(err.code, 'ECONNRESET');
  assert.equal(proxy.stats.resets, 1);
  assert.equal(proxy.stats.bytesUp, 0);
});

test('http502Rate=1: answers 502 without forwarding the request', T, async (t) => {
  let seen = 0;
  const server = http.createServer((req, res) => {
    seen++;
    res.end('ok');
  });
  const { proxy } = await setup(t, server, { http502Rate: 1 });
  const res = await request(proxy.port, { method: 'POST', path: '/v1/stream/chunk/0', body: randomBytes(300_000) });
  assert.equal(res.status, 502);
  assert.equal(res.headers.connection, 'close');
  assert.match(res.body.toString(), /502/);
  assert.equal(seen, 0);
  assert.equal(proxy.stats.answered502, 1);
  assert.equal(proxy.stats.requests, 1);
});

test('corruptRate=1: exactly one body byte changes, the head is intact, same seed → same byte', T, async (t) => {
  const body = randomBytes(256 * 1024);
  const diffs: number[] = [];
  for (let round = 0; round < 2; round++) {
    let received: { method: string; url: string; header: string | undefined; body: Buffer } | null = null;
    const server = http.createServer(async (req, res) => {
      received = { method: req.method!, url: req.url!, header: req.headers['x-check'] as string | undefined, body: await readAll(req) };
      res.end('ok');
    });
    const { proxy } = await setup(t, server, { corruptRate: 1 }, 42);
    const res = await request(proxy.port, { method: 'PUT', path: '/v1/stream/chunk/7?x=1', headers: { 'x-check': 'intact' }, body });
    assert.equal(res.status, 200);
    const r = received! as { method: string; url: string; header: string | undefined; body: Buffer };
    assert.equal(r.method, 'PUT');
    assert.equal(r.url, '/v1/stream/chunk/7?x=1');
    assert.equal(r.header, 'intact');
    assert.equal(r.body.length, body.length);
    const differ: number[] = [];
    for (let i = 0; i < body.length; i++) if (r.body[i] !== body[i]) differ.push(i);
    assert.equal(differ.length, 1, 'exactly one byte differs');
    assert.equal(proxy.stats.corrupted, 1);
    diffs.push(differ[0]!);
  }
  assert.equal(diffs[0], diffs[1], 'the seed makes it reproducible');
});

test('truncateRate=1: the server sees an aborted request, the client an error', T, async (t) => {
  const body = randomBytes(1 * MB);
  let resolveSeen!: (v: { complete: boolean; bytes: number }) => void;
  const seen = new Promise<{ complete: boolean; bytes: number }>((r) => (resolveSeen = r));
  const server = http.createServer((req) => {
    let bytes = 0;
    req.on('data', (c: Buffer) => (bytes += c.length));
    req.on('error', () => {});
    req.on('close', () => resolveSeen({ complete: req.complete, bytes }));
  });
  const { proxy } = await setup(t, server, { truncateRate: 1 });
  await assert.rejects(request(proxy.port, { method: 'POST', path: '/upload', body }));
  const s = await seen;
  assert.equal(s.complete, false);
  assert.ok(s.bytes < body.length, `server got ${s.bytes} of ${body.length} bytes`);
  assert.equal(proxy.stats.truncated, 1);
});

test('matchPath restricts per-request faults to matching paths', T, async (t) => {
  const server = http.createServer((req, res) => res.end(req.url));
  const { proxy } = await setup(t, server, { http502Rate: 1, matchPath: /stream\/chunk/ });
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  assert.equal((await request(proxy.port, { path: '/health', agent })).status, 200);
  assert.equal((await request(proxy.port, { method: 'POST', path: '/v1/x', body: randomBytes(1000), agent })).status, 200);
  assert.equal((await request(proxy.port, { method: 'POST', path: '/v1/stream/chunk/3', body: randomBytes(1000), agent })).status, 502);
  assert.equal(proxy.stats.answered502, 1);
});

test('cutAll resets a long-lived response (an event stream)', T, async (t) => {
  let serverSawClose!: () => void;
  const serverClosed = new Promise<void>((r) => (serverSawClose = r));
  const server = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const tick = setInterval(() => res.write('data: tick\n\n'), 20);
    res.on('close', () => {
      clearInterval(tick);
      serverSawClose();
    });
  });
  const { proxy } = await setup(t, server);
  const res = await new Promise<http.IncomingMessage>((resolve, reject) =>
    http.get({ host: '127.0.0.1', port: proxy.port, path: '/events', agent: false }, resolve).on('error', reject),
  );
  await once(res, 'data');
  const ended = new Promise<string>((resolve) => {
    res.on('error', (e) => resolve(`error ${e.message}`));
    res.on('close', () => resolve(res.complete ? 'complete' : 'aborted'));
  });
  const t0 = performance.now();
  proxy.cutAll();
  const how = await ended;
  assert.notEqual(how, 'complete');
  assert.ok(performance.now() - t0 < 1000);
  await serverClosed;
  assert.equal(proxy.stats.resets, 1);
  assert.equal(proxy.openConnections, 0);
});

test('set() at run time applies to an open keep-alive connection', T, async (t) => {
  const server = http.createServer(async (req, res) => res.end(String((await readAll(req)).length)));
  const { proxy } = await setup(t, server);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  t.after(() => agent.destroy());
  const body = randomBytes(200_000);
  const r1 = await request(proxy.port, { method: 'POST', path: '/a', body, agent });
  assert.equal(r1.body.toString(), String(body.length));

  proxy.set({ latencyMs: 80 });
  const t0 = performance.now();
  const r2 = await request(proxy.port, { method: 'POST', path: '/b', body, agent });
  assert.equal(r2.body.toString(), String(body.length));
  assert.ok(performance.now() - t0 >= 160, 'latency applies on the open connection');

  // The framer has tracked request boundaries since the first byte, so a fault switched on now
  // hits the next request on the same connection, not a byte in the middle of a body.
  proxy.set({ latencyMs: 0, http502Rate: 1 });
  const r3 = await request(proxy.port, { method: 'POST', path: '/c', body, agent });
  assert.equal(r3.status, 502);
  assert.equal(proxy.stats.connections, 1, 'all three requests used one connection');
  assert.equal(proxy.stats.requests, 3);

  proxy.clear();
  assert.deepEqual(proxy.faults, {});
  const r4 = await request(proxy.port, { method: 'POST', path: '/d', body, agent });
  assert.equal(r4.status, 200);
});

test('close() leaves no sockets or timers behind, even mid-transfer with faults on', T, async (t) => {
  const kinds = ['TCPSocketWrap', 'TCPServerWrap', 'Timeout'];
  const count = () => process.getActiveResourcesInfo().filter((k) => kinds.includes(k)).length;
  await sleep(100); // let sockets of earlier tests finish closing
  const before = count();
  const server = echoServer();
  const port = await listen(server);
  const proxy = await FaultProxy.start({ target: { host: '127.0.0.1', port }, faults: { latencyMs: 50, bandwidthBytesPerSec: 1_000_000 } });
  const clients = Array.from({ length: 4 }, () => {
    const c = net.connect(proxy.port, '127.0.0.1');
    c.on('error', () => {});
    c.write(randomBytes(2 * MB));
    c.resume();
    return c;
  });
  await sleep(150);
  assert.ok(proxy.stats.bytesUp > 0);
  await proxy.close();
  await Promise.all(clients.map(closed));
  await closeServer(server);
  await sleep(10);
  assert.equal(count(), before, `active: ${process.getActiveResourcesInfo().join(', ')}`);
  void t;
});
