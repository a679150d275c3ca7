// `relay request-sync|request-stream|request-offload <connector> [dataset]`: ask a connector
// for data through the router and write it, verified, to a file or stdout.
import { randomUUID } from 'node:crypto';
import { createWriteStream, type WriteStream } from 'node:fs';
import { rename, stat, unlink } from 'node:fs/promises';
import { once } from 'node:events';
import { finished } from 'node:stream/promises';
import type { Writable } from 'node:stream';
import { Option, type Command } from 'commander';
import { clientConfig, ConfigError, type ClientConfig } from '../config.js';
import { FORMATS, MODES, RelayError, clientRequestSchema, toRelayError, type ClientRequest, type Format, type Mode } from '../protocol/index.js';
import { cancel, closeHttp, requestOffload, requestStream, requestSync, type RequestOptions, type RequestResult } from '../client/index.js';
import { EXIT, UsageError, exitCodeFor } from './exit-codes.js';
import { formatOfName, type PreviewFormat } from './formats.js';
import { human } from './units.js';

export interface RequestFlags {
  sql?: string;
  database?: string;
  format?: string;
  timeout?: string;
  output?: string;
  router?: string;
  key?: string;
  caFile?: string;
  json?: boolean;
  /** offload only */
  urlOnly?: boolean;
  /** stream only; commander's --no-zstd sets it false */
  zstd?: boolean;
  /** print the first N rows as a table instead of the bytes */
  preview?: string;
}

export interface Io {
  stdout: Writable;
  stderr: Writable;
  /** The progress bar is for people: only on a terminal. */
  stderrIsTTY: boolean;
  signal?: AbortSignal;
}

const DESCRIPTIONS: Record<Mode, string> = {
  sync: 'ask for a result and get it in one answer once complete (up to the sync limit, 256 MiB by default)',
  stream: 'ask for a result and receive it as it is produced (any size)',
  offload: 'ask for a result to be put in the object store, then download it (or print its URL)',
};

