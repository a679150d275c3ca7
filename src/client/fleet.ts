// The fleet view (PROTOCOL.md §4): connectors and, with the admin secret, queue counts.
import type { ClientConfig } from '../config.js';
import type { ConnectorInfo, QueueCounts } from '../protocol/index.js';
import { callRouter, errorFromResponse, readJson } from './http.js';

export async function listConnectors(cfg: ClientConfig): Promise<ConnectorInfo[]> {
  const res = await callRouter(cfg, 'GET', '/v1/connectors', { timeoutMs: 30_000 });
  if (res.statusCode !== 200) throw await errorFromResponse(res);
  return readJson<ConnectorInfo[]>(res, 'connector list');
}

export async function queueCounts(cfg: ClientConfig): Promise<QueueCounts> {
  const res = await callRouter(cfg, 'GET', '/v1/queue', { timeoutMs: 30_000 });
  if (res.statusCode !== 200) throw await errorFromResponse(res);
  return readJson<QueueCounts>(res, 'queue counts');
}
