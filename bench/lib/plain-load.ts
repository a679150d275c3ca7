// The baselines of the request-rate scenarios (small, seed): the same closed-loop load, with the
// same checks on every answer, against the plain node:http file server over the same data
// directory, straight and through an `ssh -R` tunnel (what someone would put in front of an
// on-prem server instead of Relay). The relay rows of those tables are read against these.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { xxh64 } from '../../src/protocol/checksum.js';
import type { BenchContext } from './context.js';
import { closedLoop, type LoadResult } from './load.js';
import { cpuMeter, selfCpu, treeCpu } from './procs.js';
import { Sshd, sshAvailable } from './ssh.js';
import { fmt } from './stats.js';

export interface PlainRun {
  name: 'node:http' | 'ssh -R ← node:http';
  /** Null when skipped (no sshd). */
  result: LoadResult | null;
  skipped?: string;
  /** CPU seconds over the measured window: sshd and its children (ssh -R only), the file server plus the ssh client, this process. */
  cpu: { tunnelServer: number | null; fileServer: number | null; loadGenerator: number };
}

export interface PlainLoad {
  workers: number;
  /** Warm-up first (connections, JIT), then the measured run: for a duration or a count. */
  warm: { durationS?: number; count?: number };
  measure: { durationS?: number; count?: number };
}

/** Runs `load` on `dataset` (a path in the bench's data directory) straight from node:http, then through ssh -R. */
export async function plainLoads(ctx: BenchContext, dataset: string, load: PlainLoad): Promise<PlainRun[]> {
  const files = await ctx.fileServer();
  const data = await readFile(join(ctx.dataDir, dataset));
  const req = () => ({ path: `/${dataset}`, expectBytes: data.length, expectChecksum: xxh64(data) });
  const run = async (name: PlainRun['name'], port: number, sshd: Sshd | null, sshClientPid?: number): Promise<PlainRun> => {
    const origin = `http://127.0.0.1:${port}`;
    await closedLoop(origin, { workers: load.workers, ...load.warm, next: req });
    const meter = await cpuMeter({ files: files.pid, ssh: sshClientPid });
    const tunnel0 = sshd ? await treeCpu(sshd.pid) : null;
    const self0 = selfCpu();
    ctx.log(`${name}: ${load.workers} workers`);
    const result = await closedLoop(origin, { workers: load.workers, ...load.measure, next: req });
    const cpu = await meter();
    const tunnel1 = sshd ? await treeCpu(sshd.pid) : null;
    return {
      name,
      result,
      cpu: {
        tunnelServer: tunnel0 !== null && tunnel1 !== null ? tunnel1 - tunnel0 : null,
        fileServer: cpu.files === null ? null : cpu.files! + (cpu.ssh ?? 0),
        loadGenerator: selfCpu() - self0,
      },
    };
  };
  const out = [await run('node:http', files.info.port, null)];
  const noSsh = sshAvailable();
  if (noSsh) {
    out.push({ name: 'ssh -R ← node:http', result: null, skipped: noSsh, cpu: { tunnelServer: null, fileServer: null, loadGenerator: 0 } });
    return out;
  }
  const sshd = await Sshd.start(join(ctx.work, 'ssh-load'));
  try {
    const tunnel = await sshd.tunnel(files.info.port);
    try {
      out.push(await run('ssh -R ← node:http', tunnel.port, sshd, tunnel.proc.pid));
    } finally {
      await tunnel.proc.stop();
    }
  } finally {
    await sshd.stop();
  }
  return out;
}

export const reqPerS = (x: LoadResult): number => x.ok / x.seconds;

/** A relay result's req/s as "× ssh -R" against these baselines ('-' without the tunnel row). */
export function timesTunnel(plain: PlainRun[], x: LoadResult): string {
  const tunnel = plain.find((p) => p.name === 'ssh -R ← node:http')?.result;
  return tunnel ? fmt(reqPerS(x) / reqPerS(tunnel), 2) : '-';
}
