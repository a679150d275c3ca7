// Starts a router: Redis connections, object store (embedded s3rver when none is configured),
// dispatch worker, SSE hub, HTTP server. stop() is the graceful shutdown.
import { randomBytes } from 'node:crypto';
import type { Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { Duplex } from 'node:stream';
import { createAdaptorServer } from '@hono/node-server';
import { readPem, type RouterConfig } from '../config.js';
import { createLogger, type Logger } from '../log.js';
import { RelayError } from '../protocol/errors.js';
import { createApp } from './app.js';
import { Auth } from './auth.js';
import { BufferPool } from '../protocol/buffer-pool.js';
import { Bus } from './bus.js';
import { CommandLog, Hub } from './commands.js';
import { Dispatcher } from './dispatch.js';
import { advertisedUrl, Handoff } from './handoff.js';
import { Limiter } from './limits.js';
import { createMetrics } from './metrics.js';
import { bodyReads, isWildcard, urlOf } from './http.js';
import { connectRedis } from './redis.js';
import { Requests } from './requests.js';
import { uploadLimit } from './routes/uploads.js';
import { Sinks } from './results.js';
import { SyncSpill } from './spill.js';
import { startDevS3, Storage } from './storage.js';
import { YoungGc } from '../protocol/young-gc.js';

export interface RunningRouter {
  url: string;
  port: number;
  s3Endpoint: string;
  stop(): Promise<void>;
}

export async function startRouter(cfg: RouterConfig, log: Logger = createLogger('router', cfg.logLevel)): Promise<RunningRouter> {
  const instanceId = `i_${randomBytes(6).toString('hex')}`;
  // Certificate files first: a bad path fails before anything is started.
  const tls = cfg.tlsCert && cfg.tlsKey ? { cert: readPem(cfg.tlsCert, 'RELAY_TLS_CERT'), key: readPem(cfg.tlsKey, 'RELAY_TLS_KEY') } : null;
  // ioredis reconnects by itself; say so once every few seconds, not per failed try.
  let lastRedisError = 0;
  const onRedisError = (err: Error) => {
    if (Date.now() - lastRedisError < 5000) return;
    lastRedisError = Date.now();
    log.warn({ err: err.message }, 'redis connection error (reconnecting)');
  };
  const redis = connectRedis(cfg.redisUrl, 'router', onRedisError, { autoPipelining: true });
  const sub = connectRedis(cfg.redisUrl, 'router-sub', onRedisError);
  // Not auto-pipelined: each auto-pipelined batch is an ioredis Pipeline that copies every script
  // defined on its connection (BullMQ's ~45: 42 µs and 10 KB each), and the queue's calls (a
  // request's add, then its removal) seldom share a tick. Router CPU per 1 KB request 5 % lower.
  const bullConn = connectRedis(cfg.redisUrl, 'router-queue', onRedisError);
  const bullWorkerConn = connectRedis(cfg.redisUrl, 'router-worker', onRedisError);
  await redis.ping();

  let devS3: Awaited<ReturnType<typeof startDevS3>> | null = null;
  let s3Endpoint = cfg.s3Endpoint;
  let creds = { accessKey: cfg.s3AccessKey, secretKey: cfg.s3SecretKey };
  if (!s3Endpoint) {
    // s3rver knows one fixed key pair.
    creds = { accessKey: 'S3RVER', secretKey: 'S3RVER' };
    devS3 = await startDevS3(cfg.s3DevDir, cfg.s3Bucket);
    s3Endpoint = devS3.endpoint;
    log.warn({ endpoint: s3Endpoint, dir: cfg.s3DevDir }, 'RELAY_S3_ENDPOINT is not set: using an embedded S3-compatible store (s3rver) for DEVELOPMENT only');
  }
  const storage = new Storage(
    { endpoint: s3Endpoint, publicEndpoint: cfg.s3PublicEndpoint, ...creds, bucket: cfg.s3Bucket, region: cfg.s3Region, retentionS: cfg.retentionS },
    log,
  );
  await storage.init();

  const metrics = createMetrics();
  const bus = new Bus(sub, log);
  await bus.start();
  const requests = new Requests(redis, cfg.requestTtlS);
  const commands = new CommandLog(redis);
  const hub = new Hub(redis, commands, bus, { heartbeatS: cfg.heartbeatS, maxAgeS: cfg.streamMaxAgeS, instanceId }, metrics, log);
  const dispatcher = new Dispatcher(
    bullConn,
    bullWorkerConn,
    redis,
    {
      ackTimeoutS: cfg.ackTimeoutS,
      attempts: cfg.attempts,
      backoffS: cfg.backoffS,
      progressTimeoutS: cfg.progressTimeoutS,
      chunkSize: cfg.chunkSize,
      compression: cfg.compression,
      concurrency: 1000,
      partUrls: (off, parts) => storage.presignParts(off.key, off.uploadId, parts, cfg.partUrlTtlS),
    },
    requests,
    commands,
    bus,
    metrics,
    log,
  );
  dispatcher.start();

  let accepting = true;
  const sinks = new Sinks();
  const openAnswers = { count: 0 };
  const spill = await SyncSpill.open({ memoryBytes: cfg.syncMemoryBytes, root: cfg.spillDir }, metrics, log);
  const limiter = new Limiter(
    redis,
    {
      perClass: { sync: cfg.limitSync, stream: cfg.limitStream, offload: cfg.limitOffload },
      perConnector: cfg.limitPerConnector,
      leaseS: cfg.limitLeaseS,
      retryAfterMs: cfg.rateLimitRetryS * 1000,
    },
    log,
    (mode, reason) => metrics.rateLimited.inc({ mode, reason }),
  );
  limiter.start();
  const auth = new Auth(redis, cfg.adminToken);
  // A revoked or rotated secret stops working at once on every instance, not after the cache TTL.
  bus.on('revoke', (ev: { hash: string }) => auth.forget(ev.hash));
  // Buffers for chunk bodies and decoded chunks. In use ones are bounded by the stream windows
  // and the sync memory budget; up to a window plus that budget are kept for reuse, down to a
  // window once the router has been idle for a while. A sync result holds its chunks until the
  // answer, so with only a window kept, every 100 MB answer faulted in ~85 MB of fresh memory
  // (8 µs a page on a VM): 0.47-0.60 s of router CPU per 100 MB sync against 0.25-0.30 s reused.
  const bufSize = uploadLimit(cfg.chunkSize);
  const chunkBuffers = new BufferPool(bufSize, cfg.streamWindowChunks + Math.ceil(cfg.syncMemoryBytes / bufSize), { keep: cfg.streamWindowChunks, ms: 10_000 });
  const handoff = new Handoff(log, tls?.cert);
  const app = createApp({ cfg, redis, auth, bus, requests, commands, hub, dispatcher, sinks, handoff, chunkBuffers, youngGc: new YoungGc(8 * 1024 * 1024), spill, storage, limiter, metrics, log, openAnswers, accepting: () => accepting });
  const server = (
    tls
      ? createAdaptorServer({ fetch: app.fetch, createServer: createHttpsServer, serverOptions: { ...tls, maxHeaderSize: cfg.maxHeaderBytes } })
      : createAdaptorServer({ fetch: app.fetch, serverOptions: { maxHeaderSize: cfg.maxHeaderBytes } })
  ) as Server;
  // Requests Node refuses before any route sees them (headers over the limit, broken HTTP)
  // still get an answer in the protocol's error format.
  server.on('clientError', (err: NodeJS.ErrnoException, socket) => answerClientError(err, socket, cfg.maxHeaderBytes));
  // Event streams are long-lived; Node's default request timeout would cut them. A body that
  // stops coming is given up by readBody instead.
  server.requestTimeout = 0;
  bodyReads.idleMs = cfg.bodyIdleTimeoutS * 1000;
  server.headersTimeout = 60_000;
  server.keepAliveTimeout = 65_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(cfg.port, cfg.host, () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  const url = urlOf(isWildcard(cfg.host) ? '127.0.0.1' : cfg.host, port, tls !== null);
  handoff.self = advertisedUrl(cfg.advertiseUrl, cfg.host, port, tls !== null);
  log.info({ url, instance: instanceId, advertised: handoff.self }, 'router listening');

  return {
    url,
    port,
    s3Endpoint,
    async stop() {
      // No new requests or event streams; connectors reconnect elsewhere (or here, restarted)
      // while their uploads for requests in flight still land here.
      accepting = false;
      hub.closeAll();
      // In-flight client answers get a bounded time to finish.
      const deadline = Date.now() + cfg.shutdownGraceS * 1000;
      // Every client answer (a sync/stream sink included) is counted until it is handed over.
      while (openAnswers.count > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
      if (openAnswers.count > 0) log.warn({ answers: openAnswers.count }, 'shutdown grace over: cutting the answers still open (clients re-attach with their Idempotency-Key)');
      await new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      });
      // Jobs still running are not waited for: they stall and are adopted by another router.
      await dispatcher.close(true);
      await limiter.close();
      await handoff.close();
      storage.stop();
      await spill.close();
      await devS3?.close();
      await Promise.all([redis.quit(), sub.quit(), bullConn.quit(), bullWorkerConn.quit()].map((p) => p.catch(() => undefined)));
    },
  };
}

function answerClientError(err: NodeJS.ErrnoException, socket: Duplex, maxHeaderBytes: number): void {
  if (!socket.writable || err.code === 'ECONNRESET') {
    socket.destroy();
    return;
  }
  const e =
    err.code === 'HPE_HEADER_OVERFLOW'
      ? new RelayError('BAD_REQUEST', `request headers are over the limit of ${maxHeaderBytes} bytes`)
      : err.code === 'ERR_HTTP_REQUEST_TIMEOUT'
        ? null
        : new RelayError('BAD_REQUEST', `malformed HTTP request (${err.code ?? 'parse error'})`);
  if (!e) {
    socket.destroy();
    return;
  }
  const body = JSON.stringify(e.toBody());
  socket.end(`HTTP/1.1 ${e.status} Bad Request\r\ncontent-type: application/json\r\ncontent-length: ${Buffer.byteLength(body)}\r\nconnection: close\r\n\r\n${body}`);
}
