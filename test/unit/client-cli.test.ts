import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { closeHttp } from '../../src/client/index.js';
import { runRequest, type Io } from '../../src/cli/request.js';
import { EXIT, EXIT_CODES, UsageError, exitCodeFor } from '../../src/cli/exit-codes.js';
import { ConfigError } from '../../src/config.js';
import { ERROR_STATUS, RelayError, xxh64, type ErrorCode } from '../../src/protocol/index.js';
import { fakeRouter, syncAnswer, collector, json, errorBody, RID } from './client-fake-router.js';

after(() => closeHttp());

test('exit codes: one class per error code, as documented', () => {
  const expected: Record<ErrorCode, number> = {
    INTERNAL: 1,
    BAD_REQUEST: 3,
    NOT_FOUND: 3,
    DATASET_NOT_FOUND: 3,
    FORBIDDEN: 3,
    CONFLICT: 3,
    GONE: 3,
    RESULT_TOO_LARGE: 3,
    UNAUTHORIZED: 4,
    CONNECTOR_OFFLINE: 5,
    CONNECTOR_ERROR: 5,
    TIMEOUT: 5,
    CHECKSUM_MISMATCH: 6,
    RATE_LIMITED: 7,
    BACKPRESSURE: 7,
  };
  assert.deepEqual(Object.keys(EXIT_CODES).sort(), Object.keys(ERROR_STATUS).sort());
  for (const [code, exit] of Object.entries(expected)) {
    assert.equal(exitCodeFor(new RelayError(code as ErrorCode, 'x')), exit, code);
  }
  assert.equal(exitCodeFor(new ConfigError('no key')), 2);
  assert.equal(exitCodeFor(new UsageError('bad flag')), 2);
  assert.equal(exitCodeFor(new Error('boom')), 1);
  assert.equal(EXIT.OK, 0);
});

function io(): Io & { out(): string; err(): string } {
  const stdout = collector();
  const stderr = collector();
  return { stdout: stdout.out, stderr: stderr.out, stderrIsTTY: false, out: () => stdout.data().toString(), err: () => stderr.data().toString() };
}

async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'relay-cli-'));
}

