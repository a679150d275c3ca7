// The connector sandbox through the whole stack: a client names a dataset that escapes the data
// directory or is malformed, and gets FORBIDDEN or BAD_REQUEST from the real connector; the
// bytes outside never come back. (test/unit/connector-sandbox.test.ts proves that the refused
// names are never opened.)
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { Stack } from '../helpers/stack.js';

let s: Stack;
const MARKER = 'OUTSIDE-THE-SANDBOX-91c2';

before(async () => {
  s = await Stack.start();
  await writeFile(join(s.dir, 'outside.txt'), MARKER);
  await s.writeData('inside.txt', 'inside');
  await symlink(join(s.dir, 'outside.txt'), join(s.dataDir, 'link-out'));
  await symlink('../outside.txt', join(s.dataDir, 'link-out-relative'));
  await symlink(s.dir, join(s.dataDir, 'dir-out'));
  await symlink('inside.txt', join(s.dataDir, 'link-in'));
});
after(async () => {
  await s?.stop();
});

async function ask(mode: string, dataset: string) {
  const res = await request(`${s.routerUrl}/v1/datasets/request-${mode}`, {
    method: 'POST',
    headers: { authorization: `Bearer ${s.clientKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ connector: s.connectorId, dataset, timeout_s: 30 }),
  });
  const text = await res.body.text();
  return { status: res.statusCode, text, code: res.statusCode === 200 ? 'OK' : (JSON.parse(text) as { error: { code: string } }).error.code };
}

const FORBIDDEN: [string, string][] = [
  ['../outside.txt', 'parent directory'],
  ['sub/../../outside.txt', 'parent directory deeper'],
  ['inside.txt/../inside.txt', "'..' even where it would stay inside"],
  ['/etc/passwd', 'absolute path'],
  ['//etc/passwd', 'absolute path, doubled slash'],
  ['link-out', 'symlink pointing out (absolute)'],
  ['link-out-relative', 'symlink pointing out (relative)'],
  ['dir-out/outside.txt', 'directory symlink pointing out'],
];

const BAD: [string, string][] = [
  ['inside.txt\u0000', 'NUL byte at the end'],
  ['\u0000../outside.txt', 'NUL byte first'],
  ['x'.repeat(2000), 'a 2000-byte name'],
  ['\uD800.txt', 'a lone surrogate'],
  ['a\nb.txt', 'a newline'],
  ['\u001b[2J.txt', 'an escape sequence'],
  ['.', 'the data directory itself'],
];

test('escapes are FORBIDDEN (403) in every mode, and nothing outside comes back', async () => {
  for (const mode of ['sync', 'stream', 'offload']) {
    for (const [name, why] of FORBIDDEN) {
      const r = await ask(mode, name);
      assert.deepEqual([r.status, r.code], [403, 'FORBIDDEN'], `${mode} ${why}: ${r.text}`);
      assert.ok(!r.text.includes(MARKER), `${why}: leaked`);
    }
  }
});

test('malformed names are BAD_REQUEST (400)', async () => {
  for (const [name, why] of BAD) {
    const r = await ask('sync', name);
    assert.deepEqual([r.status, r.code], [400, 'BAD_REQUEST'], `${why}: ${r.text}`);
  }
  // Over the router's own limit for a dataset name: refused before any command is sent.
  const huge = await ask('sync', 'y'.repeat(5000));
  assert.deepEqual([huge.status, huge.code], [400, 'BAD_REQUEST']);
});

test('odd Unicode is a name like any other: not found, never a path trick', async () => {
  for (const name of ['\uFF0E\uFF0E/outside.txt', '..\u2215outside.txt', '\u202Etxt.edistuo', 'inside.txt'.normalize('NFD') + '\u0301']) {
    const r = await ask('sync', name);
    assert.deepEqual([r.status, r.code], [404, 'DATASET_NOT_FOUND'], `${JSON.stringify(name)}: ${r.text}`);
  }
});

test('names that stay inside still work (symlink inside, ./ prefix)', async () => {
  for (const name of ['inside.txt', './inside.txt', 'link-in']) {
    const r = await ask('sync', name);
    assert.deepEqual([r.status, r.text], [200, 'inside'], name);
  }
});
