import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RetryState, UPLOAD_RETRY, backoffMs, isRetryableStatus, parseRetryAfter } from '../../src/connector/retry.js';
import { reconnectDelay, fullJitter } from '../../src/connector/events.js';

test('which statuses are retried', () => {
  for (const s of [408, 422, 429, 500, 502, 503, 504]) assert.equal(isRetryableStatus(s), true, String(s));
  for (const s of [400, 401, 403, 404, 409, 410, 413]) assert.equal(isRetryableStatus(s), false, String(s));
  assert.equal(isRetryableStatus(422, { resend422: false }), false);
});

test('backoff: 0.2 s doubling, capped at 10 s', () => {
  const delays = Array.from({ length: 9 }, (_, i) => backoffMs(i + 1));
  assert.deepEqual(delays, [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]);
});

test('at most 10 tries on network errors and 5xx', () => {
  const s = new RetryState();
  const delays: (number | null)[] = [];
  for (let i = 0; i < 10; i++) delays.push(s.next(i % 2 ? { kind: 'network' } : { kind: 'status', status: 500 }));
  // 9 waits between 10 tries, then give up.
  assert.deepEqual(delays, [200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000, null]);
});

test('other 4xx stop at once; GONE included', () => {
  for (const status of [400, 401, 403, 404, 409, 410, 413]) assert.equal(new RetryState().next({ kind: 'status', status }), null, String(status));
});

test('422 is resent on binary uploads but not on complete', () => {
  assert.equal(new RetryState().next({ kind: 'status', status: 422 }), 200);
  assert.equal(new RetryState(UPLOAD_RETRY, { resend422: false }).next({ kind: 'status', status: 422 }), null);
});

test('Retry-After is honoured; flow control does not use up the tries', () => {
  const s = new RetryState();
  for (let i = 0; i < 50; i++) assert.equal(s.next({ kind: 'status', status: 503, retryAfterMs: 750 }), 750);
  assert.equal(s.failures, 0);
  assert.equal(s.next({ kind: 'status', status: 429, retryAfterMs: 2000 }), 2000);
  // A plain 503 (no Retry-After) is a failure like any 5xx.
  assert.equal(s.next({ kind: 'status', status: 503 }), 200);
  // Retry-After on another retryable status lengthens the backoff but never shortens it.
  assert.equal(s.next({ kind: 'status', status: 500, retryAfterMs: 5000 }), 5000);
  assert.equal(s.next({ kind: 'status', status: 500, retryAfterMs: 10 }), 800);
  // An absurd Retry-After is capped.
  assert.equal(s.next({ kind: 'status', status: 503, retryAfterMs: 3_600_000 }), UPLOAD_RETRY.maxRetryAfterMs);
  // A router that never stops asking to wait is given up on eventually.
  const bounded = new RetryState({ ...UPLOAD_RETRY, maxFlowControlWaits: 3 });
  const waits = Array.from({ length: 4 }, () => bounded.next({ kind: 'status', status: 503, retryAfterMs: 1 }));
  assert.deepEqual(waits, [1, 1, 1, null]);
});

test('parseRetryAfter: Retry-After-Ms first, then seconds (fractional too) or a date', () => {
  assert.equal(parseRetryAfter({ 'retry-after': '2' }), 2000);
  assert.equal(parseRetryAfter({ 'retry-after': '0.5' }), 500);
  assert.equal(parseRetryAfter({ 'retry-after': '2', 'retry-after-ms': '150' }), 150);
  assert.equal(parseRetryAfter({ 'retry-after-ms': '12.5' }), 12.5);
  const now = Date.parse('2026-01-01T00:00:00Z');
  assert.equal(parseRetryAfter({ 'retry-after': 'Thu, 01 Jan 2026 00:00:03 GMT' }, now), 3000);
  assert.equal(parseRetryAfter({ 'retry-after': 'Wed, 31 Dec 2025 23:00:00 GMT' }, now), 0);
  assert.equal(parseRetryAfter({ 'retry-after': 'soon' }), undefined);
  assert.equal(parseRetryAfter({ 'retry-after-ms': '-5' }), undefined);
  assert.equal(parseRetryAfter({}), undefined);
});

test('event stream reconnect: max_age close at once, healthy drop waits retry:, failures back off with full jitter', () => {
  const max = () => 0.999999;
  // The router closed a stream that lived its max age: straight back, backoff reset.
  assert.deepEqual(reconnectDelay({ kind: 'ended', clean: true, ageMs: 300_000, maxAgeMs: 300_000 }, { failures: 4, retryMs: 3000 }, max), { delayMs: 0, failures: 0 });
  // A healthy stream that dropped: the router's retry: value, backoff reset.
  assert.deepEqual(reconnectDelay({ kind: 'ended', clean: false, ageMs: 120_000, maxAgeMs: 300_000 }, { failures: 4, retryMs: 3000 }, max), { delayMs: 3000, failures: 0 });
  assert.deepEqual(reconnectDelay({ kind: 'ended', clean: false, ageMs: 120_000, maxAgeMs: 300_000 }, { failures: 0 }, max), { delayMs: 499, failures: 0 });
  // Failures: 0.5 s doubling to 30 s (upper bounds with random → 1).
  const caps: number[] = [];
  let state = { failures: 0 };
  for (let i = 0; i < 9; i++) {
    const next = reconnectDelay({ kind: 'failed' }, state, () => 1);
    caps.push(next.delayMs);
    state = { failures: next.failures };
  }
  assert.deepEqual(caps, [500, 1000, 2000, 4000, 8000, 16_000, 30_000, 30_000, 30_000]);
  // Full jitter: anywhere from 0; never under the router's retry: though.
  assert.equal(fullJitter(5, () => 0), 0);
  assert.equal(reconnectDelay({ kind: 'failed' }, { failures: 3, retryMs: 1500 }, () => 0).delayMs, 1500);
  // A stream closed early (another connector with the same id took over) backs off too.
  assert.equal(reconnectDelay({ kind: 'ended', clean: true, ageMs: 50, maxAgeMs: 300_000 }, { failures: 2 }, () => 1).failures, 3);
  // 401/403: slowly, without a crash loop.
  assert.deepEqual(reconnectDelay({ kind: 'auth', status: 401 }, { failures: 1 }, max), { delayMs: 30_000, failures: 1 });
});
