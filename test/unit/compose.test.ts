// The production docker-compose.yml cannot be started here (no Docker engine): these checks parse
// it and hold it to the rules in docs/operations.md.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { parse } from 'yaml';
import { SERVICE_NODE_FLAGS } from '../../src/cli/node-flags.js';

const root = new URL('../../../', import.meta.url); // dist/test/unit → repo root
const read = (path: string) => readFileSync(new URL(path, root), 'utf8');

interface Service {
  image?: string;
  build?: unknown;
  command?: string | string[];
  environment?: Record<string, string | number | null> | string[];
  depends_on?: string[] | Record<string, { condition?: string }>;
  healthcheck?: { test?: string | string[]; disable?: boolean };
  volumes?: string[];
  ports?: string[];
}
const compose = parse(read('docker-compose.yml')) as { services: Record<string, Service>; volumes?: Record<string, unknown> };
const services = compose.services;

const envNames = (s: Service): string[] =>
  Array.isArray(s.environment) ? s.environment.map((e) => e.split('=')[0]!) : Object.keys(s.environment ?? {});
const env = (s: Service): Record<string, string> =>
  Array.isArray(s.environment)
    ? Object.fromEntries(s.environment.map((e) => [e.slice(0, e.indexOf('=')), e.slice(e.indexOf('=') + 1)]))
    : Object.fromEntries(Object.entries(s.environment ?? {}).map(([k, v]) => [k, String(v ?? '')]));
const commandText = (s: Service) => (Array.isArray(s.command) ? s.command.join(' ') : (s.command ?? ''));

test('has the expected services', () => {
  for (const name of ['redis', 'minio', 'minio-init', 'router', 'connector', 'prometheus']) assert.ok(services[name], `service ${name}`);
});

test('every long-running service has a healthcheck; minio-init is one-shot', () => {
  for (const [name, s] of Object.entries(services)) {
    if (name === 'minio-init') {
      assert.equal(s.healthcheck, undefined);
      continue;
    }
    assert.ok(s.healthcheck?.test && !s.healthcheck.disable, `${name} has a healthcheck`);
  }
  assert.match(JSON.stringify(services.minio!.healthcheck!.test), /\/minio\/health\/live/);
  assert.match(JSON.stringify(services.router!.healthcheck!.test), /\/healthz/);
  assert.match(JSON.stringify(services.redis!.healthcheck!.test), /redis-cli ping/);
});

test('redis keeps its data: AOF on, noeviction, a volume', () => {
  const cmd = commandText(services.redis!);
  assert.match(cmd, /--appendonly yes/);
  assert.match(cmd, /--maxmemory-policy noeviction/);
  assert.ok(services.redis!.volumes?.some((v) => v.endsWith(':/data')));
});

test('router waits for healthy redis and minio, and for the bucket set-up', () => {
  const deps = services.router!.depends_on;
  assert.ok(deps && !Array.isArray(deps), 'depends_on with conditions');
  assert.equal(deps.redis?.condition, 'service_healthy');
  assert.equal(deps.minio?.condition, 'service_healthy');
  assert.equal(deps['minio-init']?.condition, 'service_completed_successfully');
});

test('router and connector are wired to each other, Redis and MinIO', () => {
  const r = env(services.router!);
  assert.equal(r.RELAY_REDIS_URL, 'redis://redis:6379');
  assert.equal(r.RELAY_S3_ENDPOINT, 'http://minio:9000');
  for (const k of ['RELAY_PORT', 'RELAY_S3_ACCESS_KEY', 'RELAY_S3_SECRET_KEY', 'RELAY_S3_BUCKET', 'RELAY_S3_PUBLIC_ENDPOINT', 'RELAY_ADMIN_TOKEN']) {
    assert.ok(k in r, `router sets ${k}`);
  }
  assert.match(commandText(services.router!), /^router$/);
  assert.ok(services.router!.ports?.some((p) => String(p).endsWith(':8080')));

  const c = env(services.connector!);
  assert.equal(c.RELAY_ROUTER_URL, 'http://router:8080');
  assert.equal(c.RELAY_DATA_DIR, '/data');
  for (const k of ['RELAY_CONNECTOR_ID', 'RELAY_CONNECTOR_TOKEN']) assert.ok(k in c, `connector sets ${k}`);
  assert.ok(services.connector!.volumes?.includes('./data:/data:ro'));
  assert.match(commandText(services.connector!), /^connector$/);
});

