// The service files in deploy/: systemd units (parsed here; `systemd-analyze verify` where it
// exists) and their example environment files, which must only name options config.ts reads.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SERVICE_NODE_FLAGS } from '../../src/cli/node-flags.js';

const root = new URL('../../../', import.meta.url);
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');

/** [Section] → key → values (a key may repeat). */
function unit(text: string): Record<string, Record<string, string[]>> {
  const out: Record<string, Record<string, string[]>> = {};
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith(';')) continue;
    const s = /^\[(.+)\]$/.exec(line);
    if (s) {
      section = s[1]!;
      out[section] ??= {};
      continue;
    }
    const eq = line.indexOf('=');
    assert.ok(section && eq > 0, `bad line: ${line}`);
    (out[section]![line.slice(0, eq)] ??= []).push(line.slice(eq + 1));
  }
  return out;
}

for (const [name, command] of [['relay-router', 'router'], ['relay-connector', 'connector']] as const) {
  test(`${name}.service runs \`relay ${command}\` as an unprivileged, restarted, hardened service`, () => {
    const u = unit(read(`deploy/systemd/${name}.service`));
    const svc = u.Service!;
    assert.equal(svc.ExecStart![0]!, `/usr/bin/node ${SERVICE_NODE_FLAGS.join(' ')} /opt/relay/bin/relay.js ${command}`);
    assert.equal(svc.User![0], 'relay');
    assert.match(svc.EnvironmentFile![0]!, new RegExp(`^/etc/relay/${command}\\.env$`));
    assert.ok(['on-failure', 'always'].includes(svc.Restart![0]!));
    assert.equal(svc.KillSignal![0], 'SIGTERM');
    assert.ok(Number(svc.TimeoutStopSec![0]) >= 30, 'longer than the graceful shutdown');
    assert.equal(svc.NoNewPrivileges![0], 'yes');
    assert.equal(svc.ProtectSystem![0], 'strict');
    assert.equal(u.Install!.WantedBy![0], 'multi-user.target');
    assert.match(u.Unit!.After![0]!, /network-online\.target/);
  });
}

test('the example environment files name only options config.ts reads', () => {
  // config.ts reads every option; log.ts reads the two logging switches before config exists.
  const config = read('src/config.ts') + read('src/log.ts');
  for (const file of ['deploy/systemd/router.env.example', 'deploy/systemd/connector.env.example']) {
    const names = read(file).split('\n').filter((l) => /^[A-Z]/.test(l)).map((l) => l.slice(0, l.indexOf('=')));
    assert.ok(names.length >= 4, file);
    assert.deepEqual(names.filter((n) => !config.includes(`'${n}'`)), [], `${file}: unknown variables`);
  }
  const units = read('deploy/systemd/relay-router.service') + read('deploy/windows/relay-connector.xml');
  for (const m of units.matchAll(/\bRELAY_[A-Z0-9_]+/g)) assert.ok(config.includes(`'${m[0]}'`) || config.includes(`env.${m[0]}`), `${m[0]} is read by config.ts`);
});

const analyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' });
test('systemd-analyze verify accepts the units', { skip: analyze.status === 0 ? false : 'no systemd-analyze here (the units are parsed above instead)' }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'relay-units-'));
  for (const name of ['relay-router', 'relay-connector']) {
    // Verify needs the binary to exist: point ExecStart at node itself.
    writeFileSync(join(dir, `${name}.service`), read(`deploy/systemd/${name}.service`).replace(/^ExecStart=.*$/m, `ExecStart=${process.execPath} --version`).replace(/^EnvironmentFile=/m, 'EnvironmentFile=-'));
    const r = spawnSync('systemd-analyze', ['verify', join(dir, `${name}.service`)], { encoding: 'utf8' });
    assert.equal(r.status, 0, r.stderr);
  }
});
