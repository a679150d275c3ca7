// Wire types and their zod schemas (PROTOCOL.md §2–§3). Both router and connector validate
// what they receive with these; the CLI builds its requests from the same types.
// A namespace import: the CLI's bundle then holds only the zod it uses (`import { z }` brings its 64 locales; test/unit/cli-commands.test.ts).
import * as z from 'zod';
import { CHECKSUM_RE } from './checksum.js';
import { CONNECTOR_ERROR_CODES } from './errors.js';
import { MAX_CHUNK_SIZE } from './codec.js';

export const PROTOCOL_VERSION = '1';

export const MODES = ['sync', 'stream', 'offload'] as const;
export type Mode = (typeof MODES)[number];

export const FORMATS = ['raw', 'arrow', 'csv', 'ndjson', 'parquet'] as const;
export type Format = (typeof FORMATS)[number];

export const CONTENT_TYPES: Record<Format, string> = {
  raw: 'application/octet-stream',
  arrow: 'application/vnd.apache.arrow.stream',
  csv: 'text/csv',
  ndjson: 'application/x-ndjson',
  parquet: 'application/vnd.apache.parquet',
};

export const HEADERS = {
  attempt: 'x-relay-attempt',
  checksum: 'x-relay-checksum',
  decodedLength: 'x-relay-decoded-length',
  contentType: 'x-relay-content-type',
  requestId: 'x-relay-request-id',
  retryAfterMs: 'retry-after-ms',
  idempotencyKey: 'idempotency-key',
  /** request-stream answers: the decoded result size, when the connector announced it. */
  totalBytes: 'x-relay-total-bytes',
} as const;

export const SSE_EVENTS = { hello: 'hello', command: 'command', cancel: 'cancel' } as const;

const checksum = z.string().regex(CHECKSUM_RE, 'must be 16 lowercase hex digits (xxh64)');
const attempt = z.number().int().min(1).max(1000);
const nonNegInt = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);

/** Connector ids: MAC-like ids or any short slug; never path separators. */
export const connectorIdSchema = z.string().min(1).max(128).regex(/^[A-Za-z0-9][A-Za-z0-9._:-]*$/, 'letters, digits, . _ : - only');
export const tenantIdSchema = z.string().min(1).max(64).regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, 'letters, digits, . _ - only');
export const requestIdSchema = z.string().regex(/^r_[A-Za-z0-9_-]{8,64}$/);

// ---- client API (§2) -----------------------------------------------------------------

export const clientRequestSchema = z
  .strictObject({
    connector: connectorIdSchema,
    dataset: z.string().min(1).max(4096).optional(),
    sql: z.string().min(1).max(1_000_000).optional(),
    database: z.string().min(1).max(128).optional(),
    format: z.enum(FORMATS).optional(),
    timeout_s: z.number().positive().max(86_400).optional(),
  })
  .refine((r) => (r.dataset === undefined) !== (r.sql === undefined), { message: 'exactly one of "dataset" or "sql" is required' });
export type ClientRequest = z.infer<typeof clientRequestSchema>;

export const REQUEST_STATUSES = ['queued', 'dispatched', 'running', 'complete', 'failed', 'cancelled'] as const;
export type RequestStatus = (typeof REQUEST_STATUSES)[number];

export interface RequestStatusBody {
  request_id: string;
  status: RequestStatus;
  mode: Mode;
  connector: string;
  attempt: number;
  created_at: string;
  updated_at: string;
  bytes: number;
  chunks: number;
  checksum: string | null;
  error: { code: string; message: string } | null;
  /** The columns of an Arrow result that came in chunks (stream/init's schema); absent otherwise. */
  schema?: TableSchema;
}

