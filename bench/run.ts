// `npm run bench [-- --quick] [--only a,b] [--runs N] [--record] [--note TEXT]`: the benchmark
// suite. Each scenario (bench/scenarios/*.ts) starts what it needs (a real router and
// connectors on loopback, Redis from RELAY_REDIS_URL, which scripts/bench.sh provides; the
// object store and the baselines' servers in helper processes), measures its cases and the
// baselines they are judged against in the same run, and prints its tables with each target and
// whether it is met. Every scenario has a time budget: past it the run stops (exit 3), and every
// process it started goes with it.
//
//   --quick    a subset in ≤ 2 minutes: one run per case, smaller counts
//   --only     run these scenarios (comma-separated): bulk, wan, small, seed, fleet, memory
//   --runs N   runs per measured case (default 3, quick 1); tables show medians
//   --record   append the tables, dated, with the machine and its load average, to bench/RESULTS.md
//   --note     a line for the recorded section (e.g. what else was running)
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { REPO } from '../test/helpers/stack.js';
import { BenchContext, loadAverage, machine, type Scenario } from './lib/context.js';
import { renderTable, type Table } from './lib/table.js';
import { bulk } from './scenarios/bulk.js';
import { fleet } from './scenarios/fleet.js';
import { memory } from './scenarios/memory.js';
import { seed } from './scenarios/seed.js';
import { small } from './scenarios/small.js';
import { wan } from './scenarios/wan.js';

export const SCENARIOS: Scenario[] = [bulk, wan, small, seed, fleet, memory];

const { values: args } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    runs: { type: 'string' },
    only: { type: 'string', multiple: true },
    record: { type: 'boolean', default: false },
    note: { type: 'string' },
    help: { type: 'boolean', default: false },
  },
});

function usage(): string {
  return [
    'usage: npm run bench -- [--quick] [--only NAME[,NAME]] [--runs N] [--record] [--note TEXT]',
    '',
    'scenarios:',
    ...SCENARIOS.map((s) => `  ${s.name.padEnd(8)} ${s.summary}${s.quick ? '' : ' (not in --quick)'}`),
  ].join('\n');
}

/** RELAY_* settings in this environment that the router and connectors inherit (not secrets, not where Redis is). */
function relaySettings(): string[] {
  return Object.entries(process.env)
    .filter(([k, v]) => k.startsWith('RELAY_') && v !== undefined && v !== '')
    .filter(([k]) => !/^RELAY_(REDIS_URL|DEV_REDIS_PORT|BENCH_|TEST_)/.test(k) && !/KEY|TOKEN|SECRET/.test(k))
    .map(([k, v]) => `${k}=${v}`)
    .sort();
}

async function main(): Promise<number> {
  if (args.help) {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  const only = args.only?.flatMap((o) => o.split(',')).map((o) => o.trim()).filter(Boolean) ?? null;
  const unknown = only?.filter((o) => !SCENARIOS.some((s) => s.name === o)) ?? [];
  if (unknown.length) {
    process.stderr.write(`bench: unknown scenario ${unknown.join(', ')}\n${usage()}\n`);
    return 2;
  }
  const runs = Number(args.runs ?? (args.quick ? 1 : 3));
  if (!Number.isInteger(runs) || runs < 1) {
    process.stderr.write('bench: --runs must be a positive integer\n');
    return 2;
  }
  const selected = SCENARIOS.filter((s) => (only ? only.includes(s.name) : !args.quick || s.quick));
  const ctx = await BenchContext.create({ quick: args.quick, runs, record: args.record });
  const loadStart = loadAverage();
  const settings = relaySettings();
  if (settings.length) ctx.log(`router and connectors inherit ${settings.join(' ')}`);
  const t0 = performance.now();
  const sections: string[] = [];
  let failed = 0;
  try {
    for (const s of selected) {
      const budget = s.budgetS[args.quick ? 1 : 0];
      ctx.log(`scenario ${s.name} (budget ${budget} s, load average ${loadAverage()})`);
      const started = performance.now();
      // A hung scenario must not hang the run: stop everything (exit hooks kill the children).
      const watchdog = setTimeout(() => {
        process.stderr.write(`bench: scenario ${s.name} exceeded its ${budget} s budget; stopping\n`);
        process.exit(3);
      }, budget * 1000);
      try {
        await s.run(ctx, (t: Table) => {
          const text = renderTable(t);
          process.stdout.write(`\n${text}\n`);
          sections.push(text);
        });
      } catch (err) {
        failed++;
        const msg = err instanceof Error ? (err.stack ?? err.message) : String(err);
        process.stderr.write(`bench: scenario ${s.name} failed: ${msg}\n`);
        sections.push(`### ${s.name}\n\nFailed: ${msg.split('\n')[0]}`);
      } finally {
        clearTimeout(watchdog);
      }
      ctx.log(`scenario ${s.name} took ${((performance.now() - started) / 1000).toFixed(1)} s`);
    }
  } finally {
    await ctx.close();
  }
  const wall = (performance.now() - t0) / 1000;
  const loadEnd = loadAverage();
  ctx.log(`done in ${wall.toFixed(0)} s; load average at start ${loadStart}, at end ${loadEnd}`);
  if (args.record) {
    const now = new Date();
    const when = `${now.toISOString().slice(0, 10)} ${now.toISOString().slice(11, 16)} UTC`;
    const what = `${args.quick ? 'quick' : 'full'}${only ? `, only ${only.join(', ')}` : ''}`;
    const head =
      `\n## ${when} — benchmark suite (${what})\n\n` +
      `Recorded by \`npm run bench -- --record\`. Machine: ${await machine()}. Runs per case: ${runs}. Wall time ${wall.toFixed(0)} s. ` +
      `Load average (1, 5, 15 min) at start ${loadStart}, at end ${loadEnd} (2 cores: above 2 the machine was busy with other work and every number here is lower than on an idle machine). ` +
      `Settings: ${settings.length ? settings.join(', ') : 'the defaults'}.` +
      (args.note ? `\n\n${args.note}` : '');
    await appendFile(join(REPO, 'bench/RESULTS.md'), `${head}\n\n${sections.join('\n\n')}\n`);
    ctx.log('appended to bench/RESULTS.md');
  }
  return failed ? 1 : 0;
}

process.on('SIGINT', () => process.exit(130));
process.on('SIGTERM', () => process.exit(143));
main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
