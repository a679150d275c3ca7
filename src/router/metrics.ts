// Prometheus metrics (prom-client), one registry per router instance.
// Labels stay low-cardinality: mode, outcome (a status word or an error code), state, stage.
// Never a request id, tenant or connector id: the fleet is not bounded by configuration.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

const DURATION_BUCKETS = [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300];

export function createMetrics() {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, prefix: 'relay_router_' });
  const r = [registry];
  return {
    registry,
    requests: new Counter({ name: 'relay_requests_total', help: 'Client requests by mode and outcome', labelNames: ['mode', 'outcome'] as const, registers: r }),
    requestDuration: new Histogram({
      name: 'relay_request_duration_seconds',
      help: 'Client request duration by mode',
      labelNames: ['mode'] as const,
      buckets: DURATION_BUCKETS,
      registers: r,
    }),
    timeToFirstByte: new Histogram({
      name: 'relay_request_ttfb_seconds',
      help: 'Time from accepting a request to the first result byte sent to the client (offload: to the answer with the download URL)',
      labelNames: ['mode'] as const,
      buckets: DURATION_BUCKETS,
      registers: r,
    }),
    inFlight: new Gauge({ name: 'relay_requests_in_flight', help: 'Client requests this router is answering, by size class (mode)', labelNames: ['mode'] as const, registers: r }),
    bytesRelayed: new Counter({
      name: 'relay_bytes_out_total',
      help: 'Result bytes sent to clients, by mode (as written: zstd frames in stream pass-through; offload: decoded size of the stored result)',
      labelNames: ['mode'] as const,
      registers: r,
    }),
    bytesIn: new Counter({
      name: 'relay_bytes_in_total',
      help: 'Result bytes received from connectors, by mode (upload bodies as sent; offload: bytes the connector stored in the object store)',
      labelNames: ['mode'] as const,
      registers: r,
    }),
    chunksReceived: new Counter({ name: 'relay_chunks_received_total', help: 'Result chunks received, by outcome', labelNames: ['outcome'] as const, registers: r }),
    chunkRetries: new Counter({ name: 'relay_chunk_retries_total', help: 'Chunk uploads for an index the router already stored (a connector retry whose first try arrived)', registers: r }),
    checksumFailures: new Counter({
      name: 'relay_checksum_failures_total',
      help: 'Checksum mismatches: stage=chunk (an upload body), stage=result (the whole result at complete)',
      labelNames: ['stage'] as const,
      registers: r,
    }),
    rateLimited: new Counter({ name: 'relay_rate_limited_total', help: 'RATE_LIMITED answers to clients, by size class and reason (class, share, connector)', labelNames: ['mode', 'reason'] as const, registers: r }),
    uploadsForwarded: new Counter({
      name: 'relay_uploads_forwarded_total',
      help: 'Connector uploads passed to the router instance holding the client\'s answer, by the status it answered (or unreachable, failed)',
      labelNames: ['outcome'] as const,
      registers: r,
    }),
    backpressure: new Counter({ name: 'relay_backpressure_total', help: 'BACKPRESSURE answers to connectors', registers: r }),
    connectorsOnline: new Gauge({ name: 'relay_connectors_online', help: 'Connectors with an open event stream on this router', registers: r }),
    streamsOpened: new Counter({ name: 'relay_event_streams_opened_total', help: 'Event streams opened (connector connects)', registers: r }),
    streamsClosed: new Counter({ name: 'relay_event_streams_closed_total', help: 'Event streams closed (connector disconnects)', registers: r }),
    commandsSent: new Counter({ name: 'relay_commands_sent_total', help: 'Command events written to event streams', registers: r }),
    commandsDispatched: new Counter({ name: 'relay_commands_dispatched_total', help: 'Command attempts dispatched', registers: r }),
    commandsRedelivered: new Counter({ name: 'relay_commands_redelivered_total', help: 'Attempts after the first (lease lapsed, no ack, client re-attached, retried from the dashboard)', registers: r }),
    commandsAcked: new Counter({ name: 'relay_commands_acked_total', help: 'Command acknowledgements', registers: r }),
    queueDepth: new Gauge({ name: 'relay_queue_depth', help: 'Jobs in the command queue by state', labelNames: ['state'] as const, registers: r }),
    syncSpillBytes: new Counter({ name: 'relay_sync_spill_bytes_total', help: 'Sync result bytes (decoded) written to spill files because the sync memory budget was used up', registers: r }),
    syncSpillFiles: new Gauge({ name: 'relay_sync_spill_files', help: 'Spill files of sync results on disk', registers: r }),
    syncMemoryBytes: new Gauge({ name: 'relay_sync_memory_bytes', help: 'Sync result bytes held in memory (taken from RELAY_SYNC_MEMORY_BYTES)', registers: r }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
