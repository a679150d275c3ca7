// How every CLI command ends on an error: one line on stderr, the exit code of its class
// (the table is in exit-codes.ts).
import { ZodError } from 'zod';
import { RelayError } from '../protocol/errors.js';
import { exitCodeFor, EXIT } from './exit-codes.js';

export function exitWithError(err: unknown): never {
  if (err instanceof ZodError) {
    process.stderr.write(`relay: BAD_REQUEST: ${err.issues.map((i) => i.message).join('; ')}\n`);
    process.exit(EXIT.REQUEST);
  }
  if (err instanceof RelayError) {
    process.stderr.write(`relay: ${err.code}: ${err.message}${err.requestId ? ` (request ${err.requestId})` : ''}\n`);
  } else {
    process.stderr.write(`relay: ${err instanceof Error ? err.message : String(err)}\n`);
  }
  process.exit(exitCodeFor(err));
}
