import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { requestStream, requestSync, getStatus, cancel, closeHttp } from '../../src/client/index.js';
import { RelayError } from '../../src/protocol/index.js';
import { fakeRouter, collector, json, errorBody, statusBody, RID } from './client-fake-router.js';

after(() => closeHttp());

const req = { connector: 'cc-28-aa-01', dataset: 'a.csv' };

test('errors: JSON error bodies become RelayErrors with code, status, message, request id, retry hint', async () => {
  const answers: [number, unknown, Record<string, string>][] = [
    [503, errorBody('CONNECTOR_OFFLINE', 'connector cc-28-aa-01 has no open event stream', RID), {}],
    [401, errorBody('UNAUTHORIZED', 'unknown key'), {}],
    [429, errorBody('RATE_LIMITED', 'too many stream requests'), { 'retry-after': '2' }],
    [503, errorBody('BACKPRESSURE', 'slow down'), { 'retry-after': '1', 'retry-after-ms': '250' }],
  ];
  let i = 0;
  const router = await fakeRouter((_req, res) => {
    const [status, body, headers] = answers[i++]!;
    json(res, status, body, headers);
  });
  try {
    const cfg = { routerUrl: router.url, apiKey: 'k' };
    await assert.rejects(requestStream(cfg, req, collector().out), {
      code: 'CONNECTOR_OFFLINE',
      status: 503,
      requestId: RID,
      message: 'connector cc-28-aa-01 has no open event stream',
    });
    await assert.rejects(requestSync(cfg, req, collector().out), { code: 'UNAUTHORIZED', status: 401 });
    await assert.rejects(requestSync(cfg, req, collector().out), { code: 'RATE_LIMITED', retryAfterMs: 2000 });
    await assert.rejects(requestSync(cfg, req, collector().out), { code: 'BACKPRESSURE', retryAfterMs: 250 });
  } finally {
    await router.close();
  }
});

test('errors: a non-JSON error page (a proxy) maps by status and says what it got', async () => {
  const router = await fakeRouter((_req, res) => {
    res.writeHead(502, { 'content-type': 'text/html', 'x-relay-request-id': RID });
    res.end('<html><body>Bad Gateway</body></html>');
  });
  try {
    await assert.rejects(requestSync({ routerUrl: router.url, apiKey: 'k' }, req, collector().out), (err: unknown) => {
      assert.ok(err instanceof RelayError);
      assert.equal(err.code, 'CONNECTOR_ERROR');
      assert.match(err.message, /HTTP 502.*Bad Gateway/);
      assert.equal(err.requestId, RID);
      return true;
    });
  } finally {
    await router.close();
  }
});

test('errors: an unreachable router is a clear INTERNAL error naming the URL', async () => {
  const router = await fakeRouter(() => undefined);
  const url = router.url;
  await router.close();
  await assert.rejects(requestSync({ routerUrl: url, apiKey: 'k' }, req, collector().out), (err: unknown) => {
    assert.ok(err instanceof RelayError);
    assert.equal(err.code, 'INTERNAL');
    assert.ok(err.message.startsWith(`cannot reach router at ${url}`), err.message);
    assert.match(err.message, /ECONNREFUSED/);
    return true;
  });
});

test('getStatus and cancel use GET and DELETE on /v1/requests/{id}; unknown ids are NOT_FOUND', async () => {
  const router = await fakeRouter((req, res) => {
    if (req.url === `/v1/requests/${RID}`) return json(res, 200, statusBody(RID, req.method === 'DELETE' ? 'cancelled' : 'running'));
    json(res, 404, errorBody('NOT_FOUND', 'no such request'));
  });
  try {
    const cfg = { routerUrl: router.url, apiKey: 'k' };
    assert.equal((await getStatus(cfg, RID)).status, 'running');
    assert.equal((await cancel(cfg, RID)).status, 'cancelled');
    assert.deepEqual(
      router.calls.map((c) => c.method),
      ['GET', 'DELETE'],
    );
    await assert.rejects(getStatus(cfg, 'r_unknown0001'), { code: 'NOT_FOUND', requestId: 'r_unknown0001' });
  } finally {
    await router.close();
  }
});