export function register(program: Command): void {
  for (const mode of MODES) {
    const cmd = program
      .command(`request-${mode}`)
      .description(DESCRIPTIONS[mode])
      .argument('<connector>', 'connector id, e.g. cc-28-aa-01')
      .argument('[dataset]', "path relative to the connector's data directory (or use --sql)")
      .option('--sql <query>', 'run this SQL query on the connector instead of reading a dataset')
      .option('--database <name>', 'database for --sql (as configured on the connector)')
      .addOption(new Option('--format <format>', 'result format (default: raw for a dataset, arrow for SQL)').choices(FORMATS))
      .option('--timeout <s>', 'bound on the whole request, in seconds (router default 300)')
      .option('-o, --output <file>', 'write the result to FILE (default: stdout)')
      .option('--router <url>', 'router URL (env RELAY_ROUTER_URL)')
      .option('--key <key>', 'client key (env RELAY_API_KEY)')
      .option('--ca-file <file>', 'extra CA certificates (PEM) to trust for the router and the object store (env RELAY_CA_FILE)')
      .option('--json', 'print a one-line JSON summary on stdout (needs -o)')
      .option('--preview <n>', 'print the first N rows as a table on stdout instead of the bytes (any table format; with -o the file gets the bytes too)');
    if (mode === 'stream') cmd.option('--no-zstd', 'ask for uncompressed bytes instead of the connector\'s zstd frames');
    if (mode === 'offload') cmd.option('--url-only', 'print the presigned download URL instead of downloading');
    // Commander's own usage errors exit 1 by default; usage is 2 in our table.
    cmd.exitOverride((err) => process.exit(err.exitCode === 0 ? 0 : EXIT.USAGE));
    cmd.action(async (connector: string, dataset: string | undefined, flags: RequestFlags) => {
      const controller = new AbortController();
      let interrupts = 0;
      const onSignal = (): void => {
        // A second Ctrl-C means "now": do not wait for the cancel to reach the router.
        if (++interrupts > 1) process.exit(EXIT.INTERRUPTED);
        controller.abort();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      try {
        process.exitCode = await runRequest(mode, connector, dataset, flags, {
          stdout: process.stdout,
          stderr: process.stderr,
          stderrIsTTY: process.stderr.isTTY === true,
          signal: controller.signal,
        });
      } finally {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
        await closeHttp();
      }
    });
  }
}

interface Plan {
  cfg: ClientConfig;
  req: ClientRequest;
  output?: string;
  preview?: { rows: number; format: PreviewFormat };
}

/** Checks the command line before anything is sent; every problem here is exit 2. */
export function plan(mode: Mode, connector: string, dataset: string | undefined, flags: RequestFlags): Plan {
  if ((dataset === undefined) === (flags.sql === undefined)) {
    throw new UsageError(dataset === undefined ? 'give a dataset or --sql' : 'give a dataset or --sql, not both');
  }
  if (flags.database !== undefined && flags.sql === undefined) throw new UsageError('--database goes with --sql');
  const output = flags.output === '-' ? undefined : flags.output;
  if (flags.urlOnly && mode !== 'offload') throw new UsageError('--url-only is for request-offload');
  if (flags.urlOnly && output !== undefined) throw new UsageError('--url-only downloads nothing: drop -o');
  if (flags.json && output === undefined && !flags.urlOnly) throw new UsageError('--json needs -o FILE (stdout carries the data)');
  let timeout: number | undefined;
  if (flags.timeout !== undefined) {
    timeout = Number(flags.timeout);
    if (!Number.isFinite(timeout) || timeout <= 0) throw new UsageError(`--timeout must be a positive number of seconds, not "${flags.timeout}"`);
  }
  const candidate: ClientRequest = { connector };
  if (dataset !== undefined) candidate.dataset = dataset;
  if (flags.sql !== undefined) candidate.sql = flags.sql;
  if (flags.database !== undefined) candidate.database = flags.database;
  if (flags.format !== undefined) candidate.format = flags.format as Format;
  if (timeout !== undefined) candidate.timeout_s = timeout;
  const parsed = clientRequestSchema.safeParse(candidate);
  if (!parsed.success) {
    throw new UsageError(parsed.error.issues.map((i) => `${i.path.length ? `${i.path.join('.')}: ` : ''}${i.message}`).join('; '));
  }
  let preview: Plan['preview'];
  if (flags.preview !== undefined) {
    const rows = Number(flags.preview);
    if (!Number.isInteger(rows) || rows < 1) throw new UsageError(`--preview must be a positive number of rows, not "${flags.preview}"`);
    if (flags.json) throw new UsageError('--preview prints a table on stdout: drop --json');
    if (flags.urlOnly) throw new UsageError('--url-only downloads nothing to preview');
    const req = parsed.data;
    const format = req.format && req.format !== 'raw' ? req.format : req.sql !== undefined ? 'arrow' : formatOfName(req.dataset!);
    if (!format) throw new UsageError(`--preview needs a table: ask for --format arrow, csv, ndjson or parquet (${req.dataset} is not a CSV, Parquet, NDJSON or Arrow file)`);
    preview = { rows, format };
  }
  const cfg = clientConfig({ router: flags.router, key: flags.key, caFile: flags.caFile });
  return { cfg, req: parsed.data, output, preview };
}

/** Runs one request command and returns the process exit code; never throws. */
export async function runRequest(mode: Mode, connector: string, dataset: string | undefined, flags: RequestFlags, io: Io): Promise<number> {
  let p: Plan;
  try {
    p = plan(mode, connector, dataset, flags);
  } catch (err) {
    if (err instanceof UsageError || err instanceof ConfigError) {
      io.stderr.write(`relay: ${err.message}\n`);
      return EXIT.USAGE;
    }
    throw err;
  }

  const file = p.output === undefined || flags.urlOnly ? undefined : await openPartial(p.output).catch((err: unknown) => err as Error);
  if (file instanceof Error) {
    io.stderr.write(`relay: cannot write ${p.output}: ${file.message}\n`);
    return EXIT.USAGE;
  }
  // Loaded only when asked for: apache-arrow, parquet-wasm and csv-parse cost a few hundred ms.
  const preview = p.preview ? await import('./preview.js') : undefined;
  const previewer = p.preview && preview ? new preview.PreviewWriter(p.preview.format, p.preview.rows, file?.stream) : undefined;
  const out: Writable = previewer ?? file?.stream ?? io.stdout;
  // cli-progress is loaded only for a terminal (~20 ms of a command's start otherwise).
  const progress = io.stderrIsTTY ? new (await import('./progress.js')).Progress(io.stderr) : undefined;
  let requestId = '';
  const opts: RequestOptions = {
    signal: io.signal,
    // One key per invocation: a retry inside the client never starts a second request.
    idempotencyKey: randomUUID(),
    onProgress: progress ? (bytes, total) => progress.update(bytes, total) : undefined,
    onRequestId: (id) => {
      requestId = id;
    },
    onRetry: (err, n, delayMs) => {
      progress?.stop();
      io.stderr.write(`relay: ${err.message}; retrying with the same request in ${(delayMs / 1000).toFixed(1)} s (retry ${n})\n`);
    },
  };

  try {
    let result: RequestResult;
    if (mode === 'sync') result = await requestSync(p.cfg, p.req, out, opts);
    else if (mode === 'stream') result = await requestStream(p.cfg, p.req, out, { ...opts, zstd: flags.zstd !== false });
    else result = await requestOffload(p.cfg, p.req, flags.urlOnly ? null : out, { ...opts, urlOnly: flags.urlOnly === true });
    // The preview ends first: it forwards the last bytes to the file.
    const table = previewer ? await previewer.table() : undefined;
    if (file) await file.commit();
    progress?.stop();
    if (table && preview) io.stdout.write(`${preview.renderTable(table)}\n`);
    report(mode, result, p.output, flags, io);
    return EXIT.OK;
  } catch (caught) {
    progress?.stop();
    await file?.discard();
    if (io.signal?.aborted) {
      let note = '';
      if (requestId) {
        note = await cancel(p.cfg, requestId, { signal: AbortSignal.timeout(3000) }).then(
          () => ', cancelled on the router',
          () => ', could not cancel it on the router',
        );
      }
      io.stderr.write(`relay: interrupted${requestId ? ` (request ${requestId}${note})` : ''}\n`);
      return EXIT.INTERRUPTED;
    }
    const err = toRelayError(caught);
    err.requestId ??= requestId || undefined;
    io.stderr.write(`relay: ${err.code}: ${err.message}${err.requestId ? ` (request ${err.requestId})` : ''}\n`);
    const code = exitCodeFor(err);
    if (flags.json && (p.output !== undefined || flags.urlOnly)) io.stdout.write(`${JSON.stringify({ ...err.toBody(), exit_code: code })}\n`);
    return code;
  }
}

function report(mode: Mode, r: RequestResult, output: string | undefined, flags: RequestFlags, io: Io): void {
  const mbps = r.seconds > 0 ? r.bytes / 1e6 / r.seconds : 0;
  if (flags.urlOnly) {
    if (!flags.json) io.stdout.write(`${r.downloadUrl}\n`);
    io.stderr.write(`relay: ${r.bytes} bytes (${human(r.bytes)}) ready, xxh64 ${r.checksum}, URL expires ${r.expiresAt ?? '?'} (request ${r.requestId})\n`);
  } else {
    const check = r.verified ? `checksum verified (xxh64 ${r.checksum})` : `checksum NOT verified: the router gave none (xxh64 ${r.checksum})`;
    io.stderr.write(`relay: ${r.bytes} bytes (${human(r.bytes)}) in ${r.seconds.toFixed(2)} s, ${mbps.toFixed(1)} MB/s, ${check} (request ${r.requestId})\n`);
  }
  if (flags.json) {
    const summary: Record<string, unknown> = {
      status: 'success',
      mode,
      request_id: r.requestId,
      bytes: r.bytes,
      checksum: r.checksum,
      verified: r.verified,
      seconds: Number(r.seconds.toFixed(3)),
      mb_per_s: Number(mbps.toFixed(1)),
    };
    if (output !== undefined) summary.output = output;
    if (r.downloadUrl !== undefined) summary.download_url = r.downloadUrl;
    if (r.expiresAt !== undefined) summary.expires_at = r.expiresAt;
    io.stdout.write(`${JSON.stringify(summary)}\n`);
  }
}

interface PartialFile {
  stream: WriteStream;
  /** Flushes, closes and renames FILE.partial to FILE. */
  commit(): Promise<void>;
  /** Closes and deletes FILE.partial. */
  discard(): Promise<void>;
}

/** The result goes to FILE.partial and becomes FILE only once complete and verified. */
async function openPartial(path: string): Promise<PartialFile> {
  // 1 MiB buffer: the default 16 KiB would make every socket read wait for a drain.
  const highWaterMark = 1 << 20;
  const existing = await stat(path).catch(() => undefined);
  if (existing && !existing.isFile()) {
    // /dev/null, a FIFO, a terminal: nothing to rename, and no FILE.partial can live beside it.
    const stream = createWriteStream(path, { highWaterMark });
    await once(stream, 'open');
    return {
      stream,
      async commit() {
        stream.end();
        await finished(stream);
      },
      async discard() {
        stream.destroy();
      },
    };
  }
  const partial = `${path}.partial`;
  const stream = createWriteStream(partial, { highWaterMark });
  await once(stream, 'open');
  return {
    stream,
    async commit() {
      stream.end();
      try {
        await finished(stream);
      } catch (err) {
        throw new RelayError('INTERNAL', `cannot write ${partial}: ${(err as Error).message}`, { cause: err });
      }
      await rename(partial, path);
    },
    async discard() {
      stream.destroy();
      await finished(stream).catch(() => undefined);
      await unlink(partial).catch(() => undefined);
    },
  };
}
