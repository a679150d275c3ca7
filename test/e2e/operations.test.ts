// What operators see: the queue dashboard (and a retry from it that really re-dispatches),
// the router's and the connector's /metrics, `relay status`, and logs without secrets.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { xxh64 } from '../../src/protocol/checksum.js';
import { csv, run, sleep, Stack, CHUNK } from '../helpers/stack.js';
import { WireConnector } from '../helpers/wire.js';

let s: Stack;
const data = csv(3 * CHUNK + 1234);

before(async () => {
  // One delivery attempt with a 1 s ack timeout: a request to the stopped connector fails fast.
  s = await Stack.start({ connector: false, routerEnv: { RELAY_ACK_TIMEOUT_S: '1', RELAY_ATTEMPTS: '1' }, connectorEnv: { RELAY_METRICS_PORT: '0' } });
  await s.writeData('sales/small.csv', data);
});

after(async () => {
  await s?.stop();
});

const admin = () => ({ authorization: `Bearer ${s.adminToken}` });
const client = (key = s.clientKey) => ({ authorization: `Bearer ${key}`, 'content-type': 'application/json' });

async function ask(mode: string, body: Record<string, unknown>, key = s.clientKey): Promise<Response> {
  return fetch(`${s.routerUrl}/v1/datasets/request-${mode}`, { method: 'POST', headers: client(key), body: JSON.stringify(body) });
}

async function metrics(url = `${s.routerUrl}/metrics`): Promise<string> {
  const res = await fetch(url);
  assert.equal(res.status, 200);
  return res.text();
}

/** The value of one sample, e.g. value(text, 'relay_requests_total{mode="sync",outcome="complete"}'). */
function value(text: string, sample: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line ? Number(line.slice(sample.length + 1)) : NaN;
}

interface BoardJob {
  id: string;
  name: string;
  data: { requestId: string; connector: string; mode: string; dataset?: string };
  failedReason?: string;
  attempts?: number;
  progress?: unknown;
}

async function boardJobs(status: string): Promise<BoardJob[]> {
  const res = await fetch(`${s.routerUrl}/admin/queues/api/queues?activeQueue=relay-commands&status=${status}&page=1&jobsPerPage=50`, { headers: admin() });
  assert.equal(res.status, 200);
  const body = (await res.json()) as { queues: { name: string; jobs: BoardJob[] }[] };
  return body.queues.find((q) => q.name === 'relay-commands')!.jobs;
}

describe('queue dashboard', () => {
  test('needs the admin secret; a client key is refused', async () => {
    assert.equal((await fetch(`${s.routerUrl}/admin/queues`)).status, 401);
    assert.equal((await fetch(`${s.routerUrl}/admin/queues`, { headers: client() })).status, 401);
    const page = await fetch(`${s.routerUrl}/admin/queues`, { headers: { authorization: `Basic ${Buffer.from(`ops:${s.adminToken}`).toString('base64')}` } });
    assert.equal(page.status, 200);
    assert.match(await page.text(), /<html/i);
  });

  test('a failed job shows request, connector, error; retrying it re-dispatches the request', async () => {
    const res = await ask('offload', { connector: s.connectorId, dataset: 'sales/small.csv' });
    assert.equal(res.status, 503);
    const err = (await res.json()) as { request_id: string; error: { code: string } };
    assert.equal(err.error.code, 'CONNECTOR_OFFLINE');
    const id = err.request_id;

    let job: BoardJob | undefined;
    for (let i = 0; i < 50 && !job; i++) {
      job = (await boardJobs('failed')).find((j) => j.data.requestId === id);
      if (!job) await sleep(100);
    }
    assert.ok(job, 'the failed job is listed');
    assert.equal(job.data.connector, s.connectorId);
    assert.equal(job.data.mode, 'offload');
    assert.equal(job.data.dataset, 'sales/small.csv');
    assert.match(job.failedReason ?? '', /CONNECTOR_OFFLINE/);
    assert.deepEqual(job.progress, { attempt: 1, resume_from: 0 });
    const queue = (await (await fetch(`${s.routerUrl}/v1/queue`, { headers: admin() })).json()) as { failed: number };
    assert.ok(queue.failed >= 1);

    // The connector comes back; the operator retries the job from the dashboard.
    await s.startConnector();
    const before = await metrics();
    const retry = await fetch(`${s.routerUrl}/admin/queues/api/queues/relay-commands/${encodeURIComponent(job.id)}/retry`, { method: 'PUT', headers: admin() });
    assert.equal(retry.status, 204);
    let st: { status: string; attempt: number; bytes: number; checksum: string | null; error: unknown } | undefined;
    for (let i = 0; i < 100; i++) {
      st = (await (await fetch(`${s.routerUrl}/v1/requests/${id}`, { headers: client() })).json()) as typeof st;
      if (st!.status === 'complete' || (st!.status === 'failed' && i > 20)) break;
      await sleep(100);
    }
    assert.equal(st!.status, 'complete', JSON.stringify(st));
    assert.equal(st!.attempt, 2);
    assert.equal(st!.bytes, data.length);
    assert.equal(st!.checksum, xxh64(data));
    assert.equal(st!.error, null);
    const afterText = await metrics();
    assert.equal(value(afterText, 'relay_commands_redelivered_total') - value(before, 'relay_commands_redelivered_total'), 1);
    assert.ok((await boardJobs('completed')).some((j) => j.data.requestId === id), 'the job completed');
  });
});

