// Sync results past the router's memory budget (RELAY_SYNC_MEMORY_BYTES) spill to a temporary
// file per request: concurrent results arrive byte-identical (also out of order, also as the JSON
// envelope), the spill counter moves, and no file is left behind — after delivery, after a
// cancel, after the client went away or stopped reading, after RESULT_TOO_LARGE or a bad
// checksum, after a router crash (removed at the next start).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { request } from 'undici';
import { closeHttp, requestSync } from '../../src/client/index.js';
import { xxh64 } from '../../src/protocol/checksum.js';
import { CHUNK, Stack, csv, sleep } from '../helpers/stack.js';
import { WireConnector } from '../helpers/wire.js';

const MiB = 1024 * 1024;
/** The router names its spill directory `<host>.<pid>`, the host made safe for a file name. */
const HOST = hostname().replace(/[^A-Za-z0-9_-]/g, '_').slice(0, 64) || 'host';
let s: Stack;
let spillRoot: string;
const files = new Map<string, Buffer>();

before(async () => {
  spillRoot = await mkdtemp(join(tmpdir(), 'relay-spill-test-'));
  // What a crashed router of this host left behind, and a directory of another host's router.
  const dead = spawnSync(process.execPath, ['-e', '']).pid!;
  await mkdir(join(spillRoot, `${HOST}.${dead}`));
  await writeFile(join(spillRoot, `${HOST}.${dead}`, 'r_crashed.00000000.spill'), 'x');
  await mkdir(join(spillRoot, 'elsewhere.1'));
  await writeFile(join(spillRoot, 'elsewhere.1', 'r_foreign.00000000.spill'), 'x');
  s = await Stack.start({
    routerEnv: { RELAY_SYNC_MEMORY_BYTES: String(2 * MiB), RELAY_SYNC_LIMIT_BYTES: String(32 * MiB), RELAY_SPILL_DIR: spillRoot },
  });
  files.set('sales/16mb.csv', await s.writeData('sales/16mb.csv', csv(16 * MiB)));
  files.set('random-12mb.bin', await s.writeData('random-12mb.bin', randomBytes(12 * MiB)));
  files.set('random-20mb.bin', await s.writeData('random-20mb.bin', randomBytes(20 * MiB + 12345)));
  files.set('random-30mb.bin', await s.writeData('random-30mb.bin', randomBytes(30 * MiB)));
  files.set('random-40mb.bin', await s.writeData('random-40mb.bin', randomBytes(40 * MiB)));
});
after(async () => {
  await closeHttp();
  await s?.stop();
  // A clean stop removes the router's own directory too.
  if (spillRoot) {
    const left = await readdir(spillRoot);
    await rm(spillRoot, { recursive: true, force: true });
    assert.deepEqual(left, [], 'the router removed its spill directory at stop');
  }
});

/** Every file under the spill root (the router works in a subdirectory of its own). */
async function spillFiles(): Promise<string[]> {
  const out: string[] = [];
  for (const d of await readdir(spillRoot, { withFileTypes: true })) {
    if (d.isDirectory()) out.push(...(await readdir(join(spillRoot, d.name))).map((f) => join(d.name, f)));
    else out.push(d.name);
  }
  return out;
}

/** Waits (bounded) until no spill file is left; returns what is left. */
async function settledSpill(ms = 5000): Promise<string[]> {
  const end = Date.now() + ms;
  let left = await spillFiles();
  while (left.length && Date.now() < end) {
    await sleep(50);
    left = await spillFiles();
  }
  return left;
}

