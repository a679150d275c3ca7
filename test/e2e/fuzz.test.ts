// A bounded fuzz run (fast-check) over every route of a real router while other clients'
// transfers run through a real connector: random and malformed paths, headers, bodies, JSON,
// chunk indexes, checksums, Last-Event-ID values and truncated bodies. Properties: no
// undocumented 5xx (no INTERNAL), every error in the protocol's format with the status of its
// code, no crash, nothing left growing; the concurrent transfers arrive byte-identical.
// RELAY_FUZZ_RUNS (default 400; a third of that for raw sockets) sizes the run; a failure prints fast-check's seed.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { connect } from 'node:net';
import { PassThrough } from 'node:stream';
import fc from 'fast-check';
import { request } from 'undici';
import { closeHttp, requestOffload, requestStream, requestSync } from '../../src/client/index.js';
import { xxh64 } from '../../src/protocol/checksum.js';
import { ERROR_STATUS, isErrorCode } from '../../src/protocol/errors.js';
import { addClient, addConnector } from '../../src/router/auth.js';
import { keys } from '../../src/router/redis.js';
import { CHUNK, sleep, Stack } from '../helpers/stack.js';
import { WireConnector } from '../helpers/wire.js';

const RUNS = Number(process.env.RELAY_FUZZ_RUNS ?? 400);
/** Statuses the protocol documents for the router (5xx: CONNECTOR_ERROR, CONNECTOR_OFFLINE/BACKPRESSURE, TIMEOUT). */
const DOCUMENTED = new Set([200, 201, 204, 400, 401, 403, 404, 409, 410, 413, 422, 429, 502, 503, 504]);

let s: Stack;
let target: WireConnector;
const targetConn = { id: 'cc-28-aa-0f', token: `ct_fuzz_${randomBytes(8).toString('hex')}` };
const eventsConn = { id: 'cc-28-aa-0e', token: `ct_events_${randomBytes(8).toString('hex')}` };
const victimKey = `rk_victim_${randomBytes(8).toString('hex')}`;
const liveIds: string[] = [];
const heldOpen: AbortController[] = [];
const files = new Map<string, Buffer>();

before(async () => {
  s = await Stack.start({ routerEnv: { RELAY_REATTACH_GRACE_S: '2', RELAY_STREAM_WINDOW_CHUNKS: '8', RELAY_SYNC_LIMIT_BYTES: String(64 * CHUNK) } });
  await addConnector(s.redis, s.tenant, targetConn.id, targetConn.token);
  await addConnector(s.redis, s.tenant, eventsConn.id, eventsConn.token);
  await addClient(s.redis, s.tenant, victimKey);
  for (const [name, n] of [['v-1.bin', 3 * 1024 * 1024], ['v-2.bin', 700 * 1024], ['v-3.bin', 10]] as const) files.set(name, await s.writeData(name, randomBytes(n)));
  await s.writeData('small.csv', 'a,b\n1,2\n');
  // Live requests on a protocol-level connector, for the fuzzed uploads to hit a real guard.
  target = await new WireConnector(s.routerUrl, targetConn.token).connect();
  for (const mode of ['sync', 'stream', 'offload', 'sync', 'stream']) {
    const ctrl = new AbortController();
    heldOpen.push(ctrl);
    void request(`${s.routerUrl}/v1/datasets/request-${mode}`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.clientKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ connector: targetConn.id, dataset: 'x', timeout_s: 600 }),
      signal: ctrl.signal,
    })
      .then((r) => r.body.dump())
      .catch(() => undefined);
    const cmd = await target.command();
    liveIds.push(cmd.data.request_id);
    await target.post(`/v1/requests/${cmd.data.request_id}/ack`, { attempt: 1 });
  }
});
after(async () => {
  heldOpen.forEach((c) => c.abort());
  target?.close();
  await closeHttp();
  await s?.stop();
});

// ---- arbitraries -------------------------------------------------------------------

const hex16 = fc.stringMatching(/^[0-9a-f]{16}$/);
const junk = fc.string({ maxLength: 40 });
const anyJson = fc.jsonValue({ maxDepth: 4 });
const attempt = fc.oneof(fc.constant(1), fc.integer({ min: -3, max: 1_000_000 }), fc.double(), junk, fc.constant(null));
const nat = fc.oneof(fc.nat({ max: 10 * CHUNK }), fc.integer(), fc.double(), fc.constant(null), junk);