describe('metrics', () => {
  test('router: requests, TTFB, bytes in/out, in flight, commands, streams, queue, spill, limits', async () => {
    for (const mode of ['sync', 'stream', 'offload']) {
      const res = await ask(mode, { connector: s.connectorId, dataset: 'sales/small.csv' });
      assert.equal(res.status, 200);
      await res.arrayBuffer();
    }
    // A request is counted once its answer has ended, a moment after the client read the body.
    let text = await metrics();
    for (let i = 0; i < 40 && ['sync', 'stream', 'offload'].some((m) => !(value(text, `relay_requests_total{mode="${m}",outcome="complete"}`) >= 1)); i++) {
      await sleep(50);
      text = await metrics();
    }
    for (const mode of ['sync', 'stream', 'offload']) {
      assert.ok(value(text, `relay_requests_total{mode="${mode}",outcome="complete"}`) >= 1, `${mode} counted:\n${text.split('\n').filter((l) => l.startsWith('relay_requests_total')).join('\n')}`);
      assert.ok(value(text, `relay_request_duration_seconds_count{mode="${mode}"}`) >= 1);
      assert.ok(value(text, `relay_request_ttfb_seconds_count{mode="${mode}"}`) >= 1, `${mode} TTFB`);
      assert.ok(value(text, `relay_bytes_in_total{mode="${mode}"}`) > 0, `${mode} bytes in`);
      assert.ok(value(text, `relay_bytes_out_total{mode="${mode}"}`) >= data.length * (mode === 'stream' ? 0.1 : 1), `${mode} bytes out`);
      assert.equal(value(text, `relay_requests_in_flight{mode="${mode}"}`), 0);
    }
    assert.ok(value(text, 'relay_connectors_online') >= 1);
    assert.ok(value(text, 'relay_event_streams_opened_total') >= 1);
    assert.ok(value(text, 'relay_commands_dispatched_total') >= 4);
    assert.ok(value(text, 'relay_commands_acked_total') >= 4);
    assert.ok(value(text, 'relay_chunks_received_total{outcome="stored"}') >= 4);
    for (const name of ['relay_rate_limited_total', 'relay_backpressure_total', 'relay_sync_spill_bytes_total', 'relay_queue_depth', 'relay_event_streams_closed_total', 'relay_chunk_retries_total', 'relay_checksum_failures_total']) {
      assert.match(text, new RegExp(`^# TYPE ${name} `, 'm'), `${name} is exported`);
    }
    // Labels are bounded: no request ids, connector ids or tenants.
    assert.doesNotMatch(text, /="r_/);
    assert.ok(!text.includes(s.connectorId) && !text.includes('tenant='));
  });

  test('router: a checksum failure, a resent chunk and a bad whole-result checksum are counted', async () => {
    const wire = await new WireConnector(s.routerUrl, s.otherConnectorToken).connect();
    try {
      const before = await metrics();
      const pending = ask('stream', { connector: s.otherConnectorId, dataset: 'x.bin' }, s.otherClientKey);
      const { data: cmd } = await wire.command();
      const id = cmd.request_id;
      const bytes = randomBytes(2 * CHUNK);
      assert.equal((await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 })).status, 204);
      assert.equal((await wire.post(`/v1/requests/${id}/stream/init`, { attempt: 1, content_type: 'application/octet-stream', total_bytes: bytes.length, total_chunks: 2 })).status, 204);
      assert.equal((await wire.chunk(id, 0, bytes.subarray(0, CHUNK), { checksum: '0123456789abcdef' })).status, 422);
      assert.equal((await wire.chunk(id, 0, bytes.subarray(0, CHUNK))).status, 201);
      assert.equal((await wire.chunk(id, 0, bytes.subarray(0, CHUNK))).status, 200);
      assert.equal((await wire.chunk(id, 1, bytes.subarray(CHUNK))).status, 201);
      const bad = await wire.post(`/v1/requests/${id}/stream/complete`, { attempt: 1, chunks: 2, bytes: bytes.length, checksum: '0123456789abcdef' });
      assert.equal(bad.status, 422);
      await (await pending).arrayBuffer().catch(() => undefined);
      const text = await metrics();
      const delta = (sample: string) => value(text, sample) - (Number.isNaN(value(before, sample)) ? 0 : value(before, sample));
      assert.equal(delta('relay_checksum_failures_total{stage="chunk"}'), 1);
      assert.equal(delta('relay_checksum_failures_total{stage="result"}'), 1);
      assert.equal(delta('relay_chunk_retries_total'), 1);
    } finally {
      wire.close();
    }
  });

  test('connector: its own /metrics on the local port it was asked for', async () => {
    const line = s.connector!.lines.find((l) => l.includes('connector metrics listening'));
    assert.ok(line, 'the connector logged its metrics URL');
    const url = (JSON.parse(line) as { url: string }).url;
    assert.match(url, /^http:\/\/127\.0\.0\.1:\d+\/metrics$/);
    const text = await metrics(url);
    assert.ok(value(text, 'relay_connector_commands_total{mode="stream",outcome="delivered"}') >= 1);
    assert.ok(value(text, 'relay_connector_commands_total{mode="offload",outcome="delivered"}') >= 2);
    assert.ok(value(text, 'relay_connector_bytes_sent_total{mode="sync"}') >= data.length);
    assert.equal(value(text, 'relay_connector_event_stream_connected'), 1);
    assert.ok(value(text, 'relay_connector_event_stream_connects_total') >= 1);
    assert.ok(value(text, 'relay_connector_commands_received_total') >= 4);
    assert.equal(value(text, 'relay_connector_commands_running'), 0);
    assert.match(text, /^# TYPE relay_connector_upload_retries_total counter/m);
    assert.equal((await fetch(url.replace('/metrics', '/other'))).status, 404);
  });
});

