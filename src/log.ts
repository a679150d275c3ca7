// Structured logging (pino): JSON lines, human-readable when stderr is a terminal.
// Secrets never go into logs; use fingerprint() to name one.
import { createHash } from 'node:crypto';
import { pino, type Logger } from 'pino';

export type { Logger };

// A safety net under "never log a secret": fields that could carry one are censored even if a
// caller passes them by mistake (a whole config object, request headers), at the top level and
// in objects up to two levels down. Done here rather than with pino's `redact` paths: their
// wildcards (`*.token`) cost 15-20 µs per line, 3-4 times the line itself; connectors log two
// lines per command (6 % of a connector's CPU on 1 KB results). This costs well under 1 µs.
const SECRET_FIELDS = new Set(['token', 'key', 'secret', 'password', 'authorization', 'cookie', 'apiKey', 'adminToken', 'connectorToken', 's3SecretKey', 's3AccessKey']);
const CENSOR = '[redacted]';
const NESTED = 2;

/** Plain objects only: errors, buffers and class instances keep their serializers. */
function isPlain(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object') return false;
  const proto = Object.getPrototypeOf(v) as unknown;
  return proto === Object.prototype || proto === null;
}

/** `fields` with its secret-bearing fields censored: a copy where one was found, else itself. */
export function censor(fields: Record<string, unknown>, depth = 0): Record<string, unknown> {
  let out: Record<string, unknown> | null = null;
  for (const k in fields) {
    const v = fields[k];
    let clean = v;
    if (SECRET_FIELDS.has(k) && v !== undefined) clean = CENSOR;
    else if (depth < NESTED && isPlain(v)) clean = censor(v, depth + 1);
    if (clean !== v) {
      out ??= { ...fields };
      out[k] = clean;
    }
  }
  return out ?? fields;
}

/** Bytes of log lines waiting for stderr at most. */
const MAX_PENDING_LOG = 16 * 1024 * 1024;

/** The asynchronous destinations of the loggers made here (exitAfterLogs waits for them). */
const destinations = new Set<ReturnType<typeof pino.destination>>();

export function createLogger(name: string, level = process.env.RELAY_LOG_LEVEL ?? 'info'): Logger {
  const pretty = process.stderr.isTTY && !process.env.RELAY_LOG_JSON;
  if (pretty) {
    return pino(
      { name, level, formatters: { log: (o) => censor(o) } },
      pino.transport({ target: 'pino-pretty', options: { destination: 2, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } }),
    );
  }
  // Asynchronous: a line is written by the thread pool, and lines logged while one is being
  // written go together in the next write, instead of one blocking write(2) per line on the
  // event loop. A stuck stderr (a full pipe nobody reads) costs dropped lines past
  // MAX_PENDING_LOG, not unbounded memory. Before exiting, exitAfterLogs.
  const dest = pino.destination({ dest: 2, sync: false, maxLength: MAX_PENDING_LOG });
  destinations.add(dest);
  return pino({ name, level, formatters: { log: (o) => censor(o) } }, dest);
}

/**
 * Exits once every line logged so far is written (at most `ms` later: stderr may be stuck).
 * pino's own exit hook writes the queued lines synchronously, but not the batch a thread-pool
 * write has under way: with the pool busy, that batch went out only as the process ended,
 * after the lines logged later. A SIGTERMed connector's "connector stopping" came after its
 * "result delivered" that way (a fresh-clone CI run).
 */
export function exitAfterLogs(code: number, ms = 2000): void {
  // sonic-boom says whether a write is under way only in a field of its own.
  const busy = [...destinations].filter((d) => (d as unknown as { _writing?: boolean })._writing);
  if (busy.length === 0) process.exit(code);
  const exit = () => process.exit(code);
  setTimeout(exit, ms).unref();
  let left = busy.length;
  // 'drain': everything it was given is written; 'error': it will write nothing more.
  for (const d of busy) for (const ev of ['drain', 'error'] as const) d.once(ev, () => --left === 0 && exit());
}

/** A short, non-reversible name for a secret, safe to log. */
export function fingerprint(secret: string): string {
  return createHash('sha256').update(secret).digest('hex').slice(0, 8);
}
