// Test helpers' children (routers, connectors, Redis servers, fleet simulators) die with the
// process that started them, however it ends: a router left running takes its Redis's jobs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { constants } from 'node:os';
import { createInterface } from 'node:readline';

const HELPER = new URL('../helpers/reap.js', import.meta.url).href;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** Polls until `pid` is gone (a killed child is reaped by init once its parent has exited). */
async function gone(pid: number, ms = 3000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!alive(pid)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return false;
}

/** A node process that starts `sleep 60` through reapOnExit, prints its pid and then runs `then`. */
async function parentWithChild(then = ''): Promise<{ parent: ChildProcess; childPid: number }> {
  const script = [
    `import { spawn } from 'node:child_process';`,
    `import { reapOnExit } from ${JSON.stringify(HELPER)};`,
    `const c = spawn('sleep', ['60'], { stdio: 'ignore' });`,
    `reapOnExit(c);`,
    `console.log(c.pid);`,
    `setInterval(() => {}, 1000);`,
    then,
  ].join('\n');
  const parent = spawn(process.execPath, ['--input-type=module', '-e', script], { stdio: ['ignore', 'pipe', 'ignore'] });
  const [line] = (await once(createInterface({ input: parent.stdout! }), 'line')) as [string];
  return { parent, childPid: Number(line) };
}

for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP'] as const) {
  test(`a child registered with reapOnExit is killed when ${sig} ends its parent`, async () => {
    const { parent, childPid } = await parentWithChild();
    assert.ok(alive(childPid), 'the child runs');
    const exited = once(parent, 'exit');
    parent.kill(sig);
    const [code] = (await exited) as [number | null];
    assert.equal(code, 128 + constants.signals[sig], 'the parent exits with the code of the signal that ended it');
    assert.ok(await gone(childPid), `sleep (pid ${childPid}) outlived its parent`);
  });
}

test('a child registered with reapOnExit is killed when its parent dies of an uncaught error', async () => {
  const { parent, childPid } = await parentWithChild(`setTimeout(() => { throw new Error('boom'); }, 50);`);
  const [code] = (await once(parent, 'exit')) as [number | null];
  assert.equal(code, 1);
  assert.ok(await gone(childPid), `sleep (pid ${childPid}) outlived its parent`);
});

test("a parent's own signal handler decides how it exits, and its child is still killed", async () => {
  // As bench/run.ts has: reapOnExit leaves the signal to it, and reaps on the exit it makes.
  const { parent, childPid } = await parentWithChild(`process.on('SIGTERM', () => process.exit(7));`);
  const exited = once(parent, 'exit');
  parent.kill('SIGTERM');
  const [code] = (await exited) as [number | null];
  assert.equal(code, 7);
  assert.ok(await gone(childPid), `sleep (pid ${childPid}) outlived its parent`);
});
