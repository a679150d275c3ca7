// The HTTP client of the CLI for the three request modes (PROTOCOL.md §2).
export { requestSync } from './sync.js';
export { requestStream, type StreamOptions } from './stream.js';
export { requestOffload, type OffloadOptions } from './offload.js';
export { getStatus, cancel } from './status.js';
export { closeHttp } from './http.js';
export type { RequestOptions, RequestResult } from './common.js';
export type { ProgressFn } from './body.js';
export { listConnectors, queueCounts } from './fleet.js';
