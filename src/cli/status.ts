// `relay status`: the fleet at a glance — connectors (online, last seen, version, in flight)
// and, with the admin secret, the command queue's job counts.
import type { Command } from 'commander';
import { statusConfig } from '../config.js';
import { closeHttp, listConnectors, queueCounts } from '../client/index.js';
import type { ConnectorInfo, QueueCounts } from '../protocol/index.js';
import { exitWithError } from './fail.js';

function ago(iso: string | null, now: number): string {
  if (!iso) return 'never';
  const s = Math.max(0, Math.round((now - Date.parse(iso)) / 1000));
  if (s < 120) return `${s}s ago`;
  if (s < 7200) return `${Math.round(s / 60)}m ago`;
  if (s < 172_800) return `${Math.round(s / 3600)}h ago`;
  return `${Math.round(s / 86_400)}d ago`;
}

export function formatStatus(connectors: ConnectorInfo[], queue: QueueCounts | null, now = Date.now()): string {
  const rows = [
    ['CONNECTOR', 'TENANT', 'ONLINE', 'LAST SEEN', 'VERSION', 'IN FLIGHT'],
    ...connectors.map((c) => [c.connector_id, c.tenant, c.online ? 'yes' : 'no', c.last_seen ? `${c.last_seen} (${ago(c.last_seen, now)})` : 'never', c.version ?? '-', String(c.in_flight)]),
  ];
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  const lines = rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i]!))).join('  ').trimEnd());
  const online = connectors.filter((c) => c.online).length;
  lines.push('', `${connectors.length} connector${connectors.length === 1 ? '' : 's'}, ${online} online, ${connectors.reduce((n, c) => n + c.in_flight, 0)} requests in flight`);
  if (queue) lines.push(`queue ${queue.queue}: waiting ${queue.waiting}, active ${queue.active}, delayed ${queue.delayed}, failed ${queue.failed}, completed ${queue.completed}`);
  else lines.push('queue counts need the admin secret (RELAY_ADMIN_TOKEN)');
  return `${lines.join('\n')}\n`;
}

export function register(program: Command): void {
  program
    .command('status')
    .description('show connectors (online, last seen, version, in flight) and the command queue; uses RELAY_ADMIN_TOKEN if set, else the client key')
    .option('--router <url>', 'router URL (RELAY_ROUTER_URL)')
    .option('--key <key>', 'client key instead of the admin secret (RELAY_API_KEY): its tenant only, no queue counts')
    .option('--json', 'print {"connectors": [...], "queue": {...}|null} as JSON')
    .action(async (opts: Record<string, unknown>) => {
      try {
        const cfg = statusConfig(opts);
        const [connectors, queue] = await Promise.all([listConnectors(cfg), cfg.admin ? queueCounts(cfg) : Promise.resolve(null)]);
        process.stdout.write(opts.json ? `${JSON.stringify({ connectors, queue }, null, 2)}\n` : formatStatus(connectors, queue));
        await closeHttp();
      } catch (err) {
        await closeHttp();
        exitWithError(err);
      }
    });
}
