// HTTPS: the router serves TLS with a certificate and key; connector, client library and CLI
// trust a custom CA bundle (RELAY_CA_FILE). The certificate is a throwaway self-signed one made
// with openssl at test time.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { Agent, setGlobalDispatcher, getGlobalDispatcher, type Dispatcher } from 'undici';
import { closeHttp, requestOffload, requestStream, requestSync } from '../../src/client/index.js';
import { RelayError } from '../../src/protocol/errors.js';
import { run, Stack } from '../helpers/stack.js';

let s: Stack;
let dir: string;
let ca: string;
let previous: Dispatcher;

before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'relay-tls-'));
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { stdio: 'ignore' });
  ca = await readFile(join(dir, 'cert.pem'), 'utf8');
  // The test's own fetch calls (the stack's helpers) trust the throwaway CA too.
  previous = getGlobalDispatcher();
  setGlobalDispatcher(new Agent({ connect: { ca } }));
  s = await Stack.start({
    routerEnv: { RELAY_TLS_CERT: join(dir, 'cert.pem'), RELAY_TLS_KEY: join(dir, 'key.pem') },
    connectorEnv: { RELAY_CA_FILE: join(dir, 'cert.pem') },
  });
});
after(async () => {
  await closeHttp();
  await s?.stop();
  setGlobalDispatcher(previous);
  await rm(dir, { recursive: true, force: true });
});

test('the router serves HTTPS; the connector and the client library trust the custom CA', async () => {
  assert.match(s.routerUrl, /^https:\/\/127\.0\.0\.1:\d+$/);
  const data = await s.writeData('tls.bin', randomBytes(1_500_000));
  for (const fn of [requestSync, requestStream, requestOffload]) {
    const parts: Buffer[] = [];
    const out = new PassThrough();
    out.on('data', (d: Buffer) => parts.push(d));
    const r = await fn({ routerUrl: s.routerUrl, apiKey: s.clientKey, ca }, { connector: s.connectorId, dataset: 'tls.bin' }, out);
    assert.ok(r.verified);
    assert.ok(Buffer.concat(parts).equals(data));
  }
});

test('without the CA the client refuses the certificate, with a clear error', async () => {
  await closeHttp();
  await assert.rejects(requestSync({ routerUrl: s.routerUrl, apiKey: s.clientKey }, { connector: s.connectorId, dataset: 'tls.bin' }, new PassThrough(), { retry: false }), (e: RelayError) => {
    assert.ok(e instanceof RelayError);
    assert.match(e.message, /certificate/i);
    return true;
  });
});

test('the CLI takes --ca-file (and RELAY_CA_FILE); a plain-HTTP request to the HTTPS port is refused', async () => {
  const data = await readFile(join(s.dataDir, 'tls.bin'));
  const out = join(dir, 'out.bin');
  const p = run(['request-sync', s.connectorId, 'tls.bin', '-o', out, '--router', s.routerUrl, '--key', s.clientKey, '--ca-file', join(dir, 'cert.pem')]);
  assert.equal(await p.exited, 0, p.lines.join('\n'));
  assert.ok((await readFile(out)).equals(data));
  const bad = run(['request-sync', s.connectorId, 'tls.bin', '-o', out, '--router', s.routerUrl, '--key', s.clientKey], { RELAY_CA_FILE: join(dir, 'missing.pem') });
  assert.equal(await bad.exited, 2, 'a missing CA file is a usage error');
  assert.ok(bad.lines.some((l) => /RELAY_CA_FILE .*missing\.pem: ENOENT/.test(l)), bad.lines.join('\n'));
  await assert.rejects(fetch(s.routerUrl.replace('https:', 'http:') + '/healthz'));
});