const requestId = fc.oneof(
  fc.constantFrom(...['r_AAAAAAAAAAAAAAAA', 'r_', 'r_../../x', '..', '%00', '%2e%2e%2f', 'r_' + 'x'.repeat(300)]),
  fc.nat({ max: 4 }).map((i) => liveIds[i]!),
  junk.map(encodeURIComponent),
);
const chunkIndex = fc.oneof(fc.nat({ max: 40 }).map(String), fc.integer().map(String), fc.constantFrom('-1', '1e3', '0x10', '00000001', '99999999999', '%20', '%D9%A3', '10000000', '10000001', '1.5'));
const connectorField = fc.oneof(fc.constantFrom('cc-28-aa-01', targetConn.id, 'cc-28-bb-02', 'no-such', ''), junk, fc.integer());

const clientBody = fc.record(
  {
    connector: connectorField,
    dataset: fc.oneof(fc.constantFrom('small.csv', 'missing.csv', '../x', '/etc/passwd', 'a\u0000b'), junk),
    sql: junk,
    database: junk,
    format: fc.oneof(fc.constantFrom('raw', 'arrow', 'csv', 'xml'), junk),
    timeout_s: fc.oneof(fc.constantFrom(1, 2, 5), fc.double(), fc.integer(), junk),
    extra: anyJson,
  },
  { requiredKeys: [] },
);
const controlBody = fc.record(
  {
    attempt,
    content_type: fc.oneof(fc.constant('text/csv'), junk),
    total_bytes: nat,
    total_chunks: nat,
    chunks: nat,
    bytes: nat,
    checksum: fc.oneof(hex16, junk),
    code: fc.oneof(fc.constantFrom('DATASET_NOT_FOUND', 'BAD_REQUEST', 'FORBIDDEN', 'CONNECTOR_ERROR', 'INTERNAL', 'GONE'), junk),
    message: junk,
    parts: fc.oneof(fc.array(fc.oneof(fc.integer({ min: -2, max: 10_002 }), fc.record({ part: fc.integer({ min: -1, max: 5 }), etag: junk })), { maxLength: 8 }), anyJson),
    content_encoding: fc.oneof(fc.constantFrom('zstd', 'identity'), junk),
  },
  { requiredKeys: [] },
);

type Body = { kind: 'json'; text: string } | { kind: 'binary'; bytes: Uint8Array } | { kind: 'none' };
const body: fc.Arbitrary<Body> = fc.oneof(
  { weight: 3, arbitrary: fc.oneof(clientBody, controlBody).map((v) => ({ kind: 'json' as const, text: JSON.stringify(v) })) },
  { weight: 1, arbitrary: anyJson.map((v) => ({ kind: 'json' as const, text: JSON.stringify(v) ?? 'null' })) },
  { weight: 1, arbitrary: fc.string({ maxLength: 200 }).map((t) => ({ kind: 'json' as const, text: t })) },
  { weight: 1, arbitrary: fc.integer({ min: 1, max: 60 }).map((n) => ({ kind: 'json' as const, text: '['.repeat(n) + ']'.repeat(n) })) },
  { weight: 3, arbitrary: fc.oneof(fc.uint8Array({ maxLength: 2048 }), fc.nat({ max: CHUNK + 2048 }).map((n) => new Uint8Array(randomBytes(n)))).map((b) => ({ kind: 'binary' as const, bytes: b })) },
  { weight: 1, arbitrary: fc.constant({ kind: 'none' as const }) },
);

// Mostly the secrets that get past authentication, so the fuzz reaches the routes' own checks.
const who = fc.oneof(
  { weight: 5, arbitrary: fc.constant('target') },
  { weight: 3, arbitrary: fc.constant('client') },
  { weight: 3, arbitrary: fc.constantFrom('none', 'garbage', 'otherClient', 'victim', 'connectorA', 'admin', 'basic', 'bearerEmpty') },
);