describe('relay status', () => {
  async function status(args: string[], env: Record<string, string>): Promise<{ code: number | null; out: string }> {
    const p = run(['status', '--router', s.routerUrl, ...args], { RELAY_ADMIN_TOKEN: '', RELAY_API_KEY: '', ...env });
    const code = await p.exited;
    return { code, out: p.lines.join('\n') };
  }

  test('with the admin secret: every tenant\'s connectors and the queue counts', async () => {
    const { code, out } = await status([], { RELAY_ADMIN_TOKEN: s.adminToken });
    assert.equal(code, 0, out);
    assert.match(out, /CONNECTOR\s+TENANT\s+ONLINE\s+LAST SEEN\s+VERSION\s+IN FLIGHT/);
    assert.match(out, new RegExp(`${s.connectorId}\\s+t1\\s+yes\\s+\\S+ \\(\\d+s ago\\)\\s+0\\.1\\.0\\s+0`));
    assert.match(out, new RegExp(`${s.otherConnectorId}\\s+t2\\s+no`));
    assert.match(out, /2 connectors, 1 online/);
    assert.match(out, /queue relay-commands: waiting \d+, active \d+, delayed \d+, failed \d+, completed \d+/);
  });

  test('with a client key: its tenant only, --json', async () => {
    const { code, out } = await status(['--json'], { RELAY_API_KEY: s.clientKey });
    assert.equal(code, 0, out);
    const body = JSON.parse(out) as { connectors: { connector_id: string; online: boolean; in_flight: number }[]; queue: unknown };
    assert.deepEqual(body.connectors.map((c) => c.connector_id), [s.connectorId]);
    assert.equal(body.connectors[0]!.online, true);
    assert.equal(body.queue, null);
  });

  test('without a secret: a usage error', async () => {
    const { code, out } = await status([], {});
    assert.equal(code, 2, out);
    assert.match(out, /RELAY_ADMIN_TOKEN|client key/);
  });
});

describe('logs', () => {
  test('JSON lines with request id, tenant, connector and attempt; no secret anywhere', async () => {
    const lines = [...s.router.lines, ...s.connector!.lines];
    const parsed = s.router.lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    const accepted = parsed.find((l) => l.msg === 'request accepted');
    assert.ok(accepted, 'the router logs accepted requests');
    assert.match(String(accepted.request), /^r_/);
    assert.equal(accepted.tenant, 't1');
    assert.equal(accepted.connector, s.connectorId);
    const started = s.connector!.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.msg === 'command started');
    assert.ok(started && typeof started.attempt === 'number' && String(started.request).startsWith('r_'));
    assert.ok(parsed.some((l) => l.msg === 'connector connected' && l.connector === s.connectorId), 'connects are logged');
    for (const secret of [s.adminToken, s.clientKey, s.connectorToken, s.otherClientKey, s.otherConnectorToken]) {
      assert.ok(!lines.some((l) => l.includes(secret)), 'a secret leaked into the logs');
    }
  });
});
