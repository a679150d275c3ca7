// Structured logging (pino): JSON lines, human-readable when stderr is a terminal.
// Secrets never go into logs; use fingerprint() to name one.
import { createHash } from 'node:crypto';
import { pino, type Logger } from 'pino';

export type { Logger };

export function createLogger(name: string, level = process.env.RELAY_LOG_LEVEL ?? 'info'): Logger {
  const pretty = process.stderr.isTTY && !process.env.RELAY_LOG_JSON;
  return pino(
    { name, level, redact: { paths: ['token', 'key', 'secret', 'authorization', '*.authorization', 'headers.authorization'], censor: '[redacted]' } },
    pretty ? pino.transport({ target: 'pino-pretty', options: { destination: 2, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } }) : pino.destination(2),
  );
}

/** A short, non-reversible name for a secret, safe to log. */
export function fingerprint(secret: string): string {
  return createHash('sha256').update(secret).digest('hex').slice(0, 8);
}