const route = fc.oneof(
  fc.constantFrom('sync', 'stream', 'offload').map((m) => ({ method: 'POST', path: `/v1/datasets/request-${m}` })),
  fc.tuple(fc.constantFrom('GET', 'DELETE', 'POST', 'PUT'), requestId).map(([method, id]) => ({ method, path: `/v1/requests/${id}` })),
  fc.tuple(requestId, fc.constantFrom('ack', 'stream/init', 'stream/complete', 'result', 'error', 'offload/parts', 'offload/complete')).map(([id, step]) => ({ method: 'POST', path: `/v1/requests/${id}/${step}` })),
  fc.tuple(requestId, chunkIndex).map(([id, i]) => ({ method: 'POST', path: `/v1/requests/${id}/stream/chunk/${i}` })),
  fc.constantFrom('/healthz', '/readyz', '/metrics', '/v1/connectors', '/admin/queues/', '/v1', '/').map((path) => ({ method: 'GET', path })),
  fc.tuple(fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS'), fc.webPath()).map(([method, path]) => ({ method, path: path || '/' })),
);

const randomHeaders = fc.record(
  {
    'x-relay-attempt': fc.oneof(fc.constantFrom('1', '2', '0', '-1', '1001', '01', ''), junk),
    'x-relay-checksum': fc.oneof(fc.constant('MATCH'), hex16, junk),
    'x-relay-decoded-length': fc.oneof(fc.constant('MATCH'), fc.nat({ max: 2 * CHUNK }).map(String), fc.constantFrom('-1', '1e9', '99999999999999999999'), junk),
    'content-encoding': fc.constantFrom('zstd', 'identity', 'gzip', 'ZSTD', ''),
    'x-relay-content-type': junk,
    'idempotency-key': fc.oneof(fc.uuid(), junk, fc.constant('k'.repeat(300))),
    'last-event-id': fc.oneof(fc.constantFrom('0-0', '999999999999999-0', '-', '1-1-1', '$', '+', '1732290000000-0'), junk, fc.constant('9'.repeat(500))),
    'accept-encoding': fc.constantFrom('zstd', 'gzip', 'zstd;q=0', '*'),
    accept: fc.constantFrom('application/json', '*/*', 'text/event-stream'),
    'content-type': fc.constantFrom('application/json', 'application/octet-stream', 'text/plain'),
  },
  { requiredKeys: [] },
);

// Well-formed upload headers half of the time, so chunks get stored, duplicated and conflicted.
const validUpload = fc.record({
  'x-relay-attempt': fc.constantFrom('1', '1', '2'),
  'x-relay-checksum': fc.constantFrom('MATCH', 'MATCH', 'MATCH', '0000000000000000'),
  'x-relay-decoded-length': fc.constant('MATCH'),
  'content-encoding': fc.constant('identity'),
});
const uploadHeaders = fc.oneof(randomHeaders, validUpload as fc.Arbitrary<Record<string, string>>);

function authHeader(w: string): string | undefined {
  switch (w) {
    case 'none':
      return undefined;
    case 'garbage':
      return `Bearer ${randomBytes(20).toString('base64url')}`;
    case 'client':
      return `Bearer ${s.clientKey}`;
    case 'otherClient':
      return `Bearer ${s.otherClientKey}`;
    case 'victim':
      return `Bearer ${victimKey}`;
    case 'target':
      return `Bearer ${targetConn.token}`;
    case 'connectorA':
      return `Bearer ${s.connectorToken}`;
    case 'admin':
      return `Bearer ${s.adminToken}`;
    case 'basic':
      return `Basic ${Buffer.from(`u:${s.adminToken}`).toString('base64')}`;
    default:
      return 'Bearer ';
  }
}

// ---- checks ------------------------------------------------------------------------

const seen = new Map<number, number>();

function checkAnswer(what: string, status: number, text: string): void {
  seen.set(status, (seen.get(status) ?? 0) + 1);
  assert.ok(DOCUMENTED.has(status), `${what}: undocumented status ${status}: ${text.slice(0, 300)}`);
  if (status < 400) return;
  let b: { status?: unknown; error?: { code?: unknown; message?: unknown } };
  try {
    b = JSON.parse(text) as typeof b;
  } catch {
    return assert.fail(`${what}: ${status} without a JSON error body: ${text.slice(0, 200)}`);
  }
  assert.equal(b.status, 'error', what);
  assert.ok(isErrorCode(b.error?.code), `${what}: unknown code ${String(b.error?.code)}`);
  assert.equal(ERROR_STATUS[b.error!.code as keyof typeof ERROR_STATUS], status, `${what}: code ${String(b.error?.code)} with status ${status}`);
  assert.equal(typeof b.error?.message, 'string');
}

/** Victims: other clients' transfers in all three modes, looping while the fuzz runs. */
function victims(stop: { done: boolean }) {
  const results = { ok: 0, failures: [] as string[] };
  const loop = async (mode: 'sync' | 'stream' | 'offload') => {
    const fns = { sync: requestSync, stream: requestStream, offload: requestOffload };
    let n = 0;
    while (!stop.done) {
      const name = `v-${(n++ % 3) + 1}.bin`;
      const parts: Buffer[] = [];
      const out = new PassThrough();
      out.on('data', (d: Buffer) => parts.push(d));
      try {
        await fns[mode]({ routerUrl: s.routerUrl, apiKey: victimKey }, { connector: s.connectorId, dataset: name }, out);
        if (!Buffer.concat(parts).equals(files.get(name)!)) results.failures.push(`${mode} ${name}: bytes differ`);
        else results.ok++;
      } catch (err) {
        results.failures.push(`${mode} ${name}: ${String(err)}`);
      }
    }
  };
  return { results, done: Promise.all([loop('sync'), loop('stream'), loop('offload')]) };
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${s.routerUrl}/metrics`)).text();
  const m = new RegExp(`^${name}(?:\\{[^}]*\\})? (\\S+)$`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

// ---- the run -----------------------------------------------------------------------

test('fuzzed HTTP requests: documented answers only, no crash, no leak; other transfers intact', async () => {
  const stop = { done: false };
  const v = victims(stop);
  const rssBefore = await metric('relay_router_process_resident_memory_bytes');
  try {
    await fc.assert(
      fc.asyncProperty(route, who, body, uploadHeaders, async (r, w, b, extra) => {
        const headers: Record<string, string> = {};
        const bytes = b.kind === 'binary' ? b.bytes : b.kind === 'json' ? new Uint8Array(Buffer.from(b.text)) : undefined;
        for (const [k, val] of Object.entries(extra)) {
          if (val === 'MATCH') headers[k] = k === 'x-relay-checksum' ? xxh64(bytes ?? new Uint8Array()) : String(bytes?.length ?? 0);
          else headers[k] = val;
        }
        const auth = authHeader(w);
        if (auth !== undefined) headers.authorization = auth;
        // The event stream is fuzzed with a connector of its own: a takeover of the victims'
        // connector would only measure reconnect time.
        if (r.path.startsWith('/v1/connectors/events') && w === 'connectorA') headers.authorization = `Bearer ${eventsConn.token}`;
        const what = `${r.method} ${r.path} as ${w}`;
        let res;
        try {
          res = await request(`${s.routerUrl}${r.path}`, {
            method: r.method as 'GET',
            headers,
            ...(bytes && r.method !== 'GET' ? { body: bytes } : {}),
            headersTimeout: 4000,
            bodyTimeout: 4000,
            signal: AbortSignal.timeout(4000),
          });
        } catch (err) {
          const e = err as { code?: string; name?: string };
          // The client library refused the input (invalid header value or path), or the
          // request waits on a connector past our patience: nothing to judge.
          if (e.code === 'UND_ERR_INVALID_ARG' || e.name === 'TimeoutError' || e.name === 'AbortError' || e.code === 'UND_ERR_HEADERS_TIMEOUT') return;
          throw new Error(`${what}: ${String(err)}`);
        }
        const event = String(res.headers['content-type'] ?? '').startsWith('text/event-stream');
        const text = event ? '' : await res.body.text().catch(() => '');
        if (event) res.body.destroy();
        checkAnswer(what, res.statusCode, text);
      }),
      { numRuns: RUNS, interruptAfterTimeLimit: 120_000, endOnFailure: true },
    );

    // Raw bytes on the socket: truncated bodies, broken request lines and headers.
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('POST /v1/requests/ID/stream/chunk/0', 'POST /v1/requests/ID/ack', 'POST /v1/datasets/request-sync', 'GET /v1/connectors', 'POST /v1/requests/ID/result', 'GARBAGE', 'GET /v1/requests/%zz', 'GET /\u0000'),
        fc.nat({ max: CHUNK }),
        fc.double({ min: 0, max: 1, noNaN: true }),
        fc.constantFrom('end', 'destroy', 'wait'),
        fc.constantFrom('', 'x-bad header: 1\r\n', 'x-relay-attempt: 1\r\nx-relay-checksum: 0000000000000000\r\nx-relay-decoded-length: 5\r\n', 'transfer-encoding: chunked\r\n', 'content-length: 5\r\ncontent-length: 6\r\n'),
        async (line, declared, fraction, ending, more) => {
          const id = liveIds[declared % liveIds.length]!;
          const sent = Math.floor(declared * fraction);
          const head = `${line.replace('ID', id)} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${targetConn.token}\r\ncontent-length: ${declared}\r\n${more}connection: close\r\n\r\n`;
          const answer = await new Promise<string>((resolve) => {
            const sock = connect(Number(new URL(s.routerUrl).port), '127.0.0.1');
            let got = '';
            sock.setTimeout(3000, () => sock.destroy());
            sock.on('data', (d) => (got += d.toString('latin1')));
            sock.on('close', () => resolve(got));
            sock.on('error', () => undefined);
            sock.write(head);
            sock.write(randomBytes(sent), () => {
              if (ending === 'end') sock.end();
              else if (ending === 'destroy') sock.destroy();
            });
          });
          const m = /^HTTP\/1\.1 (\d{3})/.exec(answer);
          if (!m) return; // the connection was cut before any answer: nothing to judge
          const split = answer.indexOf('\r\n\r\n');
          const bodyText = answer.slice(split + 4);
          const chunked = /transfer-encoding: chunked/i.test(answer.slice(0, split));
          checkAnswer(`raw ${line} (${sent}/${declared} bytes, ${ending})`, Number(m[1]), chunked ? bodyText.replace(/^[0-9a-f]+\r\n|\r\n[0-9a-f]+\r\n|\r\n0\r\n\r\n$/g, '') : bodyText);
        },
      ),
      { numRuns: Math.ceil(RUNS / 3), interruptAfterTimeLimit: 60_000, endOnFailure: true },
    );
  } finally {
    stop.done = true;
    await v.done;
  }

  // Other clients' transfers all arrived byte-identical.
  assert.deepEqual(v.results.failures, [], 'victim transfers failed');
  assert.ok(v.results.ok >= 6, `victim transfers completed: ${v.results.ok}`);
  // Not a crash in sight.
  assert.equal(s.router.child.exitCode, null, 'router alive');
  assert.equal(s.connector!.child.exitCode, null, 'connector alive');
  assert.equal((await fetch(`${s.routerUrl}/healthz`)).status, 200);
  assert.ok(!s.router.lines.some((l) => /"msg":"internal error"|"code":"INTERNAL"/.test(l)), 'no INTERNAL logged');

  // Nothing left growing: held open fuzz targets released, slots back, memory back.
  heldOpen.forEach((c) => c.abort());
  const live = async (mode: string) => {
    let n = 0;
    for (const k of await s.redis.keys('relay:req:r_*')) {
      if (k.endsWith(':chunks')) continue;
      const [m, st] = await s.redis.hmget(k, 'mode', 'status');
      if (m === mode && !['complete', 'failed', 'cancelled'].includes(st ?? '')) n++;
    }
    return n;
  };
  const end = Date.now() + 15_000;
  for (;;) {
    const over: string[] = [];
    for (const mode of ['sync', 'stream', 'offload']) {
      const held = await s.redis.zcard(keys.limitClass(mode));
      if (held > (await live(mode))) over.push(`${mode}: ${held} slots`);
    }
    const mem = await metric('relay_sync_memory_bytes');
    if (over.length === 0 && mem === 0) break;
    assert.ok(Date.now() < end, `slots or memory not given back: ${over.join(', ')} sync memory ${mem}`);
    await sleep(200);
  }
  assert.equal(await metric('relay_sync_spill_files'), 0);
  for (const k of await s.redis.keys('relay:req:*')) assert.ok((await s.redis.pttl(k)) > 0, `${k} has no TTL`);
  for (const k of await s.redis.keys('relay:idem:*')) assert.ok((await s.redis.pttl(k)) > 0, `${k} has no TTL`);
  const rssAfter = await metric('relay_router_process_resident_memory_bytes');
  assert.ok(rssAfter < rssBefore + 300 * 1024 * 1024, `router RSS grew from ${rssBefore} to ${rssAfter}`);
  process.stderr.write(`fuzz: statuses ${JSON.stringify(Object.fromEntries([...seen].sort()))}; victims ${v.results.ok} transfers; RSS ${Math.round(rssBefore / 1e6)} → ${Math.round(rssAfter / 1e6)} MB\n`);
});
