import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, mkdir, writeFile, symlink, rm, realpath, stat, lstat, rename } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { RelayError } from '../../src/protocol/errors.js';
import { resolveDataset, isInside, type SandboxFs } from '../../src/connector/sandbox.js';
import { FileSource } from '../../src/connector/sources/file.js';

let root: string;
let data: string;

before(async () => {
  root = await realpath(await mkdtemp(path.join(tmpdir(), 'relay-sandbox-')));
  data = path.join(root, 'data');
  await mkdir(path.join(data, 'sub'), { recursive: true });
  await mkdir(path.join(data, 'données'));
  await mkdir(path.join(root, 'outside-dir'));
  await writeFile(path.join(root, 'secret'), 'top secret');
  await writeFile(path.join(root, 'outside-dir', 'secret'), 'top secret');
  await writeFile(path.join(data, 'a.csv'), 'id,name\n1,x\n');
  await writeFile(path.join(data, 'sub', 'b.csv'), 'b');
  await writeFile(path.join(data, 'données', 'été.csv'.normalize('NFC')), 'unicode');
  await symlink(path.join(root, 'secret'), path.join(data, 'link-out'));
  await symlink('../secret', path.join(data, 'link-out-relative'));
  await symlink(path.join(root, 'outside-dir'), path.join(data, 'dir-out'));
  await symlink('sub/b.csv', path.join(data, 'link-in'));
  await symlink('loop-b', path.join(data, 'loop-a'));
  await symlink('loop-a', path.join(data, 'loop-b'));
  // A FIFO: opening it for reading blocks until a writer appears, so a test that reaches one
  // and still finishes proves the sandbox never opened it.
  execFileSync('mkfifo', [path.join(root, 'fifo-out'), path.join(data, 'fifo-in')]);
  await symlink(path.join(root, 'fifo-out'), path.join(data, 'fifo-link'));
});

after(async () => {
  await rm(root, { recursive: true, force: true });
});

/** A file-system double that records every call; it has no `open`, and must not need one. */
function recordingFs(): SandboxFs & { calls: string[] } {
  const calls: string[] = [];
  return {
    calls,
    realpath: async (p) => {
      calls.push(`realpath ${p}`);
      return realpath(p);
    },
    stat: async (p) => {
      calls.push(`stat ${p}`);
      return stat(p);
    },
    lstat: async (p) => {
      calls.push(`lstat ${p}`);
      return lstat(p);
    },
  };
}

async function code(name: string, fs?: SandboxFs): Promise<string> {
  try {
    await resolveDataset(data, name, fs);
    return 'OK';
  } catch (err) {
    assert.ok(err instanceof RelayError, `expected a RelayError for ${JSON.stringify(name)}, got ${err}`);
    return err.code;
  }
}

test('plain names inside the data directory resolve to their real path and size', async () => {
  const r = await resolveDataset(data, 'a.csv');
  assert.equal(r.realPath, path.join(data, 'a.csv'));
  assert.equal(r.size, 12);
  assert.equal((await resolveDataset(data, 'sub/b.csv')).size, 1);
  assert.equal((await resolveDataset(data, './sub//b.csv')).realPath, path.join(data, 'sub', 'b.csv'));
  // A symlink that stays inside is fine, and resolves to its target.
  assert.equal((await resolveDataset(data, 'link-in')).realPath, path.join(data, 'sub', 'b.csv'));
  // A relative data directory works too.
  const rel = path.relative(process.cwd(), data);
  assert.equal((await resolveDataset(rel, 'a.csv')).realPath, path.join(data, 'a.csv'));
});

test('escapes are FORBIDDEN', async () => {
  for (const name of ['../secret', 'sub/../../secret', '..', 'sub/..', '../data/a.csv', '/etc/passwd', path.join(root, 'secret'), 'link-out', 'link-out-relative', 'dir-out/secret', 'fifo-link']) {
    assert.equal(await code(name), 'FORBIDDEN', name);
  }
  // '..' is refused even where it would stay inside: the kernel resolves 'link/..' against the link's target.
  assert.equal(await code('sub/../a.csv'), 'FORBIDDEN');
});

test('malformed names are BAD_REQUEST', async () => {
  const cases: [string, string][] = [
    ['', 'empty'],
    ['a.csv\0', 'NUL at the end'],
    ['\0../../etc/passwd', 'NUL first'],
    ['x'.repeat(1025), '1025 ASCII bytes'],
    ['é'.repeat(513), '513 characters but 1026 bytes'],
    [`${'é'.repeat(200)}.csv`, 'a 404-byte path component (ENAMETOOLONG)'],
    ['\uD800.csv', 'a lone surrogate'],
    ['a\nb.csv', 'a newline'],
    ['a\u001b[31m.csv', 'an escape sequence'],
    ['loop-a', 'a symlink loop'],
    ['sub', 'a directory'],
    ['sub/', 'a directory with a slash'],
    ['.', 'the data directory itself'],
    ['fifo-in', 'a FIFO inside (not a regular file)'],
  ];
  for (const [name, why] of cases) assert.equal(await code(name), 'BAD_REQUEST', why);
  // 1024 bytes exactly is allowed by the length rule (and is then simply not found).
  assert.equal(await code(`${'d/'.repeat(511)}xx`), 'DATASET_NOT_FOUND');
});

