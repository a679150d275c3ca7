// Structured logging (pino): JSON lines, human-readable when stderr is a terminal.
// Secrets never go into logs; use fingerprint() to name one.
import { createHash } from 'node:crypto';
import { pino, type Logger } from 'pino';

export type { Logger };

// A safety net under "never log a secret": fields that could carry one are censored even if a
// caller passes them by mistake (a whole config object, request headers).
const SECRET_FIELDS = ['token', 'key', 'secret', 'password', 'authorization', 'apiKey', 'adminToken', 'connectorToken', 's3SecretKey', 's3AccessKey'];
const REDACT = [...SECRET_FIELDS, ...SECRET_FIELDS.map((f) => `*.${f}`), 'headers.authorization', '*.headers.authorization', 'req.headers.cookie'];

export function createLogger(name: string, level = process.env.RELAY_LOG_LEVEL ?? 'info'): Logger {
  const pretty = process.stderr.isTTY && !process.env.RELAY_LOG_JSON;
  return pino(
    { name, level, redact: { paths: REDACT, censor: '[redacted]' } },
    pretty ? pino.transport({ target: 'pino-pretty', options: { destination: 2, translateTime: 'SYS:HH:MM:ss.l', ignore: 'pid,hostname' } }) : pino.destination(2),
  );
}

/** A short, non-reversible name for a secret, safe to log. */
export function fingerprint(secret: string): string {
  return createHash('sha256').update(secret).digest('hex').slice(0, 8);
}
