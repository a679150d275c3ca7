// `relay demo`: registered here; what it runs is in demo-run.ts, loaded only when it runs (it
// pulls in apache-arrow, ioredis and the client: ~0.45 s that `relay --help` need not pay).
import type { Command } from 'commander';

export function register(program: Command): void {
  program
    .command('demo')
    .description('run the whole data path locally: router + connector + a 100 MB CSV in each mode (needs Redis: RELAY_REDIS_URL)')
    .option('--dir <dir>', 'working directory for data, object store and results', '.relay/demo')
    .option('--big-csv-bytes <n>', 'size of the big CSV', String(100 * 1024 * 1024))
    .action(async (o: { dir: string; bigCsvBytes: string }) => (await import('./demo-run.js')).runDemo(o));
}
