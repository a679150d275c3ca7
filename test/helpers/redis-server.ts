// A Redis server of a test's own (Debian redis-server, installed by scripts/test.sh): AOF on,
// fsync always (or every second, as docker-compose.yml runs it), on a free loopback port, so a
// test can restart it without touching the shared one.
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:net';
import { reapOnExit } from './reap.js';

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

function pingOnce(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    let got = '';
    s.setTimeout(500, () => s.destroy());
    s.on('connect', () => s.write('PING\r\n'));
    s.on('data', (d) => {
      got += d.toString();
      if (got.includes('\r\n')) s.end();
    });
    s.on('close', () => resolve(got.startsWith('+PONG')));
    s.on('error', () => resolve(false));
  });
}

export class RedisServer {
  private child: ChildProcess | null = null;

  private constructor(
    readonly port: number,
    readonly dir: string,
    private readonly fsync: 'always' | 'everysec',
  ) {}

  static async start(opts: { fsync?: 'always' | 'everysec' } = {}): Promise<RedisServer> {
    const r = new RedisServer(await freePort(), await mkdtemp(join(tmpdir(), 'relay-redis-')), opts.fsync ?? 'always');
    await r.up();
    return r;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  private async up(): Promise<void> {
    this.child = spawn('redis-server', ['--port', String(this.port), '--bind', '127.0.0.1', '--dir', this.dir, '--appendonly', 'yes', '--appendfsync', this.fsync, '--maxmemory-policy', 'noeviction', '--save', ''], { stdio: 'ignore' });
    reapOnExit(this.child);
    const end = Date.now() + 10_000;
    while (Date.now() < end) {
      if (await pingOnce(this.port)) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    throw new Error(`redis-server on ${this.port} did not answer PING`);
  }

  /** Stops the server (SIGTERM: AOF flushed; SIGKILL: a crash) and starts it again after `downMs`. */
  async restart(signal: NodeJS.Signals = 'SIGTERM', downMs = 1000): Promise<void> {
    await this.down(signal);
    await new Promise((r) => setTimeout(r, downMs));
    await this.up();
  }

  private async down(signal: NodeJS.Signals): Promise<void> {
    const c = this.child;
    if (!c || c.exitCode !== null) return;
    const exited = new Promise((r) => c.once('exit', r));
    c.kill(signal);
    await exited;
  }

  async stop(): Promise<void> {
    await this.down('SIGTERM');
    await rm(this.dir, { recursive: true, force: true });
  }
}
