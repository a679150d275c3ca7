// /openapi.json: the router's API as OpenAPI 3.1, generated from the zod schemas the routes
// validate with (zod 4's z.toJSONSchema), so the document cannot drift from the validation.
// Answers the routes build from TypeScript interfaces get zod twins here, each checked against
// its interface by the compiler.
import * as z from 'zod';
import { ERROR_STATUS, type ErrorBody, type ErrorCode } from '../protocol/errors.js';
import {
  ackSchema,
  clientRequestSchema,
  connectorErrorSchema,
  FORMATS,
  HEADERS,
  MODES,
  offloadCompleteSchema,
  offloadPartsSchema,
  REQUEST_STATUSES,
  streamCompleteSchema,
  streamInitSchema,
  type ConnectorInfo,
  type OffloadPartsResponse,
  type OffloadResponse,
  type QueueCounts,
  type RequestStatusBody,
} from '../protocol/wire.js';

const errorCodes = Object.keys(ERROR_STATUS) as [ErrorCode, ...ErrorCode[]];

const errorBodySchema: z.ZodType<ErrorBody> = z.object({
  status: z.literal('error'),
  request_id: z.string().optional(),
  error: z.object({ code: z.enum(errorCodes), message: z.string() }),
});
const requestStatusSchema: z.ZodType<RequestStatusBody> = z.object({
  request_id: z.string(),
  status: z.enum(REQUEST_STATUSES),
  mode: z.enum(MODES),
  connector: z.string(),
  attempt: z.number().int(),
  created_at: z.string(),
  updated_at: z.string(),
  bytes: z.number().int(),
  chunks: z.number().int(),
  checksum: z.string().nullable(),
  error: z.object({ code: z.string(), message: z.string() }).nullable(),
});
const offloadResponseSchema: z.ZodType<OffloadResponse> = z.object({
  status: z.literal('success'),
  request_id: z.string(),
  download_url: z.string().meta({ description: 'presigned GET URL of the stored result' }),
  expires_at: z.string(),
  bytes: z.number().int().meta({ description: 'size of the decoded result' }),
  checksum: z.string().meta({ description: 'xxh64 of the decoded result, 16 hex digits' }),
  content_encoding: z.enum(['zstd', 'identity']),
  stored_bytes: z.number().int().optional().meta({ description: 'size of the stored object (what download_url serves); an addition to the protocol, optional' }),
});
const connectorInfoSchema: z.ZodType<ConnectorInfo> = z.object({
  connector_id: z.string(),
  tenant: z.string(),
  online: z.boolean(),
  last_seen: z.string().nullable(),
  version: z.string().nullable(),
  in_flight: z.number().int(),
  session_id: z.string().nullable(),
});
const queueCountsSchema: z.ZodType<QueueCounts> = z.object({
  queue: z.string(),
  waiting: z.number().int(),
  active: z.number().int(),
  delayed: z.number().int(),
  failed: z.number().int(),
  completed: z.number().int(),
});
const offloadPartsResponseSchema: z.ZodType<OffloadPartsResponse> = z.object({
  urls: z.record(z.string(), z.string()).meta({ description: 'part number → presigned PUT URL' }),
  expires_at: z.string(),
});

const SCHEMAS: Record<string, z.ZodType> = {
  ClientRequest: clientRequestSchema,
  ErrorBody: errorBodySchema,
  RequestStatus: requestStatusSchema,
  OffloadResponse: offloadResponseSchema,
  ConnectorInfo: connectorInfoSchema,
  QueueCounts: queueCountsSchema,
  Ack: ackSchema,
  StreamInit: streamInitSchema,
  StreamComplete: streamCompleteSchema,
  ConnectorError: connectorErrorSchema,
  OffloadParts: offloadPartsSchema,
  OffloadPartsResponse: offloadPartsResponseSchema,
  OffloadComplete: offloadCompleteSchema,
};

function jsonSchema(schema: z.ZodType): Record<string, unknown> {
  const { $schema: _drop, ...rest } = z.toJSONSchema(schema, { io: 'input', unrepresentable: 'any' }) as Record<string, unknown>;
  return rest;
}

const ref = (name: keyof typeof SCHEMAS & string) => ({ $ref: `#/components/schemas/${name}` });
const json = (name: string) => ({ 'application/json': { schema: ref(name) } });
const body = (name: string, description?: string) => ({ required: true, ...(description ? { description } : {}), content: json(name) });

