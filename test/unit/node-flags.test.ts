// The node flags the router and the connector run with (src/cli/node-flags.ts): this Node
// accepts them, the project's own spawners pass them, and the Windows service carries them
// (deploy.test.ts and compose.test.ts check the systemd units and the Dockerfile).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { SERVICE_NODE_FLAGS, nodeFlagsFor } from '../../src/cli/node-flags.js';
import { run } from '../helpers/stack.js';

const read = (path: string) => readFileSync(new URL(`../../../${path}`, import.meta.url), 'utf8');

test('the router and the connector get the service flags; other commands none', () => {
  assert.ok(SERVICE_NODE_FLAGS.length > 0);
  assert.deepEqual(nodeFlagsFor('router'), [...SERVICE_NODE_FLAGS]);
  assert.deepEqual(nodeFlagsFor('connector'), [...SERVICE_NODE_FLAGS]);
  for (const c of ['request-stream', 'admin', 'demo', undefined]) assert.deepEqual(nodeFlagsFor(c), []);
});

test('this Node accepts the flags and sizes the young generation by them', () => {
  // An unknown or renamed flag makes node exit 9 ("bad option") before running anything.
  const code = "const v8 = require('node:v8'); let k = []; for (let i = 0; i < 3e6; i++) { k.push({ i }); if (k.length > 4e5) k = []; } console.log(v8.getHeapSpaceStatistics().find((s) => s.space_name === 'new_space').space_size)";
  const r = spawnSync(process.execPath, [...SERVICE_NODE_FLAGS, '-e', code], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const plain = spawnSync(process.execPath, ['-e', code], { encoding: 'utf8' });
  assert.equal(plain.status, 0, plain.stderr);
  // Under survival pressure the young generation grows past V8's default ceiling (2 × 16 MB).
  assert.ok(Number(r.stdout) > Number(plain.stdout), `new space ${r.stdout.trim()} with the flags, ${plain.stdout.trim()} without`);
});

test('a router started by the test stack runs with the flags (as the deployment files start it)', async () => {
  const p = run(['router', '--help']);
  const args = p.child.spawnargs;
  await p.exited;
  const bin = args.findIndex((a) => a.endsWith('bin/relay.js'));
  for (const f of SERVICE_NODE_FLAGS) assert.ok(args.slice(1, bin).includes(f), `${f} before bin/relay.js in ${args.join(' ')}`);
});

test('the Windows service runs the connector with the flags', () => {
  const xml = read('deploy/windows/relay-connector.xml');
  const args = /<arguments>([^<]*)<\/arguments>/.exec(xml)?.[1];
  assert.equal(args, `${SERVICE_NODE_FLAGS.join(' ')} C:\\relay\\bin\\relay.js connector`);
});
