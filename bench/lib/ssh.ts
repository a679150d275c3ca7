// The `ssh -R` baseline: a throwaway sshd on a loopback port (own config, host key and
// authorized_keys in a temp dir, nothing of the system's touched) and an `ssh -N -R` tunnel to
// it, as someone would expose an on-prem file server without Relay.
// scripts/bench.sh installs openssh-server (scripts/lib/ssh.sh); without sshd these rows are skipped.
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdir, writeFile, readFile } from 'node:fs/promises';
import net from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { spawnChild, type Child } from './children.js';

const exec = promisify(execFile);
export const SSHD = process.env.RELAY_BENCH_SSHD ?? '/usr/sbin/sshd';

export function sshAvailable(): string | null {
  if (!existsSync(SSHD)) return `sshd not installed (${SSHD}; scripts/bench.sh installs openssh-server)`;
  return null;
}

export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

export async function waitForPort(port: number, ms: number, what: string, alive?: Child): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    const ok = await new Promise<boolean>((r) => {
      const c = net.connect(port, '127.0.0.1');
      c.once('connect', () => {
        c.destroy();
        r(true);
      });
      c.once('error', () => r(false));
    });
    if (ok) return;
    if (alive && alive.child.exitCode !== null) break;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`${what}: port ${port} not open within ${ms} ms${alive ? `:\n${alive.lines.slice(-10).join('\n')}` : ''}`);
}

export class Sshd {
  private constructor(
    readonly proc: Child,
    readonly port: number,
    private readonly dir: string,
  ) {}

  get pid(): number {
    return this.proc.pid;
  }

  static async start(dir: string): Promise<Sshd> {
    await mkdir(dir, { recursive: true });
    const hostKey = join(dir, 'host_ed25519');
    const userKey = join(dir, 'user_ed25519');
    if (!existsSync(hostKey)) await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', hostKey]);
    if (!existsSync(userKey)) await exec('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', userKey]);
    await writeFile(join(dir, 'authorized_keys'), await readFile(`${userKey}.pub`));
    // Privilege separation needs this runtime directory (Debian's service creates it at boot).
    if (process.getuid?.() === 0) await mkdir('/run/sshd', { recursive: true, mode: 0o755 }).catch(() => undefined);
    const port = await freePort();
    const config = join(dir, 'sshd_config');
    await writeFile(
      config,
      [
        `Port ${port}`,
        'ListenAddress 127.0.0.1',
        `HostKey ${hostKey}`,
        `PidFile ${join(dir, 'sshd.pid')}`,
        `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
        'StrictModes no',
        'PermitRootLogin prohibit-password',
        'PubkeyAuthentication yes',
        'PasswordAuthentication no',
        'KbdInteractiveAuthentication no',
        'UsePAM no',
        'AllowTcpForwarding yes',
        'GatewayPorts no',
        'X11Forwarding no',
        'PrintMotd no',
        'LogLevel ERROR',
        '',
      ].join('\n'),
    );
    const proc = spawnChild(SSHD, ['-D', '-e', '-f', config]);
    await waitForPort(port, 10_000, 'sshd', proc).catch(async (err: unknown) => {
      await proc.stop();
      throw err;
    });
    return new Sshd(proc, port, dir);
  }

  /**
   * `ssh -N -R <port>:127.0.0.1:<localPort>` through `viaPort` (default: straight to sshd; a
   * shaping proxy in front of it for the WAN case). Resolves once the forwarded port accepts.
   */
  async tunnel(localPort: number, viaPort = this.port): Promise<{ port: number; proc: Child }> {
    const port = await freePort();
    const proc = spawnChild('ssh', [
      '-F', '/dev/null',
      '-N',
      '-o', 'BatchMode=yes',
      '-o', 'StrictHostKeyChecking=no',
      '-o', 'UserKnownHostsFile=/dev/null',
      '-o', 'ExitOnForwardFailure=yes',
      '-o', 'LogLevel=ERROR',
      '-i', join(this.dir, 'user_ed25519'),
      '-p', String(viaPort),
      '-R', `${port}:127.0.0.1:${localPort}`,
      `${userInfo().username}@127.0.0.1`,
    ]);
    await waitForPort(port, 15_000, 'ssh -R tunnel', proc).catch(async (err: unknown) => {
      await proc.stop();
      throw err;
    });
    return { port, proc };
  }

  stop(): Promise<void> {
    return this.proc.stop();
  }
}