export interface OffloadResponse {
  status: 'success';
  request_id: string;
  download_url: string;
  expires_at: string;
  bytes: number;
  checksum: string;
  content_encoding: 'zstd' | 'identity';
  /**
   * Addition to PROTOCOL.md: the stored object's size in bytes (what the download URL serves;
   * `bytes` is the decoded size). A client can then fetch every range at once. Optional:
   * clients must not require it.
   */
  stored_bytes?: number;
}

// ---- connector API (§3) --------------------------------------------------------------

export interface HelloEvent {
  connector_id: string;
  session_id: string;
  heartbeat_s: number;
  max_age_s: number;
}

export const commandSchema = z.object({
  request_id: z.string(),
  attempt,
  mode: z.enum(MODES),
  dataset: z.string().optional(),
  sql: z.string().optional(),
  database: z.string().optional(),
  format: z.enum(FORMATS),
  chunk_size: z.number().int().positive().max(MAX_CHUNK_SIZE),
  compression: z.enum(['zstd', 'none']),
  resume_from: nonNegInt,
  deadline: z.string(),
  offload: z
    .object({
      upload_id: z.string(),
      key: z.string(),
      part_size: z.number().int().positive(),
      // An addition of this router: the first parts' URLs, as offload/parts would answer them.
      urls: z.record(z.string(), z.string()).optional(),
      expires_at: z.string().optional(),
    })
    .optional(),
});
export type Command = z.infer<typeof commandSchema>;

export const cancelSchema = z.object({ request_id: z.string() });
export type CancelEvent = z.infer<typeof cancelSchema>;

export const ackSchema = z.strictObject({ attempt });

/** A table result's columns, in Arrow terms (pyarrow's type names: int64, decimal128(10, 2), timestamp[us, tz=UTC]). */
export const tableSchemaSchema = z.array(z.strictObject({ name: z.string().max(1024), type: z.string().min(1).max(100), nullable: z.boolean() })).max(10_000);
export type TableSchema = z.infer<typeof tableSchemaSchema>;

export const streamInitSchema = z.strictObject({
  attempt,
  content_type: z.string().min(1).max(200),
  total_bytes: nonNegInt.nullable().optional(),
  total_chunks: nonNegInt.nullable().optional(),
  /** Arrow results: the schema, so a client can see the columns in the request's status. */
  schema: tableSchemaSchema.optional(),
});
export type StreamInit = z.infer<typeof streamInitSchema>;

export const streamCompleteSchema = z.strictObject({ attempt, chunks: nonNegInt, bytes: nonNegInt, checksum });
export type StreamComplete = z.infer<typeof streamCompleteSchema>;

export const connectorErrorSchema = z.strictObject({
  attempt,
  code: z.enum(CONNECTOR_ERROR_CODES),
  message: z.string().max(8192),
});
export type ConnectorErrorReport = z.infer<typeof connectorErrorSchema>;

export const MAX_PARTS = 10_000;
export const MIN_PART_SIZE = 5 * 1024 * 1024;

export const offloadPartsSchema = z.strictObject({
  attempt,
  parts: z.array(z.number().int().min(1).max(MAX_PARTS)).min(1).max(1000),
});
export interface OffloadPartsResponse {
  urls: Record<string, string>;
  expires_at: string;
}

export const offloadCompleteSchema = z.strictObject({
  attempt,
  parts: z.array(z.strictObject({ part: z.number().int().min(1).max(MAX_PARTS), etag: z.string().min(1).max(200) })).min(1).max(MAX_PARTS),
  bytes: nonNegInt,
  checksum,
  content_encoding: z.enum(['zstd', 'identity']),
});
export type OffloadComplete = z.infer<typeof offloadCompleteSchema>;

export interface ConnectorInfo {
  connector_id: string;
  tenant: string;
  online: boolean;
  last_seen: string | null;
  version: string | null;
  in_flight: number;
  session_id: string | null;
}

/** GET /v1/queue (admin): jobs of the command queue by state. */
export interface QueueCounts {
  queue: string;
  waiting: number;
  active: number;
  delayed: number;
  failed: number;
  completed: number;
}
