// The connector's own Prometheus metrics (prom-client), served on a local port only when asked
// (--metrics-port). Labels are low-cardinality: mode, outcome, reason.
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import type { Logger } from '../log.js';

export interface ConnectorStats {
  running: number;
  queued: number;
  connected: boolean;
}

export function createConnectorMetrics(stats: () => ConnectorStats) {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'relay_connector_' });
  const r = [registry];
  return {
    registry,
    commandsReceived: new Counter({ name: 'relay_connector_commands_received_total', help: 'Commands accepted from the event stream (first delivery of an attempt)', registers: r }),
    commandsRedelivered: new Counter({ name: 'relay_connector_commands_redelivered_total', help: 'Commands received again for an attempt already running (acknowledged again, not re-run)', registers: r }),
    commands: new Counter({
      name: 'relay_connector_commands_total',
      help: 'Commands finished, by mode and outcome (delivered, failed, stopped, gone)',
      labelNames: ['mode', 'outcome'] as const,
      registers: r,
    }),
    bytesSent: new Counter({ name: 'relay_connector_bytes_sent_total', help: 'Decoded result bytes uploaded by this connector, by mode', labelNames: ['mode'] as const, registers: r }),
    uploadRetries: new Counter({
      name: 'relay_connector_upload_retries_total',
      help: 'Upload tries repeated, by reason (backpressure, checksum, rate_limited, server, network, other)',
      labelNames: ['reason'] as const,
      registers: r,
    }),
    streamConnects: new Counter({ name: 'relay_connector_event_stream_connects_total', help: 'Event streams opened (hello received)', registers: r }),
    connected: new Gauge({
      name: 'relay_connector_event_stream_connected',
      help: '1 while the event stream is open',
      registers: r,
      collect() {
        this.set(stats().connected ? 1 : 0);
      },
    }),
    running: new Gauge({
      name: 'relay_connector_commands_running',
      help: 'Commands running now',
      registers: r,
      collect() {
        this.set(stats().running);
      },
    }),
    queued: new Gauge({
      name: 'relay_connector_commands_queued',
      help: 'Commands waiting for a worker slot',
      registers: r,
      collect() {
        this.set(stats().queued);
      },
    }),
  };
}

export type ConnectorMetrics = ReturnType<typeof createConnectorMetrics>;

/** Why an upload was tried again, from the HTTP status of the failed try (none: network). */
export function retryReason(status: number | undefined): string {
  if (status === undefined) return 'network';
  if (status === 503) return 'backpressure';
  if (status === 422) return 'checksum';
  if (status === 429) return 'rate_limited';
  if (status >= 500) return 'server';
  return 'other';
}

/** Serves GET /metrics on host:port (plain HTTP, no auth: bind it to a local address). */
export async function serveMetrics(metrics: ConnectorMetrics, host: string, port: number, log: Logger): Promise<{ port: number; close(): Promise<void> }> {
  const server: Server = createServer((req, res) => {
    if (req.method !== 'GET' || (req.url ?? '').split('?')[0] !== '/metrics') {
      res.writeHead(404, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ status: 'error', error: { code: 'NOT_FOUND', message: 'only GET /metrics is served here' } }));
      return;
    }
    metrics.registry.metrics().then(
      (text) => {
        res.writeHead(200, { 'content-type': metrics.registry.contentType });
        res.end(text);
      },
      (err: unknown) => {
        res.writeHead(500, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ status: 'error', error: { code: 'INTERNAL', message: (err as Error).message } }));
      },
    );
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  const bound = (server.address() as AddressInfo).port;
  log.info({ url: `http://${host.includes(':') ? `[${host}]` : host}:${bound}/metrics` }, 'connector metrics listening');
  return {
    port: bound,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
