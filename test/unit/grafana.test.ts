// docs/grafana-dashboard.json stays in step with the metrics the code exports: every metric a
// panel queries exists, and every metric we define is on some panel.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { createConnectorMetrics } from '../../src/connector/metrics.js';
import { createMetrics } from '../../src/router/metrics.js';

const root = new URL('../../../', import.meta.url);
const dashboard = JSON.parse(readFileSync(new URL('docs/grafana-dashboard.json', root), 'utf8')) as {
  uid: string;
  panels: { id: number; type: string; title: string; targets?: { expr: string }[] }[];
};

const names = async (registry: { getMetricsAsJSON(): Promise<{ name: string }[]> }) => (await registry.getMetricsAsJSON()).map((m) => m.name);

test('the dashboard queries only metrics that exist, and shows every Relay metric', async () => {
  const router = await names(createMetrics().registry);
  const connector = await names(createConnectorMetrics(() => ({ running: 0, queued: 0, connected: false })).registry);
  const known = new Set([...router, ...connector]);
  const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
  assert.ok(exprs.length > 20);
  const used = new Set(exprs.flatMap((e) => [...e.matchAll(/\brelay_[a-z0-9_]+/g)].map((m) => m[0].replace(/_(bucket|count|sum)$/, ''))));
  assert.deepEqual([...used].filter((n) => !known.has(n)), [], 'queried but not exported');
  // Process metrics (prom-client defaults) are optional on the dashboard; ours are not.
  const ours = [...known].filter((n) => !n.startsWith('relay_router_') && !/^relay_connector_(process|nodejs)_/.test(n));
  assert.deepEqual(ours.filter((n) => !used.has(n)), [], 'exported but on no panel');
});

test('panel ids are unique and every panel has a title', () => {
  const ids = dashboard.panels.map((p) => p.id);
  assert.equal(new Set(ids).size, ids.length);
  for (const p of dashboard.panels) assert.ok(p.title, `panel ${p.id} has a title`);
  assert.equal(dashboard.uid, 'relay-overview');
});
