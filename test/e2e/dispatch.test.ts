// The queue job of a request (router/dispatch.ts): it waits out the first moment a timeout could
// strike; a request that ends sooner settles it without the worker running it.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { Queue } from 'bullmq';
import { closeHttp, requestSync } from '../../src/client/index.js';
import { RelayError } from '../../src/protocol/errors.js';
import { QUEUE_NAME } from '../../src/router/dispatch.js';
import { Stack, sleep } from '../helpers/stack.js';

let s: Stack;
let queue: Queue;

before(async () => {
  // Timeouts far beyond the test: a job that was not settled stays delayed all along.
  s = await Stack.start({ routerEnv: { RELAY_ACK_TIMEOUT_S: '120', RELAY_PROGRESS_TIMEOUT_S: '120' } });
  await s.writeData('small.bin', Buffer.from('a small result'));
  queue = new Queue(QUEUE_NAME, { connection: s.redis });
});
after(async () => {
  await queue?.close();
  await closeHttp();
  await s?.stop();
});

/** The job's state once it has ended (completed or failed; undefined: the job is gone), within 10 s. */
async function settled(id: string): Promise<string | undefined> {
  let state: string | undefined;
  for (let i = 0; i < 100; i++) {
    const job = await queue.getJob(id);
    // 'unknown': read between its removal and our look.
    state = job ? await job.getState() : undefined;
    if (state === undefined || state === 'completed' || state === 'failed') return state;
    await sleep(100);
  }
  return state;
}

test('a request that ends before any timeout could strike has its delayed job removed unrun', { timeout: 30_000 }, async () => {
  const counts = await queue.getJobCounts('completed', 'failed', 'active');
  const res = await requestSync(s.clientCfg(), { connector: s.connectorId, dataset: 'small.bin' }, new PassThrough().resume());
  assert.equal(res.verified, true);
  assert.equal(await settled(res.requestId), undefined, 'the job is gone');
  assert.deepEqual(await queue.getJobCounts('completed', 'failed', 'active'), counts, 'no worker ran it');
});

test('a request the connector fails ends its job in the failed set at once (the dashboard shows it)', { timeout: 30_000 }, async () => {
  let requestId = '';
  await assert.rejects(requestSync(s.clientCfg(), { connector: s.connectorId, dataset: 'missing.bin' }, new PassThrough().resume()), (err: unknown) => {
    requestId = (err as RelayError).requestId ?? '';
    return err instanceof RelayError && err.code === 'DATASET_NOT_FOUND';
  });
  assert.ok(requestId, 'the error names its request');
  assert.equal(await settled(requestId), 'failed', 'promoted and failed by the worker, not left delayed');
  const job = await queue.getJob(requestId);
  assert.match(job!.failedReason, /DATASET_NOT_FOUND/);
});

test("a request goes through after Redis forgets the router's scripts (restart, SCRIPT FLUSH)", { timeout: 30_000 }, async () => {
  await s.redis.script('FLUSH');
  const res = await requestSync(s.clientCfg(), { connector: s.connectorId, dataset: 'small.bin' }, new PassThrough().resume());
  assert.equal(res.verified, true);
  assert.equal(res.bytes, 'a small result'.length);
  // The answer may reach the client just before the connector's end is recorded.
  let status: string | null = null;
  for (let i = 0; i < 50 && status !== 'complete'; i++) {
    status = await s.redis.hget(`relay:req:${res.requestId}`, 'status');
    if (status !== 'complete') await sleep(100);
  }
  assert.equal(status, 'complete', 'the record went through every script: create, ack, chunk, end');
});
