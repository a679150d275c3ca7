// The `relay` command: one file per sub-command, each exporting register(program).
import { Command } from 'commander';
import { readFileSync } from 'node:fs';
import v8 from 'node:v8';
import { SERVICE_COMMANDS } from './node-flags.js';

const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('relay')
  .description('Run commands on on-premise connectors and get the results back fast and intact')
  .version(pkg.version)
  .showHelpAfterError();

// Only the module of the command being run is loaded; help and unknown commands load them all
// (each is light: the router's, connector's, admin's and demo's heavy modules, bullmq, minio,
// DuckDB, pg..., are imported when the command runs).
// The request commands' module is imported by a literal path: scripts/bundle-cli.mjs bundles it
// with this file (bin/relay.js runs the bundle). The others are imported by a computed path, so
// they stay the modules tsc wrote (they find files relative to themselves).
type Register = { register(p: Command): void };
const request = (): Promise<Register> => import('./request.js');
const modules: Record<string, string | (() => Promise<Register>)> = {
  router: './router.js',
  connector: './connector.js',
  'request-sync': request,
  'request-stream': request,
  'request-offload': request,
  admin: './admin.js',
  demo: './demo.js',
  'sample-data': './sample-data.js',
  status: './status.js',
};
const sub = process.argv[2];

// A command that runs for a moment (a request, a look-up) gains little from V8's optimizing
// compiler and pays for it: the compiling runs on the same 2 cores as the transfer. So its
// WebAssembly stays unoptimized (undici's HTTP parser is WebAssembly; V8 optimized its largest
// function on a background thread, 161 ms of CPU and 42 MB, and the process waited for that
// before it could exit: `relay request-stream` of 1 KB 0.71-0.80 → 0.37-0.41 s at 10^8; 10^8
// still tiered up during a 100 MB download, 2·10^9 does not), and JavaScript is optimized only
// once it has run 4× longer than V8's default (a download of hundreds of MB gets its per-read
// code optimized; a 100 MB one mostly does not). `relay request-stream` of the 100 MB CSV,
// 8 interleaved pairs on a warm stack: 0.87-1.13 s and 0.64-0.85 s of CPU, against 1.02-1.30 s
// and 0.90-1.17 s with the earlier budget of 10^8 and V8's own interrupt budget.
// The services (router, connector) and the demo run long: V8's defaults for WebAssembly...
const LONG_RUNNING = new Set([...SERVICE_COMMANDS, 'demo']);
if (sub === undefined || !LONG_RUNNING.has(sub)) v8.setFlagsFromString('--wasm-tiering-budget=2000000000 --interrupt-budget=262144');
// ...and JavaScript optimized sooner. Their hot code runs once per chunk (a POST, a socket
// write, a Redis reply), and with V8's interrupt budget (66 KB of bytecode run per tick, 3
// ticks) a function run once per chunk was optimized only after 1,000-2,000 chunks: a fresh
// router and connector took ~1 GB of results to reach their speed (traced with --trace-opt:
// functions still being optimized in the tenth 100 MB stream). With 8 KB, 4 interleaved pairs of
// 12 streams of 100 MB on a fresh stack: streams 5-8 at 338-395 ms against 396-510 ms, router CPU
// 0.21-0.24 against 0.27-0.34 s per stream; the first 4 cost a little more CPU (more compiling).
else v8.setFlagsFromString('--interrupt-budget=8192');
// `relay --version` needs none of them (1.6 s with all loaded, 0.15 s without).
const wanted = sub === '--version' || sub === '-V' ? [] : sub !== undefined && Object.hasOwn(modules, sub) ? [modules[sub]!] : [...new Set(Object.values(modules))];
for (const m of wanted) (typeof m === 'string' ? ((await import(m)) as Register) : await m()).register(program);

await program.parseAsync(process.argv);