type Op = {
  tags: string[];
  summary: string;
  description?: string;
  security?: Record<string, string[]>[];
  parameters?: unknown[];
  requestBody?: unknown;
  responses: Record<string, unknown>;
};

const CLIENT = [{ clientKey: [] }];
const CONNECTOR = [{ connectorToken: [] }];
const ADMIN = [{ adminSecret: [] }];
const NONE: Record<string, string[]>[] = [];

const idParam = { name: 'id', in: 'path', required: true, schema: { type: 'string', pattern: '^r_[A-Za-z0-9_-]{8,64}$' }, description: 'request id' };
const header = (name: string, description: string, required = true, schema: object = { type: 'string' }) => ({ name, in: 'header', required, description, schema });
const uploadHeaders = [
  header(HEADERS.attempt, 'the attempt the data belongs to', true, { type: 'integer', minimum: 1 }),
  header(HEADERS.checksum, 'xxh64 (seed 0) of the body as sent, 16 lowercase hex digits', true, { type: 'string', pattern: '^[0-9a-f]{16}$' }),
  header('content-encoding', '`zstd` when the body is one zstd frame; absent otherwise', false),
  header(HEADERS.decodedLength, 'length after decoding', true, { type: 'integer', minimum: 0 }),
];

/** The error answers an operation can give, each in the protocol's error format. */
function errors(...codes: ErrorCode[]): Record<string, unknown> {
  const byStatus = new Map<number, ErrorCode[]>();
  for (const code of codes) byStatus.set(ERROR_STATUS[code], [...(byStatus.get(ERROR_STATUS[code]) ?? []), code]);
  return Object.fromEntries([...byStatus].map(([status, cs]) => [String(status), { description: cs.join(', '), content: json('ErrorBody') }]));
}

const ok204 = { '204': { description: 'accepted' } };
const AUTH_ERRORS: ErrorCode[] = ['BAD_REQUEST', 'UNAUTHORIZED', 'FORBIDDEN'];
const UPLOAD_ERRORS: ErrorCode[] = [...AUTH_ERRORS, 'NOT_FOUND', 'CONFLICT', 'GONE'];

function requestOp(mode: 'sync' | 'stream' | 'offload'): Op {
  const common = {
    tags: ['client'],
    security: CLIENT,
    parameters: [header(HEADERS.idempotencyKey, 'same key within 24 h returns the same request', false)],
    requestBody: body('ClientRequest', 'exactly one of `dataset` or `sql`'),
  };
  const errs = errors(...AUTH_ERRORS, 'NOT_FOUND', 'DATASET_NOT_FOUND', 'CONFLICT', 'GONE', 'RESULT_TOO_LARGE', 'RATE_LIMITED', 'CONNECTOR_ERROR', 'CONNECTOR_OFFLINE', 'TIMEOUT', 'INTERNAL');
  const binary = Object.fromEntries([...FORMATS.map((f) => f), 'json'].map((f) => [f === 'json' ? 'application/json' : contentTypeOf(f), { schema: f === 'json' ? { type: 'object' } : { type: 'string', format: 'binary' } }]));
  if (mode === 'offload') {
    return { ...common, summary: 'Ask for data; the connector uploads it to the object store', description: 'Answers once the result is stored, with a presigned download URL.', responses: { '200': { description: 'stored', content: json('OffloadResponse') }, ...errs } };
  }
  if (mode === 'sync') {
    return {
      ...common,
      summary: 'Ask for data; the router buffers and answers once',
      description: 'Body = the result bytes with `Content-Length` and `X-Relay-Checksum`. With `Accept: application/json` and a textual result: `{"status":"success","request_id","data"}`.',
      responses: { '200': { description: 'the verified result', headers: { [HEADERS.checksum]: { schema: { type: 'string' } }, [HEADERS.requestId]: { schema: { type: 'string' } } }, content: binary }, ...errs },
    };
  }
  return {
    ...common,
    summary: 'Ask for data; the router streams it as chunks arrive',
    description: 'Chunked body; the checksum comes as the HTTP trailer `X-Relay-Checksum`. `Accept-Encoding: zstd` passes the connector\'s zstd frames through. `X-Relay-Total-Bytes` gives the decoded size when the connector announced it.',
    responses: { '200': { description: 'the result, streamed', headers: { [HEADERS.requestId]: { schema: { type: 'string' } }, [HEADERS.totalBytes]: { schema: { type: 'integer' } } }, content: binary }, ...errs },
  };
}

