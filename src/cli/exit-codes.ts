// Process exit codes of the request commands, one per error class, so scripts can tell
// "fix your command" from "try again later" from "the data is wrong":
//
//   0  success
//   1  INTERNAL, or anything unexpected
//   2  usage or configuration (bad flags, missing key)
//   3  the request itself cannot succeed: BAD_REQUEST, NOT_FOUND, DATASET_NOT_FOUND,
//      FORBIDDEN, CONFLICT, GONE, RESULT_TOO_LARGE
//   4  UNAUTHORIZED
//   5  the connector side failed: CONNECTOR_OFFLINE, CONNECTOR_ERROR, TIMEOUT
//   6  integrity: CHECKSUM_MISMATCH (the bytes received are not the bytes sent)
//   7  try again later: RATE_LIMITED, BACKPRESSURE
//   130 interrupted (Ctrl-C)
import { ConfigError } from '../config.js';
import { RelayError, type ErrorCode } from '../protocol/errors.js';

export const EXIT = {
  OK: 0,
  INTERNAL: 1,
  USAGE: 2,
  REQUEST: 3,
  UNAUTHORIZED: 4,
  CONNECTOR: 5,
  INTEGRITY: 6,
  RETRY_LATER: 7,
  INTERRUPTED: 130,
} as const;

/** Every protocol error code has its class: adding a code without one fails to compile. */
export const EXIT_CODES: Record<ErrorCode, number> = {
  INTERNAL: EXIT.INTERNAL,
  BAD_REQUEST: EXIT.REQUEST,
  NOT_FOUND: EXIT.REQUEST,
  DATASET_NOT_FOUND: EXIT.REQUEST,
  FORBIDDEN: EXIT.REQUEST,
  CONFLICT: EXIT.REQUEST,
  GONE: EXIT.REQUEST,
  RESULT_TOO_LARGE: EXIT.REQUEST,
  UNAUTHORIZED: EXIT.UNAUTHORIZED,
  CONNECTOR_OFFLINE: EXIT.CONNECTOR,
  CONNECTOR_ERROR: EXIT.CONNECTOR,
  TIMEOUT: EXIT.CONNECTOR,
  CHECKSUM_MISMATCH: EXIT.INTEGRITY,
  RATE_LIMITED: EXIT.RETRY_LATER,
  BACKPRESSURE: EXIT.RETRY_LATER,
};

/** A command line the CLI refuses before sending anything. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export function exitCodeFor(err: unknown): number {
  if (err instanceof RelayError) return EXIT_CODES[err.code] ?? EXIT.INTERNAL;
  if (err instanceof ConfigError || err instanceof UsageError) return EXIT.USAGE;
  return EXIT.INTERNAL;
}