test('minio-init makes the bucket private with a 1-day expiry', () => {
  const script = commandText(services['minio-init']!);
  assert.match(script, /mc mb --ignore-existing/);
  assert.match(script, /mc anonymous set none/);
  assert.match(script, /mc ilm rule add --expire-days 1/);
  assert.equal(env(services['minio-init']!).RELAY_S3_BUCKET, '${RELAY_S3_BUCKET:-relay-results}');
});

test('every RELAY_* variable the compose file uses is read by src/config.ts', () => {
  const config = read('src/config.ts');
  const used = new Set<string>();
  for (const s of Object.values(services)) for (const n of envNames(s)) if (n.startsWith('RELAY_')) used.add(n);
  for (const m of read('docker-compose.yml').matchAll(/\bRELAY_[A-Z0-9_]+/g)) used.add(m[0]);
  assert.ok(used.size > 10);
  const unknown = [...used].filter((n) => !config.includes(`'${n}'`));
  assert.deepEqual(unknown, [], 'variables not read by src/config.ts');
});

test('prometheus scrapes the router', () => {
  assert.ok(services.prometheus!.volumes?.some((v) => v.startsWith('./deploy/prometheus.yml:')));
  const prom = parse(read('deploy/prometheus.yml')) as { scrape_configs: { metrics_path?: string; static_configs: { targets: string[] }[] }[] };
  const router = prom.scrape_configs.find((c) => c.static_configs.some((s) => s.targets.includes('router:8080')));
  assert.ok(router, 'a job targets router:8080');
  assert.equal(router.metrics_path ?? '/metrics', '/metrics');
});

test('the Dockerfile builds the addon and runs bin/relay.js with the service node flags', () => {
  const df = read('Dockerfile');
  assert.match(df, /FROM node:20-bookworm-slim AS build/);
  assert.match(df, /libzstd-dev/);
  assert.match(df, /npm ci/);
  assert.match(df, /libzstd1/);
  assert.ok(df.includes(`ENTRYPOINT [${['node', ...SERVICE_NODE_FLAGS, '/app/bin/relay.js'].map((a) => JSON.stringify(a)).join(', ')}]`), 'node, the service flags, bin/relay.js');
});

test('prometheus scrapes the co-located connector on its metrics port', () => {
  const c = env(services.connector!);
  assert.equal(c.RELAY_METRICS_HOST, '0.0.0.0');
  const prom = parse(read('deploy/prometheus.yml')) as { scrape_configs: { job_name: string; static_configs: { targets: string[] }[] }[] };
  const job = prom.scrape_configs.find((j) => j.job_name === 'relay-connector');
  assert.ok(job?.static_configs.some((s) => s.targets.includes(`connector:${c.RELAY_METRICS_PORT}`)), 'a job targets connector:RELAY_METRICS_PORT');
});

test('the image carries the web pages', () => {
  const df = read('Dockerfile');
  assert.match(df, /COPY web \.\/web/);
  assert.match(df, /COPY --from=build \/app\/dist\/web \.\/dist\/web/);
  assert.match(df, /COPY --from=build \/app\/web \.\/web/);
});

// Where Docker is installed, its own parser must accept the file too.
const docker = spawnSync('docker', ['compose', 'version'], { encoding: 'utf8' });
test('docker compose config accepts the file', { skip: docker.status === 0 ? false : 'no docker compose on this machine (the checks above parse the file with the yaml package instead)' }, () => {
  const env: Record<string, string> = { ...process.env } as Record<string, string>;
  for (const k of ['MINIO_ROOT_USER', 'MINIO_ROOT_PASSWORD', 'RELAY_S3_ACCESS_KEY', 'RELAY_S3_SECRET_KEY', 'RELAY_S3_PUBLIC_ENDPOINT', 'RELAY_ADMIN_TOKEN', 'RELAY_CONNECTOR_ID', 'RELAY_CONNECTOR_TOKEN']) env[k] ??= 'placeholder-value-123';
  const r = spawnSync('docker', ['compose', '-f', new URL('docker-compose.yml', root).pathname, 'config', '-q'], { encoding: 'utf8', env });
  assert.equal(r.status, 0, r.stderr);
});
