// The one error table of the protocol (PROTOCOL.md §1): code → HTTP status.
// Every non-2xx answer of the router, and every failure the CLI reports, is a RelayError.

export const ERROR_STATUS = {
  BAD_REQUEST: 400,
  UNAUTHORIZED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  DATASET_NOT_FOUND: 404,
  CONFLICT: 409,
  GONE: 410,
  RESULT_TOO_LARGE: 413,
  CHECKSUM_MISMATCH: 422,
  RATE_LIMITED: 429,
  CONNECTOR_ERROR: 502,
  CONNECTOR_OFFLINE: 503,
  BACKPRESSURE: 503,
  TIMEOUT: 504,
  INTERNAL: 500,
} as const;

export type ErrorCode = keyof typeof ERROR_STATUS;

/**
 * Codes a connector may report through POST /v1/requests/{id}/error; all are final.
 * TIMEOUT (a query over its statement timeout) is our addition to PROTOCOL.md §3.3's list.
 */
export const CONNECTOR_ERROR_CODES = ['DATASET_NOT_FOUND', 'BAD_REQUEST', 'FORBIDDEN', 'CONNECTOR_ERROR', 'TIMEOUT'] as const;
export type ConnectorErrorCode = (typeof CONNECTOR_ERROR_CODES)[number];

export function isErrorCode(value: unknown): value is ErrorCode {
  return typeof value === 'string' && Object.hasOwn(ERROR_STATUS, value);
}

export interface ErrorBody {
  status: 'error';
  request_id?: string;
  error: { code: ErrorCode; message: string };
}

export interface RelayErrorOptions {
  requestId?: string;
  /** For RATE_LIMITED and BACKPRESSURE: when to try again. */
  retryAfterMs?: number;
  cause?: unknown;
}

export class RelayError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  requestId?: string;
  readonly retryAfterMs?: number;

  constructor(code: ErrorCode, message: string, opts: RelayErrorOptions = {}) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'RelayError';
    this.code = code;
    this.status = ERROR_STATUS[code];
    this.requestId = opts.requestId;
    this.retryAfterMs = opts.retryAfterMs;
  }

  toBody(): ErrorBody {
    const body: ErrorBody = { status: 'error', error: { code: this.code, message: this.message } };
    if (this.requestId) body.request_id = this.requestId;
    return body;
  }

  /** Rebuilds an error from a router's JSON error body (client and connector side). */
  static fromBody(status: number, body: unknown): RelayError {
    const b = body as Partial<ErrorBody> | undefined;
    const code = isErrorCode(b?.error?.code) ? b!.error!.code : statusToCode(status);
    const message = typeof b?.error?.message === 'string' ? b.error.message : `HTTP ${status}`;
    return new RelayError(code, message, { requestId: b?.request_id });
  }
}

function statusToCode(status: number): ErrorCode {
  const hit = (Object.entries(ERROR_STATUS) as [ErrorCode, number][]).find(([, s]) => s === status);
  return hit ? hit[0] : status >= 500 ? 'INTERNAL' : 'BAD_REQUEST';
}

/** Wraps anything thrown into a RelayError (unknown errors become INTERNAL). */
export function toRelayError(err: unknown): RelayError {
  if (err instanceof RelayError) return err;
  const message = err instanceof Error ? err.message : String(err);
  return new RelayError('INTERNAL', message, { cause: err });
}
