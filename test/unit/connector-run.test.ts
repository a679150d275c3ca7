// The whole connector (startConnector) against a fake router on 127.0.0.1: event stream,
// acks and leases, dedupe, cancel, errors, reconnects, shutdown.
import { test, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { pino } from 'pino';
import { connectorConfig } from '../../src/config.js';
import { startConnector, type RunningConnector } from '../../src/connector/connector.js';
import { UPLOAD_RETRY } from '../../src/connector/retry.js';
import { xxh64 } from '../../src/protocol/checksum.js';
import { FakeRouter, assembled, waitFor } from './connector-fake-router.js';

const log = pino({ level: 'silent' });
let dir: string;
let router: FakeRouter;
let connector: RunningConnector | undefined;
let seq = 0;

before(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'relay-run-'));
  await writeFile(path.join(dir, 'a.csv'), 'id,name\n1,x\n2,y\n');
  await writeFile(path.join(dir, 'notes.txt'), 'not a table');
  await writeFile(path.join(dir, 'big.csv'), 'id,region,amount\n1,north,10.5\n'.repeat(2000));
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});
afterEach(async () => {
  await connector?.stop(100);
  connector = undefined;
  await router.close();
});

interface Hello {
  heartbeat_s?: number;
  max_age_s?: number;
  /** Send `: ping` this often (ms); 0 for never. */
  pingMs?: number;
}

async function start(hello: Hello = {}, cfgOver: Record<string, unknown> = {}): Promise<RunningConnector> {
  router = await new FakeRouter().start();
  const { pingMs = 0, ...h } = hello;
  router.onStream = (res) => {
    res.write(`retry: 50\nevent: hello\ndata: ${JSON.stringify({ connector_id: 'cc-1', session_id: 's_1', heartbeat_s: 30, max_age_s: 300, ...h })}\n\n`);
    if (pingMs) {
      const t = setInterval(() => res.write(': ping\n\n'), pingMs);
      res.on('close', () => clearInterval(t));
    }
  };
  const cfg = connectorConfig({ router: router.url, id: 'cc-1', token: 'secret-token', dataDir: dir, concurrency: '4', uploadParallel: '2', ...cfgOver }, {});
  connector = await startConnector(cfg, log, { retryPolicy: { ...UPLOAD_RETRY, baseMs: 5, maxMs: 20 }, authRetryMs: 300, version: 'test-1' });
  await waitFor(() => connector!.stats.connected && router.streams.length > 0, 5000, 'event stream');
  return connector;
}

function command(over: Record<string, unknown> = {}) {
  return {
    request_id: `r_test${String(++seq).padStart(6, '0')}`,
    attempt: 1,
    mode: 'sync',
    dataset: 'a.csv',
    format: 'raw',
    chunk_size: 1024,
    compression: 'zstd',
    resume_from: 0,
    deadline: new Date(Date.now() + 60_000).toISOString(),
    ...over,
  };
}

const ofRequest = (id: string) => router.paths().filter((p) => p.includes(`/${id}/`)).map((p) => p.slice(p.indexOf(id) + id.length + 1));

test('connects with the protocol headers, acks a command before the work, then delivers it', async () => {
  await start();
  const get = router.requests[0]!;
  assert.equal(get.path, '/v1/connectors/events?concurrency=4&version=test-1');
  assert.equal(get.headers.authorization, 'Bearer secret-token');
  assert.equal(get.headers.accept, 'text/event-stream');
  assert.equal(get.headers['last-event-id'], undefined);

  const small = command();
  const big = command({ dataset: 'big.csv', mode: 'stream' });
  router.send('command', small, '1-0');
  router.send('command', big, '2-0');
  await waitFor(() => router.results.has(small.request_id) && ofRequest(big.request_id).includes('stream/complete'));
  // The ack goes out first; the uploads do not wait for its answer, so arrival order may vary.
  assert.deepEqual(ofRequest(small.request_id).sort(), ['ack', 'result']);
  assert.deepEqual(router.find((r) => r.path.endsWith(`${small.request_id}/ack`))[0]!.json, { attempt: 1 });
  assert.equal(router.results.get(small.request_id)!.toString(), 'id,name\n1,x\n2,y\n');
  const flow = ofRequest(big.request_id).filter((p) => p !== 'ack');
  assert.equal(ofRequest(big.request_id).filter((p) => p === 'ack').length, 1);
  assert.equal(flow[0], 'stream/init');
  assert.equal(flow.at(-1), 'stream/complete');
  const data = Buffer.from('id,region,amount\n1,north,10.5\n'.repeat(2000));
  assert.deepEqual(assembled(router, big.request_id), data);
  assert.equal(router.find((r) => r.path.endsWith(`${big.request_id}/stream/complete`))[0]!.json.checksum, xxh64(data));
});