test('cli: -o writes the file (no .partial left), --json prints the summary, stderr says verified', async () => {
  const data = randomBytes(200_000);
  const router = await fakeRouter(syncAnswer(data));
  const dir = await tempDir();
  try {
    const file = join(dir, 'out.bin');
    const t = io();
    const code = await runRequest('sync', 'cc-28-aa-01', 'x.bin', { output: file, json: true, router: router.url, key: 'k' }, t);
    assert.equal(code, 0, t.err());
    assert.ok((await readFile(file)).equals(data));
    assert.deepEqual(await readdir(dir), ['out.bin']);
    const summary = JSON.parse(t.out());
    assert.equal(summary.status, 'success');
    assert.equal(summary.request_id, RID);
    assert.equal(summary.bytes, data.length);
    assert.equal(summary.verified, true);
    assert.match(t.err(), /200000 bytes .* MB\/s, checksum verified/);
    // A random Idempotency-Key per invocation.
    assert.match(String(router.calls[0]!.headers['idempotency-key']), /^[0-9a-f-]{36}$/);
  } finally {
    await router.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('cli: a checksum mismatch exits 6, leaves no file and no .partial, prints code and request id', async () => {
  const data = randomBytes(300_000);
  const router = await fakeRouter(syncAnswer(data, '0123456789abcdef'));
  const dir = await tempDir();
  try {
    const t = io();
    const code = await runRequest('sync', 'cc-28-aa-01', 'x.bin', { output: join(dir, 'out.bin'), router: router.url, key: 'k' }, t);
    assert.equal(code, 6);
    assert.deepEqual(await readdir(dir), []);
    assert.match(t.err(), new RegExp(`^relay: CHECKSUM_MISMATCH: .* \\(request ${RID}\\)\\n$`));
  } finally {
    await router.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('cli: router errors exit per class (offline 5, unauthorized 4, rate limited 7)', async () => {
  const answers: [number, string][] = [
    [503, 'CONNECTOR_OFFLINE'],
    [401, 'UNAUTHORIZED'],
    [429, 'RATE_LIMITED'],
  ];
  let i = 0;
  const router = await fakeRouter((_req, res) => {
    const [status, code] = answers[i++]!;
    json(res, status, errorBody(code, 'nope', RID));
  });
  try {
    const flags = { router: router.url, key: 'k' };
    const t = io();
    assert.equal(await runRequest('stream', 'cc-28-aa-01', 'x.bin', flags, t), 5);
    assert.match(t.err(), /^relay: CONNECTOR_OFFLINE: nope \(request r_test0000001\)$/m);
    assert.equal(await runRequest('sync', 'cc-28-aa-01', 'x.bin', flags, io()), 4);
    assert.equal(await runRequest('offload', 'cc-28-aa-01', 'x.bin', flags, io()), 7);
  } finally {
    await router.close();
  }
});

test('cli: usage and configuration problems exit 2 before anything is sent', async () => {
  const router = await fakeRouter((_req, res) => json(res, 500, errorBody('INTERNAL', 'should not be called')));
  const savedKey = process.env.RELAY_API_KEY;
  delete process.env.RELAY_API_KEY;
  try {
    const base = { router: router.url, key: 'k' };
    const cases: [string | undefined, Record<string, unknown>][] = [
      ['x.csv', { ...base, sql: 'SELECT 1' }], // both
      [undefined, base], // neither
      ['x.csv', { ...base, json: true }], // --json to stdout
      ['x.csv', { ...base, timeout: 'soon' }],
      ['x.csv', { router: router.url }], // no key anywhere
    ];
    for (const [dataset, flags] of cases) {
      const t = io();
      assert.equal(await runRequest('sync', 'cc-28-aa-01', dataset, flags, t), 2, JSON.stringify(flags));
      assert.match(t.err(), /^relay: /);
    }
    assert.equal(await runRequest('sync', 'bad/connector', 'x.csv', base, io()), 2);
    assert.equal(router.calls.length, 0);
  } finally {
    if (savedKey !== undefined) process.env.RELAY_API_KEY = savedKey;
    await router.close();
  }
});

test('cli: offload --url-only prints the presigned URL on stdout', async () => {
  const router = await fakeRouter((req, res) =>
    json(res, 200, { status: 'success', request_id: RID, download_url: `http://${req.headers.host}/b/o?sig=1`, expires_at: 'later', bytes: 3, checksum: 'abcdefabcdefabcd', content_encoding: 'identity' }),
  );
  try {
    const t = io();
    assert.equal(await runRequest('offload', 'cc-28-aa-01', 'x.bin', { urlOnly: true, router: router.url, key: 'k' }, t), 0);
    assert.equal(t.out(), `${router.url}/b/o?sig=1\n`);
    assert.equal(router.calls.length, 1);
  } finally {
    await router.close();
  }
});

test('cli: a request loads only the undici it uses, and leaves its HTTP parser unoptimized (nothing to wait for at exit)', async () => {
  const data = randomBytes(200_000);
  const router = await fakeRouter(syncAnswer(data));
  const dir = await tempDir();
  try {
    // Reading globalThis.Headers makes Node load the undici it bundles (and compile its parser).
    const trap = join(dir, 'trap.mjs');
    await writeFile(
      trap,
      `const d = Object.getOwnPropertyDescriptor(globalThis, 'Headers');
Object.defineProperty(globalThis, 'Headers', { configurable: true, enumerable: d.enumerable, get() { process._rawDebug('TRAP: globalThis.Headers read'); return d.get ? d.get.call(this) : d.value; } });\n`,
    );
    const bin = join(import.meta.dirname, '../../../bin/relay.js');
    const { execFile } = await import('node:child_process');
    const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      const child = execFile(process.execPath, ['--trace-wasm-compilation-times', '--import', trap, bin, 'request-sync', 'cc-28-aa-01', 'x.bin', '-o', join(dir, 'out.bin'), '--router', router.url, '--key', 'k'], (_err, stdout, stderr) =>
        resolve({ code: child.exitCode, stdout, stderr }),
      );
    });
    assert.equal(r.code, 0, r.stderr);
    assert.ok((await readFile(join(dir, 'out.bin'))).equals(data));
    assert.doesNotMatch(r.stderr, /TRAP/, 'the CLI read globalThis.Headers');
    // V8 prints unknown flags on stderr: a Node whose V8 dropped the tiering or interrupt-budget flag must be noticed here.
    assert.doesNotMatch(r.stderr, /unrecognized flag/);
    // V8's trace says which tier compiled each WebAssembly function: the parser's largest
    // function (tens of KB of code; xxhash's are under 1 KB) must stay on Liftoff.
    assert.match(r.stdout, /using Liftoff/, 'no WebAssembly compilation trace: check the V8 flag');
    const optimized = [...r.stdout.matchAll(/using TurboFan.*bodysize (\d+)/g)].map((m) => Number(m[1]));
    assert.deepEqual(optimized.filter((size) => size > 10_000), [], r.stdout);
  } finally {
    await router.close();
    await rm(dir, { recursive: true, force: true });
  }
});

test('cli: --version and -V print the package version; --help lists every command', async () => {
  const { spawnSync } = await import('node:child_process');
  const bin = join(import.meta.dirname, '../../../bin/relay.js');
  const { version } = JSON.parse(await readFile(join(import.meta.dirname, '../../../package.json'), 'utf8')) as { version: string };
  for (const flag of ['--version', '-V']) {
    const r = spawnSync(process.execPath, [bin, flag], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
    assert.equal(r.stdout.trim(), version);
  }
  const help = spawnSync(process.execPath, [bin, '--help'], { encoding: 'utf8' });
  assert.equal(help.status, 0, help.stderr);
  for (const cmd of ['router', 'connector', 'request-sync', 'request-stream', 'request-offload', 'admin', 'demo', 'status']) assert.match(help.stdout, new RegExp(`\\b${cmd}\\b`));
});
