// The object store adapter (any S3: MinIO in production, s3rver in development), through the
// `minio` client. Only the router holds credentials; connectors and clients get presigned URLs.
import { randomBytes } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import * as Minio from 'minio';
import type { Logger } from '../log.js';
import { RelayError } from '../protocol/errors.js';
import type { OffloadPartsResponse } from '../protocol/wire.js';
import { isConnectionError } from './http.js';

export interface StorageConfig {
  endpoint: string;
  publicEndpoint?: string;
  accessKey: string;
  secretKey: string;
  bucket: string;
  region: string;
  retentionS: number;
}

function clientFor(endpoint: string, cfg: StorageConfig): Minio.Client {
  const u = new URL(endpoint);
  const useSSL = u.protocol === 'https:';
  return new Minio.Client({
    endPoint: u.hostname,
    port: u.port ? Number(u.port) : useSSL ? 443 : 80,
    useSSL,
    accessKey: cfg.accessKey,
    secretKey: cfg.secretKey,
    // A fixed region keeps presigning offline (no bucket-location round trip).
    region: cfg.region,
    pathStyle: true,
  });
}

/**
 * Waits between tries of a store call that failed for a passing reason (about 5 s in all), so
 * that a store restarting or briefly unreachable does not fail the offloads asked for meanwhile.
 */
const TRANSIENT_RETRY_MS = [200, 400, 800, 1600, 2000];

/** A failure worth another try: no connection, a cut one, or the store saying it is busy or broken. */
function isTransientStoreError(err: unknown): boolean {
  const { code } = err as { code?: string };
  return isConnectionError(err) || (code !== undefined && ['InternalError', 'ServiceUnavailable', 'SlowDown', 'RequestTimeout'].includes(code));
}

async function withRetries<T>(op: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await op();
    } catch (err) {
      if (!isTransientStoreError(err)) throw err;
      if (i >= TRANSIENT_RETRY_MS.length) {
        throw new RelayError('INTERNAL', `the object store could not be reached for ${TRANSIENT_RETRY_MS.reduce((a, b) => a + b) / 1000} s: ${(err as Error).message}; retry later`, { retryAfterMs: 5000 });
      }
      await new Promise((r) => setTimeout(r, TRANSIENT_RETRY_MS[i]));
    }
  }
}

export class Storage {
  private readonly s3: Minio.Client;
  /** Presigns with the host connectors and clients reach (may differ from the router's). */
  private readonly signer: Minio.Client;
  private sweeper?: NodeJS.Timeout;

  constructor(
    readonly cfg: StorageConfig,
    private readonly log: Logger,
  ) {
    this.s3 = clientFor(cfg.endpoint, cfg);
    this.signer = cfg.publicEndpoint ? clientFor(cfg.publicEndpoint, cfg) : this.s3;
  }

  /** Creates the bucket if needed and sets its retention; starts the sweeper. */
  async init(): Promise<void> {
    if (!(await this.s3.bucketExists(this.cfg.bucket))) await this.s3.makeBucket(this.cfg.bucket, this.cfg.region);
    await this.refusePublicBucket();
    // S3 lifecycle rules count in whole days; the sweeper below enforces sub-day retention.
    const days = Math.max(1, Math.ceil(this.cfg.retentionS / 86_400));
    try {
      await this.s3.setBucketLifecycle(this.cfg.bucket, {
        Rule: [{ ID: 'relay-retention', Status: 'Enabled', Filter: { Prefix: '' }, Expiration: { Days: days }, AbortIncompleteMultipartUpload: { DaysAfterInitiation: 1 } }],
      });
    } catch (err) {
      this.log.warn({ err: (err as Error).message }, 'object store refused the lifecycle rule; relying on the retention sweeper');
    }
    const every = Math.min(300_000, Math.max(10_000, (this.cfg.retentionS * 1000) / 6));
    this.sweeper = setInterval(() => void this.sweep().catch((err) => this.log.warn({ err: (err as Error).message }, 'retention sweep failed')), every);
    this.sweeper.unref();
  }

  /** Results are private: a bucket whose policy lets anonymous users in stops the router. */
  private async refusePublicBucket(): Promise<void> {
    let policy: string;
    try {
      policy = await this.s3.getBucketPolicy(this.cfg.bucket);
    } catch {
      return; // no policy (the private default), or a store that does not do policies
    }
    if (isPublicPolicy(policy)) {
      throw new Error(`bucket ${this.cfg.bucket} has a policy that allows anonymous access; results must stay private (MinIO: mc anonymous set none ALIAS/${this.cfg.bucket})`);
    }
  }

  stop(): void {
    clearInterval(this.sweeper);
  }

  async ping(): Promise<void> {
    await this.s3.bucketExists(this.cfg.bucket);
  }