test('a dataset is uploaded while its ack is on the way; the result waits for nothing, an error report for the ack', async () => {
  await start();
  // The router takes 400 ms to answer each ack.
  router.faults.push((r) => (r.path.endsWith('/ack') ? { status: 204, delay: 400 } : undefined));
  const big = command({ dataset: 'big.csv', mode: 'stream' });
  const missing = command({ dataset: 'missing.csv' });
  router.send('command', big);
  router.send('command', missing);
  await waitFor(() => ofRequest(big.request_id).includes('stream/complete') && router.find((r) => r.path.endsWith(`${missing.request_id}/error`)).length === 1);
  const at = (id: string, what: string) => router.find((r) => r.path.endsWith(`${id}/${what}`))[0]!.at;
  const ackAt = at(big.request_id, 'ack');
  assert.ok(at(big.request_id, 'stream/complete') < ackAt + 400, 'the whole result went up before the ack was answered');
  assert.deepEqual(assembled(router, big.request_id), Buffer.from('id,region,amount\n1,north,10.5\n'.repeat(2000)));
  // A failure is reported only once the command is known to be acknowledged.
  assert.ok(at(missing.request_id, 'error') >= at(missing.request_id, 'ack') + 400, 'error report after the ack was answered');
});

test('failures are reported with the connector codes, after the ack', async () => {
  await start();
  const cases = [
    [command({ dataset: 'missing.csv' }), 'DATASET_NOT_FOUND', /missing\.csv/],
    [command({ dataset: '../etc/passwd' }), 'FORBIDDEN', /not allowed/],
    [command({ dataset: 'a\u0000.csv' }), 'BAD_REQUEST', /NUL/],
    [command({ dataset: undefined, sql: 'SELECT 1', format: 'arrow' }), 'BAD_REQUEST', /^no databases are configured on this connector$/],
    [command({ dataset: 'notes.txt', format: 'arrow' }), 'BAD_REQUEST', /^notes\.txt: only CSV, Parquet and JSON files can be converted/],
  ] as const;
  for (const [cmd] of cases) router.send('command', cmd);
  // An invalid command is not acked (it cannot be run) but still answered.
  const invalid = command({ chunk_size: -5 });
  router.send('command', invalid);
  await waitFor(() => router.find((r) => r.path.endsWith('/error')).length === cases.length + 1);
  for (const [cmd, code, message] of cases) {
    assert.deepEqual(ofRequest(cmd.request_id), ['ack', 'error']);
    const body = router.find((r) => r.path.endsWith(`${cmd.request_id}/error`))[0]!.json;
    assert.equal(body.attempt, 1);
    assert.equal(body.code, code);
    assert.match(body.message, message);
  }
  assert.deepEqual(ofRequest(invalid.request_id), ['error']);
  assert.equal(router.find((r) => r.path.endsWith(`${invalid.request_id}/error`))[0]!.json.code, 'BAD_REQUEST');
});

test('a redelivered command is acked again but runs once; queued commands are acked at once', async () => {
  await start({}, { concurrency: '1' });
  router.faults.push((r) => (r.path.endsWith('/result') ? { status: 204, delay: 300 } : undefined));
  const cmd = command();
  const other = command();
  router.send('command', cmd, '1-0');
  router.send('command', other, '2-0');
  await waitFor(() => router.find((r) => r.path.endsWith('/ack')).length === 2);
  assert.equal(router.results.size, 0, 'both acked before any result (the second is queued)');
  router.send('command', cmd, '1-0');
  await waitFor(() => router.find((r) => r.path.endsWith('/result')).length === 2 && connector!.stats.running === 0);
  assert.deepEqual(ofRequest(cmd.request_id).sort(), ['ack', 'ack', 'result']);
  // Also after it finished.
  router.send('command', cmd, '1-0');
  await waitFor(() => ofRequest(cmd.request_id).length === 4);
  await new Promise((r) => setTimeout(r, 100));
  assert.deepEqual(ofRequest(cmd.request_id).sort(), ['ack', 'ack', 'ack', 'result']);
});

