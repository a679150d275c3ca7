// Every sandbox and FileSource test again, with the dataset calls on the event loop (local-fs.ts)
// as a connector on a local file system runs them; connector-sandbox.test.ts runs them through
// the thread pool.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { tmpdir } from 'node:os';
import { currentMode, useLocalFs } from '../../src/connector/local-fs.js';

const decision = useLocalFs(tmpdir());

test('the calls below run synchronously', { skip: decision.sync ? false : `${tmpdir()} is not on a local file system here (${decision.reason})` }, () => {
  assert.equal(currentMode(), 'sync');
});

if (decision.sync) await import('./connector-sandbox.test.js');
