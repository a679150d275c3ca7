// `node dist/bench/memory.js [--record] [--trace] [--sync-requests N] [--stream-seconds S]`: the
// memory scenario of the suite (bench/scenarios/memory.ts) on its own, with its own knobs
// (`npm run bench -- --only memory` runs the same with the suite's defaults). Redis from
// RELAY_REDIS_URL.
import { appendFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { REPO } from '../test/helpers/stack.js';
import { BenchContext, loadAverage, machine } from './lib/context.js';
import { renderTable } from './lib/table.js';
import { runMemory } from './scenarios/memory.js';

const { values: args } = parseArgs({
  options: {
    record: { type: 'boolean', default: false },
    'sync-requests': { type: 'string', default: '10' },
    'stream-seconds': { type: 'string', default: '10' },
    trace: { type: 'boolean', default: false },
  },
});

async function main(): Promise<void> {
  const ctx = await BenchContext.create({ quick: false, runs: 1, record: args.record });
  const tables: string[] = [];
  const load = loadAverage();
  try {
    await runMemory(ctx, (t) => tables.push(renderTable(t)), {
      syncRequests: Number(args['sync-requests']),
      streamSeconds: Number(args['stream-seconds']),
      trace: args.trace,
      settleMs: 2000,
    });
  } finally {
    await ctx.close();
  }
  process.stdout.write(`\n${tables.join('\n\n')}\n`);
  if (args.record) {
    const when = new Date().toISOString().slice(0, 10);
    const text = `\n## ${when} — router memory\n\nRecorded by \`node dist/bench/memory.js --record\`. Machine: ${await machine()}. Load average at start ${load}, at end ${loadAverage()}.\n\n${tables.join('\n\n')}\n`;
    await appendFile(join(REPO, 'bench/RESULTS.md'), text);
    process.stderr.write('bench: appended to bench/RESULTS.md\n');
  }
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.stack : String(err)}\n`);
    process.exit(1);
  },
);