  /** Object keys are unguessable: tenant, day, request id and 128 random bits. */
  newKey(tenant: string, requestId: string): string {
    return `${tenant}/${new Date().toISOString().slice(0, 10)}/${requestId}-${randomBytes(16).toString('hex')}`;
  }

  /**
   * A try whose answer was lost leaves an upload nobody completes: the bucket's lifecycle rule
   * aborts it after a day (and the store's part copies with it).
   */
  createMultipart(key: string): Promise<string> {
    return withRetries(() => this.s3.initiateNewMultipartUpload(this.cfg.bucket, key, { 'Content-Type': 'application/octet-stream' }));
  }

  async abortMultipart(key: string, uploadId: string): Promise<void> {
    await this.s3.abortMultipartUpload(this.cfg.bucket, key, uploadId).catch(() => undefined);
  }

  presignPart(key: string, uploadId: string, part: number, expiresS: number): Promise<string> {
    return this.signer.presignedUrl('PUT', this.cfg.bucket, key, expiresS, { partNumber: String(part), uploadId });
  }

  /** Part URLs as offload/parts answers them (also sent ahead in an offload command). */
  async presignParts(key: string, uploadId: string, parts: Iterable<number>, expiresS: number): Promise<OffloadPartsResponse> {
    const urls: Record<string, string> = {};
    for (const part of new Set(parts)) urls[String(part)] = await this.presignPart(key, uploadId, part, expiresS);
    return { urls, expires_at: new Date(Date.now() + expiresS * 1000).toISOString() };
  }

  /** A try whose answer was lost makes the next one fail (NoSuchUpload): the caller checks storedSize. */
  async completeMultipart(key: string, uploadId: string, parts: { part: number; etag: string }[]): Promise<number> {
    await withRetries(() => this.s3.completeMultipartUpload(this.cfg.bucket, key, uploadId, parts));
    const stat = await withRetries(() => this.s3.statObject(this.cfg.bucket, key));
    return stat.size;
  }

  /** The object's size, or null when there is no such object. */
  async storedSize(key: string): Promise<number | null> {
    try {
      return (await withRetries(() => this.s3.statObject(this.cfg.bucket, key))).size;
    } catch (err) {
      const code = (err as { code?: string }).code;
      if (code === 'NotFound' || code === 'NoSuchKey') return null;
      throw err;
    }
  }

  presignGet(key: string, expiresS: number): Promise<string> {
    return this.signer.presignedGetObject(this.cfg.bucket, key, expiresS);
  }

  /** Deletes result objects older than the retention period. */
  async sweep(): Promise<number> {
    const cutoff = Date.now() - this.cfg.retentionS * 1000;
    const old: string[] = [];
    const stream = this.s3.listObjectsV2(this.cfg.bucket, '', true);
    for await (const obj of stream as AsyncIterable<{ name?: string; lastModified?: Date }>) {
      if (obj.name && obj.lastModified && obj.lastModified.getTime() < cutoff) old.push(obj.name);
    }
    for (let i = 0; i < old.length; i += 1000) await this.s3.removeObjects(this.cfg.bucket, old.slice(i, i + 1000));
    if (old.length) this.log.info({ deleted: old.length }, 'retention sweep removed expired results');
    return old.length;
  }
}

/** True when an S3 bucket policy allows something to everyone (Principal "*"). */
export function isPublicPolicy(text: string): boolean {
  let doc: { Statement?: unknown };
  try {
    doc = JSON.parse(text) as { Statement?: unknown };
  } catch {
    return false;
  }
  const statements = Array.isArray(doc.Statement) ? doc.Statement : doc.Statement ? [doc.Statement] : [];
  return statements.some((st: { Effect?: string; Principal?: unknown }) => {
    if (st?.Effect !== 'Allow') return false;
    const p = st.Principal;
    if (p === '*') return true;
    const aws = (p as { AWS?: unknown } | undefined)?.AWS;
    return aws === '*' || (Array.isArray(aws) && aws.includes('*'));
  });
}

/** Starts the embedded S3-compatible store (s3rver) for development and tests. */
export async function startDevS3(dir: string, bucket: string): Promise<{ endpoint: string; close(): Promise<void> }> {
  await mkdir(dir, { recursive: true });
  const { default: S3rver } = await import('s3rver');
  const server = new S3rver({
    address: '127.0.0.1',
    port: 0,
    directory: dir,
    silent: true,
    resetOnClose: false,
    configureBuckets: [{ name: bucket }],
    vhostBuckets: false,
    allowMismatchedSignatures: true,
  });
  const { port } = await server.run();
  return { endpoint: `http://127.0.0.1:${port}`, close: () => server.close() };
}