test('odd Unicode is taken literally, never as path syntax', async () => {
  const nfc = 'données/été.csv'.normalize('NFC');
  assert.equal((await resolveDataset(data, nfc)).size, 7);
  // Linux names are bytes: the decomposed form is another name.
  assert.equal(await code(nfc.normalize('NFD')), 'DATASET_NOT_FOUND');
  assert.equal(await code('\uFF0E\uFF0E/secret'), 'DATASET_NOT_FOUND'); // fullwidth dots
  assert.equal(await code('\u2025/secret'), 'DATASET_NOT_FOUND'); // two-dot leader
  assert.equal(await code('..\u2215secret'), 'DATASET_NOT_FOUND'); // division slash
  assert.equal(await code('\u202Evsc.a'), 'DATASET_NOT_FOUND'); // right-to-left override
  assert.equal(await code('😀/a.csv'), 'DATASET_NOT_FOUND');
});

test('missing files are DATASET_NOT_FOUND', async () => {
  assert.equal(await code('missing.csv'), 'DATASET_NOT_FOUND');
  assert.equal(await code('sub/missing/deeper.csv'), 'DATASET_NOT_FOUND');
  assert.equal(await code('a.csv/child'), 'DATASET_NOT_FOUND'); // ENOTDIR
});

test('a missing data directory is a CONNECTOR_ERROR, not a client mistake', async () => {
  await assert.rejects(resolveDataset(path.join(root, 'nope'), 'a.csv'), (e: RelayError) => e.code === 'CONNECTOR_ERROR');
});

test('the sandbox only resolves and stats; rejected names touch nothing at all', async () => {
  const fs = recordingFs();
  for (const name of ['../secret', '/etc/passwd', 'a\0b', 'x'.repeat(2000), '\uDC00']) {
    await code(name, fs);
  }
  assert.equal(fs.calls.length, 0, 'no file-system call for names refused on their face');
  assert.equal(await code('link-out', fs), 'FORBIDDEN');
  assert.ok(!fs.calls.some((c) => c.includes('secret')), `the outside target is never even stat'ed: ${fs.calls.join(', ')}`);
  assert.equal(await code('a.csv', fs), 'OK');
  assert.ok(fs.calls.every((c) => /^(realpath|stat|lstat) /.test(c)));
});

test('a path without symbolic links costs one lstat per component; a link falls back to realpath', async () => {
  const calls = async (name: string) => {
    const fs = recordingFs();
    await code(name, fs);
    // The first call resolves the data directory itself (not cached for a test double).
    return fs.calls.slice(1).map((c) => c.replace(data, 'DATA'));
  };
  assert.deepEqual(await calls('a.csv'), ['lstat DATA/a.csv']);
  assert.deepEqual(await calls('sub/b.csv'), ['lstat DATA/sub', 'lstat DATA/sub/b.csv']);
  assert.deepEqual(await calls('link-in'), ['lstat DATA/link-in', 'realpath DATA/link-in', 'stat DATA/sub/b.csv']);
  assert.deepEqual(await calls('./a.csv'), ['realpath DATA/./a.csv', 'stat DATA/a.csv']);
  assert.equal((await resolveDataset(data, 'link-in')).realPath, path.join(data, 'sub', 'b.csv'));
});

test('isInside is exact about prefixes', () => {
  assert.equal(isInside('/d', '/d/x'), true);
  assert.equal(isInside('/d', '/d/..x'), true);
  assert.equal(isInside('/d', '/d'), false);
  assert.equal(isInside('/d', '/dx/y'), false);
  assert.equal(isInside('/d', '/'), false);
});

test('FileSource reads exact chunk_size buffers, from an offset, and only the size that was checked', async () => {
  const bytes = Buffer.alloc(10_000);
  for (let i = 0; i < bytes.length; i++) bytes[i] = i % 251;
  await writeFile(path.join(data, 'ten-k.bin'), bytes);
  const ds = await resolveDataset(data, 'ten-k.bin');
  const src = await FileSource.open(ds, 4096);
  const chunks: Buffer[] = [];
  for await (const c of src.chunks()) chunks.push(c);
  await src.close();
  assert.deepEqual(chunks.map((c) => c.length), [4096, 4096, 1808]);
  assert.deepEqual(Buffer.concat(chunks), bytes);
  assert.notEqual(chunks[0]!.buffer, chunks[1]!.buffer, 'fresh buffers');

  const from = await FileSource.open(ds, 4096, { startOffset: 8192 });
  const rest: Buffer[] = [];
  for await (const c of from.chunks()) rest.push(c);
  await from.close();
  assert.deepEqual(Buffer.concat(rest), bytes.subarray(8192));

  // Growing after the check does not change what is sent (the totals were announced already).
  await writeFile(path.join(data, 'ten-k.bin'), Buffer.concat([bytes, Buffer.from('more')]));
  const grown = await FileSource.open({ ...ds, size: 10_000 }, 4096);
  let n = 0;
  for await (const c of grown.chunks()) n += c.length;
  await grown.close();
  assert.equal(n, 10_000);
});

test('FileSource refuses a file swapped after the check', async () => {
  await writeFile(path.join(data, 'swap.csv'), 'original');
  const ds = await resolveDataset(data, 'swap.csv');
  // Replaced by another inode...
  await writeFile(path.join(data, 'swap2.csv'), 'replaced');
  await rename(path.join(data, 'swap2.csv'), path.join(data, 'swap.csv'));
  await assert.rejects(FileSource.open(ds, 1024), (e: RelayError) => e.code === 'FORBIDDEN');
  // ...or by a symlink to a secret.
  await rm(path.join(data, 'swap.csv'));
  await symlink(path.join(root, 'secret'), path.join(data, 'swap.csv'));
  await assert.rejects(FileSource.open(ds, 1024), (e: RelayError) => e.code === 'FORBIDDEN');
  // ...or it is gone.
  await rm(path.join(data, 'swap.csv'));
  await assert.rejects(FileSource.open(ds, 1024), (e: RelayError) => e.code === 'DATASET_NOT_FOUND');
});
