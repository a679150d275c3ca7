// Prometheus metrics (prom-client), one registry per router instance.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';

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
      buckets: [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300],
      registers: r,
    }),
    bytesRelayed: new Counter({ name: 'relay_bytes_relayed_total', help: 'Result bytes (decoded) delivered, by mode', labelNames: ['mode'] as const, registers: r }),
    chunksReceived: new Counter({ name: 'relay_chunks_received_total', help: 'Result chunks received, by outcome', labelNames: ['outcome'] as const, registers: r }),
    rateLimited: new Counter({ name: 'relay_rate_limited_total', help: 'RATE_LIMITED answers to clients, by size class and reason (class, share, connector)', labelNames: ['mode', 'reason'] as const, registers: r }),
    backpressure: new Counter({ name: 'relay_backpressure_total', help: 'BACKPRESSURE answers to connectors', registers: r }),
    connectorsOnline: new Gauge({ name: 'relay_connectors_online', help: 'Connectors with an open event stream on this router', registers: r }),
    streamsOpened: new Counter({ name: 'relay_event_streams_opened_total', help: 'Event streams opened', registers: r }),
    streamsClosed: new Counter({ name: 'relay_event_streams_closed_total', help: 'Event streams closed', registers: r }),
    commandsSent: new Counter({ name: 'relay_commands_sent_total', help: 'Command events written to event streams', registers: r }),
    commandsDispatched: new Counter({ name: 'relay_commands_dispatched_total', help: 'Command attempts dispatched', registers: r }),
    commandsRedelivered: new Counter({ name: 'relay_commands_redelivered_total', help: 'Attempts after the first (lease lapsed, no ack, client re-attached)', registers: r }),
    commandsAcked: new Counter({ name: 'relay_commands_acked_total', help: 'Command acknowledgements', registers: r }),
    queueDepth: new Gauge({ name: 'relay_queue_depth', help: 'Jobs in the command queue by state', labelNames: ['state'] as const, registers: r }),
    syncSpillBytes: new Counter({ name: 'relay_sync_spill_bytes_total', help: 'Sync result bytes (decoded) written to spill files because the sync memory budget was used up', registers: r }),
    syncSpillFiles: new Gauge({ name: 'relay_sync_spill_files', help: 'Spill files of sync results on disk', registers: r }),
    syncMemoryBytes: new Gauge({ name: 'relay_sync_memory_bytes', help: 'Sync result bytes held in memory (taken from RELAY_SYNC_MEMORY_BYTES)', registers: r }),
  };
}

export type Metrics = ReturnType<typeof createMetrics>;