test('cancel aborts the work: no complete, no error', async () => {
  await start();
  router.faults.push((r) => (r.path.includes('/stream/chunk/') ? { status: 201, delay: 100 } : undefined));
  const cmd = command({ dataset: 'big.csv', mode: 'stream', compression: 'none' });
  router.send('command', cmd, '1-0');
  await waitFor(() => router.find((r) => r.path.includes(`${cmd.request_id}/stream/chunk/`)).length >= 1);
  router.send('cancel', { request_id: cmd.request_id });
  await waitFor(() => connector!.stats.running === 0);
  await new Promise((r) => setTimeout(r, 150));
  const flow = ofRequest(cmd.request_id);
  assert.ok(!flow.includes('stream/complete') && !flow.includes('error'), flow.join(','));
  assert.ok(flow.filter((p) => p.startsWith('stream/chunk/')).length < 58);
});

test('GONE on the ack stops the command quietly (uploads already under way stop too)', async () => {
  await start();
  // Uploads start while the ack is on its way; its GONE answer comes 150 ms later.
  router.faults.push((r) => (r.path.endsWith('/ack') ? { status: 410, delay: 150, body: { status: 'error', error: { code: 'GONE', message: 'superseded' } } } : undefined));
  router.faults.push((r) => (r.path.includes('/stream/chunk/') ? { status: 201, delay: 100 } : undefined));
  const cmd = command({ dataset: 'big.csv', mode: 'stream', compression: 'none' });
  router.send('command', cmd);
  await waitFor(() => ofRequest(cmd.request_id).includes('ack') && connector!.stats.running === 0);
  await new Promise((r) => setTimeout(r, 150));
  const flow = ofRequest(cmd.request_id);
  assert.ok(!flow.includes('stream/complete') && !flow.includes('error'), flow.join(','));
  assert.ok(flow.filter((p) => p.startsWith('stream/chunk/')).length < 58, `${flow.length} calls`);
});

test("the command's deadline stops its work: no complete, no error", async () => {
  await start();
  router.faults.push((r) => (r.path.includes('/stream/chunk/') ? { status: 201, delay: 100 } : undefined));
  // 58 chunks, 2 at a time, 100 ms each: ~3 s of uploads against a deadline 400 ms away.
  const cmd = command({ dataset: 'big.csv', mode: 'stream', compression: 'none', deadline: new Date(Date.now() + 400).toISOString() });
  const t0 = Date.now();
  router.send('command', cmd);
  await waitFor(() => ofRequest(cmd.request_id).some((p) => p.startsWith('stream/chunk/')) && connector!.stats.running === 0, 5000);
  assert.ok(Date.now() - t0 < 1500, `stopped ${Date.now() - t0} ms after the command, its deadline was 400 ms away`);
  await new Promise((r) => setTimeout(r, 150));
  const flow = ofRequest(cmd.request_id);
  assert.ok(!flow.includes('stream/complete') && !flow.includes('error'), flow.join(','));
});

test('an ack the router refuses stops the early upload, unreported, and a redelivery runs it again', async () => {
  await start();
  const refuse = { status: 403, delay: 150, body: { status: 'error', error: { code: 'FORBIDDEN', message: 'not yours' } } };
  let refusing = true;
  router.faults.push((r) => (refusing && r.path.endsWith('/ack') ? refuse : undefined));
  router.faults.push((r) => (r.path.includes('/stream/chunk/') ? { status: 201, delay: 100 } : undefined));
  const cmd = command({ dataset: 'big.csv', mode: 'stream', compression: 'none' });
  router.send('command', cmd);
  await waitFor(() => ofRequest(cmd.request_id).includes('ack') && connector!.stats.running === 0, 5000);
  await new Promise((r) => setTimeout(r, 150));
  const flow = ofRequest(cmd.request_id);
  assert.ok(!flow.includes('stream/complete') && !flow.includes('error'), flow.join(','));
  assert.ok(flow.filter((p) => p.startsWith('stream/chunk/')).length < 58, `${flow.length} calls`);
  // Not done: the same attempt sent again is run again, not taken for a duplicate.
  refusing = false;
  router.faults.length = 1;
  router.send('command', cmd);
  await waitFor(() => ofRequest(cmd.request_id).includes('stream/complete'), 10_000, 'the redelivered command completes');
});