function contentTypeOf(f: string): string {
  return { raw: 'application/octet-stream', arrow: 'application/vnd.apache.arrow.stream', csv: 'text/csv', ndjson: 'application/x-ndjson', parquet: 'application/vnd.apache.parquet' }[f]!;
}

function paths(): Record<string, Record<string, Op>> {
  return {
    '/v1/datasets/request-sync': { post: requestOp('sync') },
    '/v1/datasets/request-stream': { post: requestOp('stream') },
    '/v1/datasets/request-offload': { post: requestOp('offload') },
    '/v1/requests/{id}': {
      get: { tags: ['client'], summary: 'Status of a request', security: [...CLIENT, ...ADMIN], parameters: [idParam], responses: { '200': { description: 'status', content: json('RequestStatus') }, ...errors(...AUTH_ERRORS, 'NOT_FOUND') } },
      delete: { tags: ['client'], summary: 'Cancel a request (the connector gets a cancel event)', security: [...CLIENT, ...ADMIN], parameters: [idParam], responses: { '200': { description: 'status after the cancel', content: json('RequestStatus') }, ...errors(...AUTH_ERRORS, 'NOT_FOUND') } },
    },
    '/v1/connectors/events': {
      get: {
        tags: ['connector'],
        summary: 'The connector\'s command stream (Server-Sent Events)',
        description: 'Events `hello`, `command` (with an id), `cancel`, and `: ping` comments every heartbeat_s.',
        security: CONNECTOR,
        parameters: [
          { name: 'concurrency', in: 'query', required: false, schema: { type: 'integer', minimum: 1 } },
          { name: 'version', in: 'query', required: false, schema: { type: 'string' } },
          header('last-event-id', 'id of the last command event seen', false),
        ],
        responses: { '200': { description: 'event stream', content: { 'text/event-stream': { schema: { type: 'string' } } } }, ...errors('UNAUTHORIZED', 'FORBIDDEN', 'CONNECTOR_OFFLINE') },
      },
    },
    '/v1/requests/{id}/ack': { post: { tags: ['connector'], summary: 'Acknowledge a command; repeated, it renews the lease', security: CONNECTOR, parameters: [idParam], requestBody: body('Ack'), responses: { ...ok204, ...errors(...UPLOAD_ERRORS) } } },
    '/v1/requests/{id}/result': {
      post: {
        tags: ['connector'],
        summary: 'A result that fits in one chunk, in one call',
        security: CONNECTOR,
        parameters: [idParam, ...uploadHeaders, header(HEADERS.contentType, 'content type of the result', false)],
        requestBody: { required: true, content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } },
        responses: { ...ok204, ...errors(...UPLOAD_ERRORS, 'RESULT_TOO_LARGE', 'CHECKSUM_MISMATCH', 'BACKPRESSURE') },
      },
    },
    '/v1/requests/{id}/stream/init': { post: { tags: ['connector'], summary: 'Start a chunked result', security: CONNECTOR, parameters: [idParam], requestBody: body('StreamInit'), responses: { ...ok204, ...errors(...UPLOAD_ERRORS, 'RESULT_TOO_LARGE') } } },
    '/v1/requests/{id}/stream/chunk/{index}': {
      post: {
        tags: ['connector'],
        summary: 'One chunk (parallel, out of order, idempotent)',
        security: CONNECTOR,
        parameters: [idParam, { name: 'index', in: 'path', required: true, schema: { type: 'integer', minimum: 0 } }, ...uploadHeaders],
        requestBody: { required: true, content: { 'application/octet-stream': { schema: { type: 'string', format: 'binary' } } } },
        responses: { '201': { description: 'stored' }, '200': { description: 'already stored with the same checksum' }, ...errors(...UPLOAD_ERRORS, 'RESULT_TOO_LARGE', 'CHECKSUM_MISMATCH', 'BACKPRESSURE') },
      },
    },
    '/v1/requests/{id}/stream/complete': { post: { tags: ['connector'], summary: 'End a chunked result (whole-result checksum)', security: CONNECTOR, parameters: [idParam], requestBody: body('StreamComplete'), responses: { ...ok204, ...errors(...UPLOAD_ERRORS, 'CHECKSUM_MISMATCH') } } },
    '/v1/requests/{id}/error': { post: { tags: ['connector'], summary: 'Report a final failure', security: CONNECTOR, parameters: [idParam], requestBody: body('ConnectorError'), responses: { ...ok204, ...errors(...UPLOAD_ERRORS) } } },
    '/v1/requests/{id}/offload/parts': { post: { tags: ['connector'], summary: 'Presigned PUT URLs for object-store parts', security: CONNECTOR, parameters: [idParam], requestBody: body('OffloadParts'), responses: { '200': { description: 'URLs', content: json('OffloadPartsResponse') }, ...errors(...UPLOAD_ERRORS) } } },
    '/v1/requests/{id}/offload/complete': { post: { tags: ['connector'], summary: 'Complete the multipart upload; the client gets its download URL', security: CONNECTOR, parameters: [idParam], requestBody: body('OffloadComplete'), responses: { ...ok204, ...errors(...UPLOAD_ERRORS) } } },
    '/v1/connectors': {
      get: { tags: ['operators'], summary: 'Connectors: online, last seen, version, in flight (a client key sees its tenant)', security: [...ADMIN, ...CLIENT], responses: { '200': { description: 'connectors', content: { 'application/json': { schema: { type: 'array', items: ref('ConnectorInfo') } } } }, ...errors('UNAUTHORIZED', 'FORBIDDEN') } },
    },
    '/v1/queue': { get: { tags: ['operators'], summary: 'Jobs of the command queue by state', security: ADMIN, responses: { '200': { description: 'counts', content: json('QueueCounts') }, ...errors('UNAUTHORIZED', 'FORBIDDEN') } } },
    '/healthz': { get: { tags: ['operators'], summary: 'The process serves', security: NONE, responses: { '200': { description: '{"status":"ok"}' } } } },
    '/readyz': { get: { tags: ['operators'], summary: 'Redis and the object store answer', security: NONE, responses: { '200': { description: 'ready' }, '503': { description: 'not ready (what failed)', content: json('ErrorBody') } } } },
    '/metrics': { get: { tags: ['operators'], summary: 'Prometheus metrics', security: NONE, responses: { '200': { description: 'Prometheus text format', content: { 'text/plain': { schema: { type: 'string' } } } } } } },
    '/admin/queues': { get: { tags: ['operators'], summary: 'The queue dashboard (bull-board); HTTP Basic with the admin secret as password also works', security: ADMIN, responses: { '200': { description: 'HTML' }, ...errors('UNAUTHORIZED') } } },
    '/openapi.json': { get: { tags: ['docs'], summary: 'This document', security: NONE, responses: { '200': { description: 'OpenAPI 3.1' } } } },
    '/docs': { get: { tags: ['docs'], summary: 'This document, rendered', security: NONE, responses: { '200': { description: 'HTML' } } } },
    '/': { get: { tags: ['docs'], summary: 'The web data preview (sign in with a client key)', security: NONE, responses: { '200': { description: 'HTML' } } } },
  };
}

export function openApiDocument(version: string): Record<string, unknown> {
  return {
    openapi: '3.1.0',
    info: {
      title: 'Relay router',
      version,
      description: 'Run commands on on-premise connectors over Server-Sent Events and get the results back fast and intact. Wire protocol version 1. Every error answer has the body `{"status":"error","request_id"?,"error":{"code","message"}}`.',
    },
    tags: [
      { name: 'client', description: 'Ask for data, follow and cancel (client key)' },
      { name: 'connector', description: 'Commands in, results out (connector token)' },
      { name: 'operators', description: 'Health, metrics, fleet and queue' },
      { name: 'docs', description: 'Pages' },
    ],
    paths: paths(),
    components: {
      securitySchemes: {
        clientKey: { type: 'http', scheme: 'bearer', description: 'a client key (relay admin add-client)' },
        connectorToken: { type: 'http', scheme: 'bearer', description: 'a connector token (relay admin add-connector)' },
        adminSecret: { type: 'http', scheme: 'bearer', description: 'RELAY_ADMIN_TOKEN' },
      },
      schemas: Object.fromEntries(Object.entries(SCHEMAS).map(([name, s]) => [name, jsonSchema(s)])),
    },
  };
}