async function metric(name: string): Promise<number> {
  const text = await (await fetch(`${s.routerUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line ? Number(line.split(' ')[1]) : 0;
}

/** Waits until the budget is given back (the router ends a sink just after its last byte). */
async function budgetBack(ms = 5000): Promise<number> {
  const end = Date.now() + ms;
  let used = await metric('relay_sync_memory_bytes');
  while (used !== 0 && Date.now() < end) {
    await sleep(50);
    used = await metric('relay_sync_memory_bytes');
  }
  return used;
}

/** Watches the spill directory until stopped: the most files seen at once, and the names. */
function watchSpill() {
  let stop = false;
  let max = 0;
  const seen = new Set<string>();
  const done = (async () => {
    while (!stop) {
      const now = await spillFiles().catch(() => []);
      max = Math.max(max, now.length);
      now.forEach((f) => seen.add(f));
      await sleep(10);
    }
  })();
  return {
    seen,
    async stop() {
      stop = true;
      await done;
      return max;
    },
  };
}

function collector() {
  const out = new PassThrough();
  const parts: Buffer[] = [];
  out.on('data', (d: Buffer) => parts.push(d));
  return { out, bytes: () => Buffer.concat(parts) };
}

/** The request id in a spill file name (`<host>.<pid>/<request id>.<random>.spill`). */
const idOf = (file: string) => /(r_[A-Za-z0-9_-]+)\.[0-9a-f]+\.spill$/.exec(file)?.[1];

/** Waits for the first spill file of a request whose answer is `answer` (which must not end first). */
async function waitForSpillFile(answer: Promise<unknown>, ms = 20_000): Promise<string> {
  let settled: string | null = null;
  answer.then(
    (r) => (settled = `answered ${(r as { statusCode?: number }).statusCode}`),
    (e: unknown) => (settled = `failed: ${String(e)}`),
  );
  const end = Date.now() + ms;
  while (Date.now() < end && !settled) {
    const f = (await spillFiles()).find((x) => idOf(x));
    if (f) return f;
    await sleep(5);
  }
  throw new Error(`no spill file appeared (${settled ?? 'timed out'})`);
}

describe('sync results past the memory budget', () => {
  test('at start the router removed what a dead router of this host left, and nothing else', async () => {
    const dirs = (await readdir(spillRoot)).sort();
    assert.deepEqual(dirs, ['elsewhere.1', `${HOST}.${s.router.child.pid}`].sort());
    assert.ok((await stat(join(spillRoot, 'elsewhere.1', 'r_foreign.00000000.spill'))).isFile());
    await rm(join(spillRoot, 'elsewhere.1'), { recursive: true });
    assert.deepEqual(await spillFiles(), []);
  });

  test('concurrent results arrive byte-identical through spill files, which are removed afterwards', { timeout: 60_000 }, async () => {
    const spilledBefore = await metric('relay_sync_spill_bytes_total');
    const watch = watchSpill();
    const names = ['sales/16mb.csv', 'random-12mb.bin', 'random-20mb.bin', 'sales/16mb.csv', 'random-20mb.bin', 'random-12mb.bin'];
    const results = await Promise.all(
      names.map(async (name) => {
        const c = collector();
        const r = await requestSync(s.clientCfg(), { connector: s.connectorId, dataset: name }, c.out);
        return { name, r, body: c.bytes() };
      }),
    );
    const maxFiles = await watch.stop();
    let total = 0;
    for (const { name, r, body } of results) {
      const want = files.get(name)!;
      assert.equal(r.bytes, want.length, name);
      assert.equal(r.checksum, xxh64(want), name);
      assert.ok(r.verified, `${name}: checksum verified end to end`);
      assert.ok(body.equals(want), `${name}: same bytes`);
      total += want.length;
    }
    const spilled = (await metric('relay_sync_spill_bytes_total')) - spilledBefore;
    // Only 2 MiB may be held in memory at a time (given back as answers are written): most went to disk.
    assert.ok(spilled >= total * 0.75, `spilled ${spilled} of ${total} bytes`);
    assert.ok(maxFiles >= 2, `several spill files at once (${maxFiles})`);
    assert.deepEqual(await settledSpill(), [], 'no spill file is left');
    assert.equal(await budgetBack(), 0, 'the memory budget is given back');
    assert.equal(await metric('relay_sync_spill_files'), 0);
  });

  test('a request cancelled mid-way leaves no spill file', { timeout: 60_000 }, async () => {
    const answer = request(`${s.routerUrl}/v1/datasets/request-sync`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.clientKey}` },
      body: JSON.stringify({ connector: s.connectorId, dataset: 'random-30mb.bin' }),
    });
    const file = await waitForSpillFile(answer);
    const id = idOf(file)!;
    const del = await fetch(`${s.routerUrl}/v1/requests/${id}`, { method: 'DELETE', headers: { authorization: `Bearer ${s.clientKey}` } });
    assert.equal(del.status, 200);
    const res = await answer;
    const text = await res.body.text();
    // Cancelled before the answer started: an error instead of the bytes.
    assert.equal(res.statusCode, 410, text.slice(0, 200));
    assert.equal((JSON.parse(text) as { error: { code: string } }).error.code, 'GONE');
    assert.deepEqual(await settledSpill(), [], 'the cancelled request left no file');
    assert.equal(await budgetBack(), 0);
    const st = (await (await fetch(`${s.routerUrl}/v1/requests/${id}`, { headers: { authorization: `Bearer ${s.clientKey}` } })).json()) as { status: string };
    assert.equal(st.status, 'cancelled');
  });

  test('a client that goes away mid-way leaves no spill file', { timeout: 60_000 }, async () => {
    const ac = new AbortController();
    const answer = request(`${s.routerUrl}/v1/datasets/request-sync`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.clientKey}` },
      body: JSON.stringify({ connector: s.connectorId, dataset: 'random-30mb.bin' }),
      signal: ac.signal,
    });
    const file = await waitForSpillFile(answer);
    ac.abort();
    await assert.rejects(answer);
    assert.deepEqual(await settledSpill(), [], `${file} was removed`);
    assert.equal(await budgetBack(), 0);
    const id = idOf(file)!;
    let st = { status: '' };
    for (let i = 0; i < 50 && st.status !== 'cancelled'; i++) {
      st = (await (await fetch(`${s.routerUrl}/v1/requests/${id}`, { headers: { authorization: `Bearer ${s.clientKey}` } })).json()) as { status: string };
      await sleep(100);
    }
    assert.equal(st.status, 'cancelled');
  });

  test('a client that stops reading the answer keeps it on disk until it goes away', { timeout: 60_000 }, async () => {
    const ac = new AbortController();
    const res = await request(`${s.routerUrl}/v1/datasets/request-sync`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.clientKey}` },
      body: JSON.stringify({ connector: s.connectorId, dataset: 'random-30mb.bin' }),
      signal: ac.signal,
    });
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-length'], String(30 * MiB));
    // Read a little, then stop: the router waits for the socket to drain, the file stays.
    await new Promise<void>((resolve) => {
      let got = 0;
      res.body.on('data', (piece: Buffer) => {
        got += piece.length;
        if (got > 2 * MiB) {
          res.body.pause();
          resolve();
        }
      });
    });
    await sleep(300);
    assert.ok((await spillFiles()).length >= 1, 'the rest of the answer is still in its spill file');
    ac.abort();
    assert.deepEqual(await settledSpill(), [], 'removed once the client went away');
    assert.equal(await budgetBack(), 0);
  });

  test('RESULT_TOO_LARGE still applies and leaves no spill file', { timeout: 60_000 }, async () => {
    await assert.rejects(requestSync(s.clientCfg(), { connector: s.connectorId, dataset: 'random-40mb.bin' }, new PassThrough()), (e: { code?: string }) => e.code === 'RESULT_TOO_LARGE');
    assert.deepEqual(await settledSpill(), []);
    assert.equal(await budgetBack(), 0);
  });
});

