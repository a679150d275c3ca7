// --database / RELAY_DATABASES: named databases, validated at start-up, passwords never echoed.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, connectorConfig } from '../../src/config.js';

const base = { token: 't', id: 'c1' };

test('repeated --database flags keep their order; the variable applies when no flag is given', () => {
  const c = connectorConfig({ ...base, database: ['main=postgres://u:pw@db.local:5432/sales', 'files=duckdb'] }, {});
  assert.deepEqual(c.databases, [
    { name: 'main', kind: 'postgres', url: 'postgres://u:pw@db.local:5432/sales' },
    { name: 'files', kind: 'duckdb' },
  ]);
  const fromEnv = connectorConfig({ ...base, database: [] }, { RELAY_DATABASES: 'files=duckdb, other=postgresql://h/db' });
  assert.deepEqual(fromEnv.databases.map((d) => `${d.name}:${d.kind}`), ['files:duckdb', 'other:postgres']);
  assert.deepEqual(connectorConfig(base, {}).databases, []);
  assert.equal(connectorConfig(base, {}).sqlTimeoutS, 300);
  assert.equal(connectorConfig({ ...base, sqlTimeout: '2.5' }, {}).sqlTimeoutS, 2.5);
});

test('bad entries fail at start-up with one message that does not show a password', () => {
  for (const [value, re] of [
    ['main=mysql://u:hunter2@h/db', /database "main": expected postgres:\/\//],
    ['=duckdb', /expected NAME=postgres/],
    ['a=duckdb,a=duckdb', /named twice/],
    ['bad name=duckdb', /expected NAME=/],
    ['main=postgres://u:hunter2@[bad', /database "main"/],
  ] as const) {
    assert.throws(
      () => connectorConfig(base, { RELAY_DATABASES: value }),
      (e: Error) => e instanceof ConfigError && re.test(e.message) && !e.message.includes('hunter2'),
      value,
    );
  }
  assert.throws(() => connectorConfig(base, { RELAY_SQL_TIMEOUT_S: '0' }), ConfigError);
  assert.throws(() => connectorConfig(base, { RELAY_DUCKDB_MEMORY_LIMIT: 'lots' }), ConfigError);
});
