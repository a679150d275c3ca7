import { test } from 'node:test';
import assert from 'node:assert/strict';
import { WorkerPool, SupersededError } from '../../src/connector/pool.js';

/** A job that runs until released (or aborted), recording what happened to it. */
function gate() {
  const log: string[] = [];
  let release!: (v?: boolean) => void;
  const released = new Promise<boolean | undefined>((r) => (release = r));
  const run = (name: string) => async (signal: AbortSignal) => {
    log.push(`start ${name}`);
    const aborted = new Promise<'aborted'>((r) => signal.addEventListener('abort', () => r('aborted'), { once: true }));
    const how = await Promise.race([released, aborted]);
    log.push(how === 'aborted' ? `abort ${name}: ${(signal.reason as Error).name}` : `end ${name}`);
    return how === 'aborted' ? true : how;
  };
  return { log, release, run };
}

const tick = () => new Promise((r) => setImmediate(r));

test('runs at most `concurrency` jobs; the rest wait in order', async () => {
  const pool = new WorkerPool(2);
  const g = gate();
  for (const id of ['a', 'b', 'c', 'd']) assert.equal(pool.submit(id, 1, g.run(id)).kind, 'accepted');
  await tick();
  assert.deepEqual(pool.stats, { running: 2, queued: 2 });
  assert.deepEqual(g.log, ['start a', 'start b']);
  g.release();
  await pool.idle();
  assert.deepEqual(g.log.filter((l) => l.startsWith('start')), ['start a', 'start b', 'start c', 'start d']);
  assert.deepEqual(pool.stats, { running: 0, queued: 0 });
});

test('the same attempt redelivered while queued, running or just finished is not run twice', async () => {
  const pool = new WorkerPool(1);
  const g = gate();
  assert.equal(pool.submit('r1', 1, g.run('r1')).kind, 'accepted');
  assert.equal(pool.submit('r2', 1, g.run('r2')).kind, 'accepted');
  await tick();
  assert.equal(pool.submit('r1', 1, g.run('r1 again')).kind, 'duplicate', 'running');
  assert.equal(pool.submit('r2', 1, g.run('r2 again')).kind, 'duplicate', 'queued');
  g.release();
  await pool.idle();
  assert.equal(pool.submit('r1', 1, g.run('r1 late')).kind, 'duplicate', 'finished');
  await pool.idle();
  assert.deepEqual(g.log, ['start r1', 'end r1', 'start r2', 'end r2']);
});

test('a job that resolves false may run again when redelivered', async () => {
  const pool = new WorkerPool(1);
  let runs = 0;
  pool.submit('r', 1, async () => {
    runs += 1;
    return false;
  });
  await pool.idle();
  assert.equal(pool.submit('r', 1, async () => void (runs += 1)).kind, 'accepted');
  await pool.idle();
  assert.equal(runs, 2);
});

test('a higher attempt aborts the older one and runs; a lower one is stale', async () => {
  const pool = new WorkerPool(4);
  const g = gate();
  pool.submit('r', 1, g.run('attempt 1'));
  await tick();
  const second = pool.submit('r', 2, g.run('attempt 2'));
  assert.equal(second.kind, 'accepted');
  assert.equal(second.kind === 'accepted' && second.superseded?.attempt, 1);
  await tick();
  assert.equal(pool.submit('r', 1, g.run('attempt 1 late')).kind, 'stale');
  assert.equal(pool.get('r')?.attempt, 2);
  g.release();
  await pool.idle();
  // With free slots the new attempt need not wait for the old one to wind down.
  assert.deepEqual([...g.log].sort(), ['abort attempt 1: SupersededError', 'end attempt 2', 'start attempt 1', 'start attempt 2']);
  assert.equal(pool.submit('r', 1, g.run('older after finish')).kind, 'stale');
  assert.ok(new SupersededError('r', 1, 2).message.includes('superseded'));
});

test('a superseded job keeps its slot until it has actually stopped', async () => {
  const pool = new WorkerPool(1);
  let stopOld!: () => void;
  const oldStopped = new Promise<void>((r) => (stopOld = r));
  const started: string[] = [];
  pool.submit('r', 1, async () => {
    started.push('old');
    await oldStopped; // ignores its signal for a while, like a read in progress
  });
  await tick();
  pool.submit('r', 2, async () => void started.push('new'));
  await tick();
  assert.deepEqual(started, ['old']);
  stopOld();
  await pool.idle();
  assert.deepEqual(started, ['old', 'new']);
});

test('cancel stops a running job, drops a queued one, and a cancelled attempt is not rerun', async () => {
  const pool = new WorkerPool(1);
  const g = gate();
  pool.submit('run', 1, g.run('run'));
  pool.submit('wait', 1, g.run('wait'));
  await tick();
  assert.equal(pool.cancel('wait', new Error('cancelled')), true);
  assert.equal(pool.cancel('run', new Error('cancelled'), 7), false, 'another attempt');
  assert.equal(pool.cancel('run', new Error('cancelled')), true);
  assert.equal(pool.cancel('unknown', new Error('cancelled')), false);
  await pool.idle();
  assert.deepEqual(g.log, ['start run', 'abort run: Error']);
  assert.equal(pool.submit('wait', 1, g.run('wait again')).kind, 'duplicate');
  assert.equal(pool.submit('wait', 2, g.run('wait attempt 2')).kind, 'accepted');
  g.release();
  await pool.idle();
});

test('close drops the queue and refuses more; abortAll stops the running', async () => {
  const pool = new WorkerPool(1);
  const g = gate();
  pool.submit('a', 1, g.run('a'));
  const queued = pool.submit('b', 1, g.run('b'));
  await tick();
  pool.close(new Error('stopping'));
  assert.equal(queued.kind === 'accepted' && queued.job.signal.aborted, true);
  assert.equal(pool.submit('c', 1, g.run('c')).kind, 'closed');
  assert.deepEqual(pool.stats, { running: 1, queued: 0 });
  pool.abortAll(new Error('stopping'));
  await pool.idle();
  assert.deepEqual(g.log, ['start a', 'abort a: Error']);
});

test('a job that throws does not wedge the pool', async () => {
  const pool = new WorkerPool(1);
  pool.submit('bad', 1, async () => {
    throw new Error('boom');
  });
  let ran = false;
  pool.submit('good', 1, async () => void (ran = true));
  await pool.idle();
  assert.equal(ran, true);
  // It may run again: a throw is not a finished job.
  assert.equal(pool.submit('bad', 1, async () => undefined).kind, 'accepted');
  await pool.idle();
});
