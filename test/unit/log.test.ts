// Secrets never reach the log, even when a caller hands over an object that carries one.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

test('fields that can carry a secret are censored in JSON logs', () => {
  const code = `
    const { createLogger, fingerprint } = await import(${JSON.stringify(new URL('../../src/log.js', import.meta.url).href)});
    const log = createLogger('t', 'info');
    log.info({ cfg: { token: 'ct_SECRET1', adminToken: 'ad_SECRET2', apiKey: 'rk_SECRET3', s3SecretKey: 'S3SECRET4', port: 8080 }, headers: { authorization: 'Bearer SECRET5' }, req: { headers: { cookie: 'SECRET6', host: 'h' } }, fp: fingerprint('ct_SECRET1') }, 'configured');
  `;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', env: { ...process.env, RELAY_LOG_JSON: '1' } });
  assert.equal(r.status, 0, r.stderr);
  const line = JSON.parse(r.stderr.trim().split('\n').pop()!) as { cfg: Record<string, unknown>; headers: Record<string, unknown>; req: { headers: Record<string, unknown> }; fp: string; msg: string };
  assert.equal(line.msg, 'configured');
  assert.doesNotMatch(r.stderr, /SECRET\d/);
  assert.equal(line.cfg.token, '[redacted]');
  assert.equal(line.cfg.port, 8080);
  assert.equal(line.headers.authorization, '[redacted]');
  assert.deepEqual(line.req.headers, { cookie: '[redacted]', host: 'h' });
  assert.match(line.fp, /^[0-9a-f]{8}$/);
});

test('censor copies a log line only when it carries a secret, and leaves errors to their serializer', async () => {
  const { censor } = await import('../../src/log.js');
  const clean = { request: 'r_x', zstd: { ratio: 0.3 }, bytes: 1 };
  assert.equal(censor(clean), clean);
  const err = Object.assign(new Error('boom'), { token: 'kept for the err serializer' });
  const dirty = { cfg: { port: 1, apiKey: 'rk_1' }, err };
  const out = censor(dirty);
  assert.deepEqual(out.cfg, { port: 1, apiKey: '[redacted]' });
  assert.equal(out.err, err);
  assert.equal(dirty.cfg.apiKey, 'rk_1', 'the caller object is not changed');
});

test('exitAfterLogs writes every line, in order, before the process exits, also while the thread pool is busy', () => {
  // Four slow tasks take the whole thread pool (4 threads), so the write of the first line
  // waits behind them. Exiting at once, pino's exit hook wrote the 101 lines queued after it
  // first, and the first one last (a connector's "connector stopping" came after its "result
  // delivered" that way in a fresh-clone CI run).
  const child = (exit: string) => `
    const { pbkdf2 } = await import('node:crypto');
    const { createLogger, exitAfterLogs } = await import(${JSON.stringify(new URL('../../src/log.js', import.meta.url).href)});
    const log = createLogger('t', 'info');
    for (let i = 0; i < 4; i++) pbkdf2('x', 'y', 300000, 32, 'sha256', () => {});
    log.info('first');
    for (let i = 0; i < 100; i++) log.info({ i }, 'line');
    log.info('last');
    ${exit};
  `;
  const run = (exit: string) => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', child(exit)], { encoding: 'utf8', env: { ...process.env, RELAY_LOG_JSON: '1', UV_THREADPOOL_SIZE: '4' } });
    return { status: r.status, msgs: r.stderr.trim().split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { msg: string }).msg) };
  };
  const r = run('exitAfterLogs(0)');
  assert.equal(r.status, 0);
  assert.equal(r.msgs.length, 102, `${r.msgs.length} lines arrived`);
  assert.deepEqual([r.msgs[0], r.msgs.at(-1)], ['first', 'last']);
});
