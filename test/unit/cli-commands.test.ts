// How `relay` starts: bin/relay.js runs the bundle scripts/bundle-cli.mjs builds (part of `npm
// run build`), so a request command loads a few files, not the ~170 ES modules it did before
// (README, Dependencies); the other commands load their heavy modules only when they run; a
// one-shot command gives up on an unreachable Redis instead of waiting for it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile, readdir, writeFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const BIN = join(ROOT, 'bin/relay.js');
const run = promisify(execFile);

/** Every ES module `relay ARGS` resolves, from a resolve hook (module.register). */
async function modulesLoaded(args: string[]): Promise<{ urls: string[]; stdout: string; stderr: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'relay-bundle-'));
  try {
    const hooks = join(dir, 'hooks.mjs');
    const preload = join(dir, 'preload.mjs');
    await writeFile(hooks, `export async function resolve(s, c, next) { const r = await next(s, c); process.stderr.write('resolved ' + r.url + '\\n'); return r; }\n`);
    await writeFile(preload, `import { register } from 'node:module'; register(${JSON.stringify(new URL(`file://${hooks}`).href)});\n`);
    const { stdout, stderr } = await run(process.execPath, ['--import', preload, BIN, ...args], { env: { ...process.env, NO_COLOR: '1' } });
    const urls = stderr.split('\n').filter((l) => l.startsWith('resolved file:')).map((l) => l.slice('resolved '.length));
    return { urls, stdout, stderr };
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

test('a request command runs from the bundle: a handful of files, no zod, cli-progress or compressor from node_modules', async () => {
  const { urls, stdout } = await modulesLoaded(['request-sync', '--help']);
  assert.match(stdout, /Usage: relay request-sync/);
  assert.ok(urls.some((u) => u.endsWith('/dist/src/cli/main.bundle.js')), 'bin/relay.js imports the bundle');
  const fromPackages = urls.filter((u) => u.includes('/node_modules/'));
  for (const pkg of ['zod', 'commander', 'cli-progress', '@mongodb-js/zstd', 'xxhash-wasm']) {
    assert.ok(!fromPackages.some((u) => u.includes(`/node_modules/${pkg}/`)), `${pkg} is bundled or not loaded: ${fromPackages.join(', ')}`);
  }
  assert.ok(urls.length <= 12, `${urls.length} ES modules resolved: ${urls.join(', ')}`);
});

test("the bundle holds zod tree-shaken: none of its locales but English", async () => {
  const dir = join(ROOT, 'dist/src/cli/bundle');
  const files = await readdir(dir);
  assert.ok(files.some((f) => f.startsWith('request-')), `request chunk in ${files.join(', ')}`);
  for (const f of files) {
    const text = await readFile(join(dir, f), 'utf8');
    // A message only zod's Dutch locale has (ASCII: esbuild escapes other characters).
    assert.ok(!text.includes('Ongeldige invoer'), `${f} bundles zod's locales`);
  }
});

test('the router and connector commands stay the files tsc wrote (they find files relative to themselves)', async () => {
  const { urls, stderr } = await modulesLoaded(['router', '--help']);
  assert.ok(urls.some((u) => u.endsWith('/dist/src/cli/router.js')), urls.join(', '));
  // main.ts sets V8's interrupt budget for the long-running commands; V8 prints unknown flags.
  assert.doesNotMatch(stderr, /unrecognized flag/);
});

test('`relay --help` lists every command without loading the router, the connector or the demo', async () => {
  const { urls, stdout } = await modulesLoaded(['--help']);
  for (const cmd of ['router', 'connector', 'request-sync', 'request-stream', 'request-offload', 'admin', 'demo', 'sample-data', 'status']) {
    assert.match(stdout, new RegExp(`^  ${cmd} `, 'm'), cmd);
  }
  for (const heavy of ['/dist/src/router/server.js', '/dist/src/connector/connector.js', '/dist/src/cli/demo-run.js', '/dist/src/router/auth.js', '/node_modules/bullmq/', '/node_modules/ioredis/', '/node_modules/apache-arrow/']) {
    assert.ok(!urls.some((u) => u.includes(heavy)), `${heavy} loaded for --help`);
  }
});

test('relay admin with Redis unreachable fails with a clear error instead of waiting for it', async () => {
  const err = await run(process.execPath, [BIN, 'admin', 'add-tenant', 't-unreachable'], { env: { ...process.env, RELAY_REDIS_URL: 'redis://127.0.0.1:1' }, timeout: 30_000 }).then(
    () => assert.fail('admin succeeded without Redis'),
    (e: { code?: number; killed?: boolean; stderr?: string }) => e,
  );
  assert.equal(err.killed, false, 'it gave up by itself');
  assert.equal(err.code, 1);
  assert.match(err.stderr ?? '', /cannot reach Redis \(RELAY_REDIS_URL \/ --redis-url\): connect ECONNREFUSED 127\.0\.0\.1:1/);
});