// The other tenant's connector, driven step by step: chunk order, encodings and content type
// are the test's choice.
describe('sync results past the memory budget, chunk by chunk', () => {
  let wire: WireConnector;
  before(async () => {
    wire = await new WireConnector(s.routerUrl, s.otherConnectorToken).connect();
  });
  after(() => wire?.close());

  const ask = (headers: Record<string, string> = {}) =>
    request(`${s.routerUrl}/v1/datasets/request-sync`, {
      method: 'POST',
      headers: { authorization: `Bearer ${s.otherClientKey}`, ...headers },
      body: JSON.stringify({ connector: s.otherConnectorId, dataset: 'text.csv' }),
    });

  /** Multi-byte UTF-8 text of n chunks, cut at chunk boundaries (characters split across them). */
  const text = (n: number) => {
    const buf = Buffer.from('id;name\n' + 'x,Zoë,€,😀,\"q\"\\\n'.repeat(Math.ceil((n * CHUNK) / 16)));
    return buf.subarray(0, n * CHUNK - 1000);
  };

  test('out of order, past the budget, as a JSON envelope: the text arrives intact', { timeout: 60_000 }, async () => {
    const whole = text(8);
    const pending = ask({ accept: 'application/json' });
    const { data: cmd } = await wire.command();
    const id = cmd.request_id;
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 });
    assert.equal((await wire.post(`/v1/requests/${id}/stream/init`, { attempt: 1, content_type: 'text/csv', total_bytes: whole.length, total_chunks: 8 })).status, 204);
    const piece = (i: number) => whole.subarray(i * CHUNK, Math.min(whole.length, (i + 1) * CHUNK));
    // 0..3 fill the 2 MiB budget; 5 and 7 go to the file before 4 and 6 (read back to hash them).
    for (const i of [0, 1, 2, 3, 5, 7, 4, 6]) assert.equal((await wire.chunk(id, i, piece(i), { zstd: i % 2 === 1 })).status, 201, `chunk ${i}`);
    assert.equal((await wire.chunk(id, 5, piece(5), { zstd: true })).status, 200, 'a duplicate of a spilled chunk');
    assert.ok((await spillFiles()).some((f) => idOf(f) === id), 'chunks past the budget are in a spill file');
    assert.equal((await wire.post(`/v1/requests/${id}/stream/complete`, { attempt: 1, chunks: 8, bytes: whole.length, checksum: xxh64(whole) })).status, 204);
    const res = await pending;
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-type'], 'application/json');
    assert.equal(res.headers['x-relay-checksum'], xxh64(whole));
    const body = (await res.body.json()) as { status: string; request_id: string; data: string };
    assert.deepEqual([body.status, body.request_id], ['success', id]);
    assert.equal(body.data, whole.toString('utf8'));
    assert.deepEqual(await settledSpill(), []);
    assert.equal(await budgetBack(), 0);
  });

  test('the same bytes without the envelope, with an exact Content-Length', { timeout: 60_000 }, async () => {
    const whole = text(6);
    const pending = ask();
    const { data: cmd } = await wire.command();
    const id = cmd.request_id;
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 });
    await wire.post(`/v1/requests/${id}/stream/init`, { attempt: 1, content_type: 'text/csv', total_bytes: null, total_chunks: null });
    for (const i of [5, 4, 3, 2, 1, 0]) assert.equal((await wire.chunk(id, i, whole.subarray(i * CHUNK, (i + 1) * CHUNK))).status, 201);
    assert.equal((await wire.post(`/v1/requests/${id}/stream/complete`, { attempt: 1, chunks: 6, bytes: whole.length, checksum: xxh64(whole) })).status, 204);
    const res = await pending;
    assert.equal(res.statusCode, 200);
    assert.equal(res.headers['content-length'], String(whole.length));
    assert.ok(Buffer.from(await res.body.arrayBuffer()).equals(whole));
    assert.deepEqual(await settledSpill(), []);
  });

  test('a result that fails its checksum is refused and its spill file removed', { timeout: 60_000 }, async () => {
    const whole = randomBytes(6 * CHUNK);
    const pending = ask();
    const { data: cmd } = await wire.command();
    const id = cmd.request_id;
    await wire.post(`/v1/requests/${id}/ack`, { attempt: 1 });
    await wire.post(`/v1/requests/${id}/stream/init`, { attempt: 1, content_type: 'application/octet-stream', total_bytes: whole.length, total_chunks: 6 });
    for (let i = 0; i < 6; i++) assert.equal((await wire.chunk(id, i, whole.subarray(i * CHUNK, (i + 1) * CHUNK))).status, 201);
    assert.ok((await spillFiles()).some((f) => idOf(f) === id), `a spill file for ${id} in ${(await spillFiles()).join(', ')}; memory ${await metric('relay_sync_memory_bytes')}`);
    const bad = await wire.post(`/v1/requests/${id}/stream/complete`, { attempt: 1, chunks: 6, bytes: whole.length, checksum: '0123456789abcdef' });
    assert.equal(bad.status, 422);
    const res = await pending;
    assert.equal(res.statusCode, 422);
    assert.equal(((await res.body.json()) as { error: { code: string } }).error.code, 'CHECKSUM_MISMATCH');
    assert.deepEqual(await settledSpill(), []);
    assert.equal(await budgetBack(), 0);
  });
});
