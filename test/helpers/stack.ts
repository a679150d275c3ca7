// Test stack: real Redis (RELAY_REDIS_URL, started by scripts/test.sh), a real router process
// with its embedded S3 store, real connector processes, all on loopback.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtemp, mkdir, writeFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { nodeFlagsFor } from '../../src/cli/node-flags.js';
import { addClient, addConnector, addTenant } from '../../src/router/auth.js';
import { connectRedis, type Redis } from '../../src/router/redis.js';
import { reapOnExit } from './reap.js';

export const REPO = resolve(import.meta.dirname, '../../..');
export const BIN = join(REPO, 'bin/relay.js');
export const REDIS_URL = process.env.RELAY_REDIS_URL ?? 'redis://127.0.0.1:6390';
export const CHUNK = 512 * 1024;

export interface Proc {
  child: ChildProcess;
  lines: string[];
  exited: Promise<number | null>;
}

/** Extra node flags for every relay process started here, e.g. `--cpu-prof --cpu-prof-dir=DIR` (profiling a benchmark). */
export const NODE_ARGS = (process.env.RELAY_TEST_NODE_ARGS ?? '').split(' ').filter(Boolean);

/** Runs `relay ARGS`; the router and the connector with the node flags they are deployed with. */
export function run(args: string[], env: Record<string, string> = {}): Proc {
  const child = spawn(process.execPath, [...nodeFlagsFor(args[0]), ...NODE_ARGS, BIN, ...args], {
    env: { ...process.env, RELAY_LOG_JSON: '1', RELAY_LOG_LEVEL: process.env.RELAY_TEST_LOG_LEVEL ?? 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines: string[] = [];
  for (const s of [child.stdout!, child.stderr!]) createInterface({ input: s }).on('line', (l) => {
    lines.push(l);
    if (lines.length > 5000) lines.shift();
    if (process.env.RELAY_TEST_VERBOSE) process.stderr.write(`[${args[0]}] ${l}\n`);
  });
  const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
  // A test process that dies must not leave routers behind: they would take the next run's jobs.
  reapOnExit(child);
  return { child, lines, exited };
}

async function waitForLine(p: Proc, re: RegExp, ms: number): Promise<string> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const hit = p.lines.find((l) => re.test(l));
    if (hit) return hit;
    if (p.child.exitCode !== null) break;
    await sleep(50);
  }
  throw new Error(`timed out waiting for ${re} in:\n${p.lines.slice(-30).join('\n')}`);
}

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface StackOptions {
  routerEnv?: Record<string, string>;
  connectorEnv?: Record<string, string>;
  connector?: boolean;
  /** A Redis of the test's own (default: RELAY_REDIS_URL). */
  redisUrl?: string;
}

export class Stack {
  router!: Proc;
  routerUrl!: string;
  connector: Proc | null = null;
  /** Further router instances on the same Redis (startPeerRouter). */
  readonly peers: Proc[] = [];
  readonly tenant = 't1';
  readonly connectorId = 'cc-28-aa-01';
  readonly connectorToken = `ct_test_${randomBytes(8).toString('hex')}`;
  readonly clientKey = `rk_test_${randomBytes(8).toString('hex')}`;
  readonly otherClientKey = `rk_other_${randomBytes(8).toString('hex')}`;
  readonly otherConnectorId = 'cc-28-bb-02';
  readonly otherConnectorToken = `ct_other_${randomBytes(8).toString('hex')}`;
  readonly adminToken = `admin_${randomBytes(12).toString('hex')}`;

  private constructor(
    readonly redis: Redis,
    readonly dir: string,
    readonly dataDir: string,
    private readonly opts: StackOptions,
  ) {}

  static async start(opts: StackOptions = {}): Promise<Stack> {
    const dir = await mkdtemp(join(tmpdir(), 'relay-test-'));
    const dataDir = join(dir, 'data');
    await mkdir(dataDir);
    const redis = connectRedis(opts.redisUrl ?? REDIS_URL, 'test');
    await redis.flushdb();
    const s = new Stack(redis, dir, dataDir, opts);
    await addTenant(redis, s.tenant);
    await addTenant(redis, 't2');
    await addConnector(redis, s.tenant, s.connectorId, s.connectorToken);
    await addClient(redis, s.tenant, s.clientKey);
    await addClient(redis, 't2', s.otherClientKey);
    await addConnector(redis, 't2', s.otherConnectorId, s.otherConnectorToken);
    try {
      await s.startRouter();
      if (opts.connector !== false) await s.startConnector();
    } catch (err) {
      // Never leave a half-started stack behind: a stray router would take this Redis's jobs.
      await s.stop().catch(() => undefined);
      throw err;
    }
    return s;
  }

  /** Stops the router (SIGKILL: a crash) and starts it again on the same port. */
  async restartRouter(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const port = new URL(this.routerUrl).port;
    this.router.child.kill(signal);
    await this.router.exited;
    await this.startRouter(port);
  }

  async startRouter(port = '0'): Promise<void> {
    const { proc, url } = await this.launchRouter({ RELAY_PORT: port, RELAY_S3_DIR: join(this.dir, 's3') });
    this.router = proc;
    this.routerUrl = url;
  }

  /**
   * Another router instance on the same Redis and object store, as behind a load balancer:
   * its URL. Stopped with the stack.
   */
  async startPeerRouter(env: Record<string, string> = {}): Promise<{ proc: Proc; url: string }> {
    // The stack's store, or else the first router's embedded one (s3rver knows one fixed key pair).
    const store: Record<string, string> = this.opts.routerEnv?.RELAY_S3_ENDPOINT ? {} : { RELAY_S3_ENDPOINT: this.s3Endpoint(), RELAY_S3_ACCESS_KEY: 'S3RVER', RELAY_S3_SECRET_KEY: 'S3RVER' };
    const peer = await this.launchRouter({ RELAY_PORT: '0', ...store }, env);
    this.peers.push(peer.proc);
    return peer;
  }

  /** A router on this stack's Redis, once it listens (killed if it does not). `over` wins over the stack's routerEnv. */
  private async launchRouter(env: Record<string, string>, over: Record<string, string> = {}): Promise<{ proc: Proc; url: string }> {
    const proc = run(['router'], { RELAY_HOST: '127.0.0.1', RELAY_REDIS_URL: this.opts.redisUrl ?? REDIS_URL, RELAY_ADMIN_TOKEN: this.adminToken, ...env, ...this.opts.routerEnv, ...over });
    const line = await waitForLine(proc, /router listening/, 20_000).catch((err: unknown) => {
      proc.child.kill('SIGKILL');
      throw err;
    });
    return { proc, url: (JSON.parse(line) as { url: string }).url };
  }

  /** The first router's embedded object store (from its start-up warning). */
  s3Endpoint(): string {
    for (const line of this.router.lines) {
      const endpoint = /embedded S3/.test(line) ? (JSON.parse(line) as { endpoint?: string }).endpoint : undefined;
      if (endpoint) return endpoint;
    }
    throw new Error('the router runs no embedded object store');
  }

  /** via: the URL the connector uses for the router (a fault proxy in front of it). */
  async startConnector(env: Record<string, string> = {}, via = this.routerUrl): Promise<Proc> {
    // A second one with the same id would take the event stream from the first, which reconnects
    // and takes it back, and stop() would not know the first: both would serve commands, each
    // with its own CPU, and the first would outlive the stack.
    if (this.connector && this.connector.child.exitCode === null && this.connector.child.signalCode === null) {
      throw new Error('the stack runs a connector already: killConnector() first, or Stack.start({ connector: false })');
    }
    const p = run(['connector', '--router', via, '--id', this.connectorId, '--token', this.connectorToken, '--data-dir', this.dataDir], {
      ...this.opts.connectorEnv,
      ...env,
    });
    this.connector = p;
    await this.waitOnline(this.connectorId, true);
    return p;
  }

  async killConnector(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const p = this.connector;
    if (!p) return;
    p.child.kill(signal);
    await p.exited;
    this.connector = null;
  }

  async waitOnline(id: string, online: boolean, ms = 15_000): Promise<void> {
    const end = Date.now() + ms;
    while (Date.now() < end) {
      const list = (await (await fetch(`${this.routerUrl}/v1/connectors`, { headers: { authorization: `Bearer ${this.adminToken}` } })).json()) as { connector_id: string; online: boolean }[];
      if (list.find((c) => c.connector_id === id)?.online === online) return;
      await sleep(100);
    }
    throw new Error(`connector ${id} did not become ${online ? 'online' : 'offline'}`);
  }

  async writeData(name: string, data: Buffer | string): Promise<Buffer> {
    const buf = typeof data === 'string' ? Buffer.from(data) : data;
    const path = join(this.dataDir, name);
    await mkdir(join(path, '..'), { recursive: true });
    await writeFile(path, buf);
    return buf;
  }

  clientCfg(key = this.clientKey) {
    return { routerUrl: this.routerUrl, apiKey: key };
  }

  async stop(): Promise<void> {
    for (const p of [this.connector, ...this.peers, this.router]) {
      if (p && p.child.exitCode === null) {
        p.child.kill('SIGTERM');
        const t = setTimeout(() => p.child.kill('SIGKILL'), 5000);
        await p.exited;
        clearTimeout(t);
      }
    }
    await this.redis.quit();
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** A deterministic CSV of about `bytes` bytes. */
export function csv(bytes: number): Buffer {
  const rows: string[] = ['id,date,region,product,quantity,amount'];
  let n = rows[0]!.length + 1;
  const regions = ['north', 'south', 'east', 'west'];
  for (let i = 1; n < bytes; i++) {
    const row = `${i},2026-${String((i % 12) + 1).padStart(2, '0')}-${String((i % 28) + 1).padStart(2, '0')},${regions[i % 4]},p${i % 97},${i % 13},${((i * 7919) % 100000) / 100}`;
    rows.push(row);
    n += row.length + 1;
  }
  return Buffer.from(rows.join('\n') + '\n').subarray(0, bytes);
}