test('the ack is repeated every heartbeat while nothing is accepted (the lease)', async () => {
  await start({ heartbeat_s: 0.2, pingMs: 50 });
  router.faults.push((r) => (r.path.endsWith('/result') ? { status: 204, delay: 900 } : undefined));
  const cmd = command();
  router.send('command', cmd);
  await waitFor(() => router.results.size === 0 && ofRequest(cmd.request_id).includes('result') && connector!.stats.running === 0, 5000);
  const acks = ofRequest(cmd.request_id).filter((p) => p === 'ack').length;
  assert.ok(acks >= 4 && acks <= 7, `1 ack + one per 0.2 s over ~0.9 s, got ${acks}`);
  assert.equal(router.streams.length, 1, 'pings kept the stream alive');
});

test('a stream closed at max_age is reopened at once with Last-Event-ID', async () => {
  await start({ max_age_s: 1 });
  router.send('command', command(), '1732290000000-0');
  router.send('cancel', { request_id: 'r_unknown000' });
  await waitFor(() => router.find((r) => r.path.endsWith('/result')).length === 1);
  const s = router.streams[0]!;
  await new Promise((r) => setTimeout(r, Math.max(0, 600 - (Date.now() - router.requests[0]!.at))));
  const closedAt = Date.now();
  s.res.end();
  await waitFor(() => router.streams.length === 2, 2000, 'reconnect');
  const second = router.find((r) => r.method === 'GET')[1]!;
  assert.equal(second.headers['last-event-id'], '1732290000000-0');
  assert.ok(second.at - closedAt < 300, `reconnected after ${second.at - closedAt} ms`);
});

test('a silent stream is dropped after 2 × heartbeat and reopened', async () => {
  await start({ heartbeat_s: 0.2 });
  const t0 = router.requests[0]!.at;
  await waitFor(() => router.streams.length >= 2, 3000, 'watchdog reconnect');
  const dt = router.find((r) => r.method === 'GET')[1]!.at - t0;
  assert.ok(dt >= 390, `not before 2 × heartbeat (${dt} ms)`);
});

test('401 is retried slowly, not in a loop', async () => {
  router = await new FakeRouter().start();
  router.faults.push((r, n) => (r.method === 'GET' && n <= 2 ? { status: 401, body: { status: 'error', error: { code: 'UNAUTHORIZED', message: 'unknown token' } } } : undefined));
  router.onStream = (res) => res.write(`event: hello\ndata: ${JSON.stringify({ connector_id: 'cc-1', session_id: 's', heartbeat_s: 30, max_age_s: 300 })}\n\n`);
  const cfg = connectorConfig({ router: router.url, id: 'cc-1', token: 'bad', dataDir: dir }, {});
  connector = await startConnector(cfg, log, { authRetryMs: 300 });
  await waitFor(() => router.streams.length === 1, 3000);
  const gets = router.find((r) => r.method === 'GET');
  assert.equal(gets.length, 3);
  assert.ok(gets[1]!.at - gets[0]!.at >= 280 && gets[2]!.at - gets[1]!.at >= 280);
});

test('stop() waits for running work up to the grace period, then aborts it', async () => {
  await start();
  router.faults.push((r) => (r.path.endsWith('/result') ? { status: 204, delay: 10_000 } : undefined));
  const cmd = command();
  router.send('command', cmd);
  await waitFor(() => ofRequest(cmd.request_id).includes('result'));
  const t0 = Date.now();
  await connector!.stop(200);
  const took = Date.now() - t0;
  assert.ok(took >= 190 && took < 3000, `stopped in ${took} ms`);
  assert.equal(connector!.stats.running, 0);
  assert.ok(!ofRequest(cmd.request_id).includes('error'), 'an aborted command is not reported as failed');
  connector = undefined;
});
