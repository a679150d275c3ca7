// The object store adapter (router/storage.ts) against a real S3 endpoint (s3rver) behind the
// fault proxy: a call made while the store cannot be reached waits for it (about 5 s at most);
// an answer that no retry can change fails at once.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createLogger } from '../../src/log.js';
import { startDevS3, Storage } from '../../src/router/storage.js';
import { FaultProxy } from '../helpers/fault-proxy.js';

let dir: string;
let s3: Awaited<ReturnType<typeof startDevS3>>;
let proxy: FaultProxy;
const log = createLogger('test-storage', 'silent');
const cfg = (bucket: string, endpoint: string) => ({ endpoint, accessKey: 'S3RVER', secretKey: 'S3RVER', bucket, region: 'us-east-1', retentionS: 3600 });

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relay-units-s3-'));
  s3 = await startDevS3(dir, 'relay-results');
  const u = new URL(s3.endpoint);
  proxy = await FaultProxy.start({ target: { host: u.hostname, port: Number(u.port) } });
});
after(async () => {
  await proxy.close();
  await s3.close();
  await rm(dir, { recursive: true, force: true });
});

test('a multipart upload asked for while the store is unreachable is made once it is back', { timeout: 20_000 }, async () => {
  const storage = new Storage(cfg('relay-results', `http://127.0.0.1:${proxy.port}`), log);
  proxy.set({ refuse: true });
  proxy.cutAll(); // pooled connections too
  const t0 = Date.now();
  const made = storage.createMultipart(`t/retry-${Date.now()}`);
  setTimeout(() => proxy.clear(), 1000);
  const uploadId = await made;
  assert.ok(uploadId.length > 0);
  assert.ok(Date.now() - t0 >= 900, `made after ${Date.now() - t0} ms`);
  assert.ok(proxy.stats.refused >= 1, 'the first tries were refused');
});

test('a store away for longer fails after the retries, with a message that says so', { timeout: 20_000 }, async () => {
  const storage = new Storage(cfg('relay-results', `http://127.0.0.1:${proxy.port}`), log);
  proxy.set({ refuse: true });
  proxy.cutAll(); // pooled connections too
  try {
    const t0 = Date.now();
    await assert.rejects(storage.createMultipart('t/away'), (err: { code?: string; message?: string }) => err.code === 'INTERNAL' && /object store could not be reached for 5 s/.test(err.message ?? ''));
    assert.ok(Date.now() - t0 >= 4500, `gave up after ${Date.now() - t0} ms`);
  } finally {
    proxy.clear();
  }
});

test('an answer no retry can change fails at once', { timeout: 20_000 }, async () => {
  proxy.clear();
  const storage = new Storage(cfg('no-such-bucket', `http://127.0.0.1:${proxy.port}`), log);
  const t0 = Date.now();
  await assert.rejects(storage.createMultipart('t/x'), (err: { code?: string }) => err.code === 'NoSuchBucket');
  assert.ok(Date.now() - t0 < 1000, `failed after ${Date.now() - t0} ms`);
});
