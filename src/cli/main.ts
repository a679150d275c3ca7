// The `relay` command: one file per sub-command, each exporting register(program).
import { Command } from 'commander';
import { readFileSync } from 'node:fs';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('relay')
  .description('Run commands on on-premise connectors and get the results back fast and intact')
  .version(pkg.version)
  .showHelpAfterError();

// Only the module of the command being run is loaded (the router's and the connector's pull in
// bullmq, minio, DuckDB, pg...: ~0.4 s each); help and unknown commands load them all.
const modules: Record<string, string> = {
  router: './router.js',
  connector: './connector.js',
  'request-sync': './request.js',
  'request-stream': './request.js',
  'request-offload': './request.js',
  admin: './admin.js',
  demo: './demo.js',
  'sample-data': './sample-data.js',
  status: './status.js',
};
const sub = process.argv[2];
// `relay --version` needs none of them (1.6 s with all loaded, 0.15 s without).
const wanted = sub === '--version' || sub === '-V' ? [] : sub !== undefined && Object.hasOwn(modules, sub) ? [modules[sub]!] : [...new Set(Object.values(modules))];
for (const m of wanted) ((await import(m)) as { register(p: Command): void }).register(program);

await program.parseAsync(process.argv);
