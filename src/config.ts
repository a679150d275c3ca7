// The one place configuration is read: command-line flags override RELAY_* environment
// variables, which override defaults. Everything is validated at start-up and a bad value
// fails with one message naming the variable.
import { readFileSync } from 'node:fs';
import { networkInterfaces, tmpdir } from 'node:os';
import { join } from 'node:path';
// A namespace import: the CLI's bundle then holds only the zod it uses (`import { z }` brings its 64 locales; test/unit/cli-commands.test.ts).
import * as z from 'zod';

type Flags = Record<string, unknown>;
type Env = Record<string, string | undefined>;

export class ConfigError extends Error {
  override name = 'ConfigError';
}

const num = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().min(min).max(max);
const int = (min: number, max = Number.MAX_SAFE_INTEGER) => z.coerce.number().int().min(min).max(max);
const url = z.string().url();

/** One setting: its flag name (camelCase as commander gives it), env variable, schema, default. */
interface Setting<T> {
  flag?: string;
  env: string;
  schema: z.ZodType<T>;
  default?: T;
  /** The value may hold a secret (a database URL's password): errors do not echo it. */
  secret?: boolean;
}

function read<S extends Record<string, Setting<unknown>>>(
  settings: S,
  flags: Flags,
  env: Env,
): { [K in keyof S]: S[K] extends Setting<infer T> ? T : never } {
  const out: Record<string, unknown> = {};
  const problems: string[] = [];
  for (const [key, s] of Object.entries(settings)) {
    const fromFlag = s.flag ? flags[s.flag] : undefined;
    const fromEnv = env[s.env];
    const raw = fromFlag ?? (fromEnv === undefined || fromEnv === '' ? undefined : fromEnv);
    if (raw === undefined) {
      out[key] = s.default;
      continue;
    }
    const parsed = s.schema.safeParse(raw);
    if (parsed.success) out[key] = parsed.data;
    else problems.push(`${s.flag ? `--${kebab(s.flag)} / ` : ''}${s.env}${s.secret ? '' : `=${JSON.stringify(raw)}`}: ${parsed.error.issues.map((i) => i.message).join('; ')}`);
  }
  if (problems.length) throw new ConfigError(`invalid configuration:\n  ${problems.join('\n  ')}`);
  return out as never;
}

const kebab = (s: string) => s.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`);

const MiB = 1024 * 1024;

const routerSettings = {
  port: { flag: 'port', env: 'RELAY_PORT', schema: int(0, 65535), default: 8080 },
  host: { flag: 'host', env: 'RELAY_HOST', schema: z.string().min(1), default: '0.0.0.0' },
  /** How the other router instances reach this one (result hand-off); derived from host and port when unset. */
  advertiseUrl: { env: 'RELAY_ADVERTISE_URL', schema: url.optional(), default: undefined },
  redisUrl: { flag: 'redisUrl', env: 'RELAY_REDIS_URL', schema: url, default: 'redis://127.0.0.1:6379' },
  s3Endpoint: { env: 'RELAY_S3_ENDPOINT', schema: url.optional(), default: undefined },
  s3AccessKey: { env: 'RELAY_S3_ACCESS_KEY', schema: z.string().min(1), default: 'relay-dev' },
  s3SecretKey: { env: 'RELAY_S3_SECRET_KEY', schema: z.string().min(1), default: 'relay-dev-secret' },
  s3Bucket: { env: 'RELAY_S3_BUCKET', schema: z.string().regex(/^[a-z0-9][a-z0-9.-]{2,62}$/, 'an S3 bucket name'), default: 'relay-results' },
  s3Region: { env: 'RELAY_S3_REGION', schema: z.string().min(1), default: 'us-east-1' },
  s3PublicEndpoint: { env: 'RELAY_S3_PUBLIC_ENDPOINT', schema: url.optional(), default: undefined },
  s3DevDir: { env: 'RELAY_S3_DIR', schema: z.string().min(1), default: '.relay/s3' },
  adminToken: { env: 'RELAY_ADMIN_TOKEN', schema: z.string().min(16, 'at least 16 characters').optional(), default: undefined },
  ackTimeoutS: { env: 'RELAY_ACK_TIMEOUT_S', schema: num(0.1, 3600), default: 30 },
  attempts: { env: 'RELAY_ATTEMPTS', schema: int(1, 100), default: 3 },
  backoffS: { env: 'RELAY_BACKOFF_S', schema: num(0, 3600), default: 1 },
  progressTimeoutS: { env: 'RELAY_PROGRESS_TIMEOUT_S', schema: num(0.1, 86_400), default: 60 },
  heartbeatS: { env: 'RELAY_HEARTBEAT_S', schema: num(0.1, 3600), default: 30 },
  bodyIdleTimeoutS: { env: 'RELAY_BODY_IDLE_TIMEOUT_S', schema: num(0.1, 3600), default: 30 },
  streamMaxAgeS: { env: 'RELAY_STREAM_MAX_AGE_S', schema: num(1, 86_400), default: 300 },
  syncLimitBytes: { env: 'RELAY_SYNC_LIMIT_BYTES', schema: int(0), default: 256 * MiB },
  syncMemoryBytes: { env: 'RELAY_SYNC_MEMORY_BYTES', schema: int(0), default: 64 * MiB },
  spillDir: { env: 'RELAY_SPILL_DIR', schema: z.string().min(1), default: join(tmpdir(), 'relay-spill') },
  streamWindowChunks: { env: 'RELAY_STREAM_WINDOW_CHUNKS', schema: int(1, 1024), default: 16 },
  chunkSize: { env: 'RELAY_CHUNK_SIZE', schema: int(1024, 8 * MiB), default: 512 * 1024 },
  compression: { env: 'RELAY_COMPRESSION', schema: z.enum(['zstd', 'none']), default: 'zstd' as 'zstd' | 'none' },
  partSize: { env: 'RELAY_PART_SIZE', schema: int(5 * MiB, 5 * 1024 * MiB), default: 5 * MiB },
  retentionS: { env: 'RELAY_RETENTION_S', schema: int(60), default: 3600 },
  partUrlTtlS: { env: 'RELAY_PART_URL_TTL_S', schema: int(1, 7 * 86_400), default: 900 },
  getUrlTtlS: { env: 'RELAY_GET_URL_TTL_S', schema: int(1, 7 * 86_400), default: 3600 },
  requestTtlS: { env: 'RELAY_REQUEST_TTL_S', schema: int(60), default: 86_400 },
  defaultTimeoutS: { env: 'RELAY_DEFAULT_TIMEOUT_S', schema: num(1, 86_400), default: 300 },
  reattachGraceS: { env: 'RELAY_REATTACH_GRACE_S', schema: num(0, 3600), default: 15 },
  shutdownGraceS: { env: 'RELAY_SHUTDOWN_GRACE_S', schema: num(0, 3600), default: 20 },
  limitSync: { env: 'RELAY_LIMIT_SYNC', schema: int(1, 1_000_000), default: 200 },
  limitStream: { env: 'RELAY_LIMIT_STREAM', schema: int(1, 1_000_000), default: 50 },
  limitOffload: { env: 'RELAY_LIMIT_OFFLOAD', schema: int(1, 1_000_000), default: 10 },
  limitPerConnector: { env: 'RELAY_LIMIT_PER_CONNECTOR', schema: int(1, 1_000_000), default: 100 },
  limitLeaseS: { env: 'RELAY_LIMIT_LEASE_S', schema: num(1, 3600), default: 30 },
  rateLimitRetryS: { env: 'RELAY_RATE_LIMIT_RETRY_S', schema: num(0.1, 3600), default: 1 },
  tlsCert: { flag: 'tlsCert', env: 'RELAY_TLS_CERT', schema: z.string().min(1).optional(), default: undefined },
  tlsKey: { flag: 'tlsKey', env: 'RELAY_TLS_KEY', schema: z.string().min(1).optional(), default: undefined },
  maxHeaderBytes: { env: 'RELAY_MAX_HEADER_BYTES', schema: int(1024, 1024 * 1024), default: 16 * 1024 },
  logLevel: { env: 'RELAY_LOG_LEVEL', schema: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']), default: 'info' },
} satisfies Record<string, Setting<unknown>>;

export type RouterConfig = ReturnType<typeof routerConfig>;
export function routerConfig(flags: Flags = {}, env: Env = process.env) {
  const c = read(routerSettings, flags, env);
  if ((c.tlsCert === undefined) !== (c.tlsKey === undefined)) throw new ConfigError('invalid configuration: HTTPS needs both RELAY_TLS_CERT and RELAY_TLS_KEY (or neither)');
  return c;
}

/** Reads a PEM file named by a setting, failing with the setting's name. */
export function readPem(path: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new ConfigError(`invalid configuration: ${what} ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  if (!text.includes('-----BEGIN ')) throw new ConfigError(`invalid configuration: ${what} ${path} is not a PEM file`);
  return text;
}

/** A database a connector may run SQL on, named on its command line (issue: SQL on real databases). */
export type DatabaseSpec = { name: string; kind: 'postgres'; url: string } | { name: string; kind: 'duckdb' };

const DB_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;

/**
 * `main=postgres://user@host/db` or `files=duckdb`, from repeated --database flags or from
 * RELAY_DATABASES (comma-separated; percent-encode commas inside a URL). Order is kept: the
 * first is the default database.
 */
export const databasesSchema = z.union([z.string(), z.array(z.string())]).transform((raw, ctx): DatabaseSpec[] => {
  const items = (Array.isArray(raw) ? raw : raw.split(',')).map((s) => s.trim()).filter(Boolean);
  const out: DatabaseSpec[] = [];
  for (const item of items) {
    const eq = item.indexOf('=');
    const name = eq > 0 ? item.slice(0, eq) : '';
    const target = item.slice(eq + 1);
    if (!DB_NAME.test(name)) {
      ctx.addIssue({ code: 'custom', message: `"${item.split('://')[0]}...": expected NAME=postgres://... or NAME=duckdb, NAME of letters, digits, . _ -` });
      continue;
    }
    if (out.some((d) => d.name === name)) ctx.addIssue({ code: 'custom', message: `database "${name}" is named twice` });
    if (target === 'duckdb') out.push({ name, kind: 'duckdb' });
    else if (/^postgres(ql)?:\/\//.test(target) && URL.canParse(target)) out.push({ name, kind: 'postgres', url: target });
    // The URL may hold a password: never echo it.
    else ctx.addIssue({ code: 'custom', message: `database "${name}": expected postgres://... (or postgresql://...) or duckdb` });
  }
  return out;
});

const connectorSettings = {
  routerUrl: { flag: 'router', env: 'RELAY_ROUTER_URL', schema: url, default: 'http://127.0.0.1:8080' },
  id: { flag: 'id', env: 'RELAY_CONNECTOR_ID', schema: z.string().min(1).max(128).optional(), default: undefined },
  token: { flag: 'token', env: 'RELAY_CONNECTOR_TOKEN', schema: z.string().min(1).optional(), default: undefined },
  dataDir: { flag: 'dataDir', env: 'RELAY_DATA_DIR', schema: z.string().min(1), default: '.' },
  concurrency: { flag: 'concurrency', env: 'RELAY_CONCURRENCY', schema: int(1, 10_000), default: 50 },
  uploadParallel: { flag: 'uploadParallel', env: 'RELAY_UPLOAD_PARALLEL', schema: int(1, 64), default: 16 },
  /** Body bytes of a command's chunk uploads in flight (so raw chunks: 4; compressed CSV: ~14). */
  uploadBytes: { env: 'RELAY_UPLOAD_BYTES', schema: int(64 * 1024, 256 * MiB), default: 2 * MiB },
  caFile: { flag: 'caFile', env: 'RELAY_CA_FILE', schema: z.string().min(1).optional(), default: undefined },
  connections: { env: 'RELAY_HTTP_CONNECTIONS', schema: int(1, 10_000), default: 100 },
  zstdLevel: { env: 'RELAY_ZSTD_LEVEL', schema: int(-7, 22), default: 1 },
  /** auto: compress a chunk only while that is measured to be faster (connector/compression.ts). */
  zstdMode: { flag: 'zstd', env: 'RELAY_ZSTD', schema: z.enum(['auto', 'always']), default: 'auto' as 'auto' | 'always' },
  metricsPort: { flag: 'metricsPort', env: 'RELAY_METRICS_PORT', schema: int(0, 65535).optional(), default: undefined },
  metricsHost: { flag: 'metricsHost', env: 'RELAY_METRICS_HOST', schema: z.string().min(1), default: '127.0.0.1' },
  logLevel: { env: 'RELAY_LOG_LEVEL', schema: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']), default: 'info' },
  databases: { flag: 'database', env: 'RELAY_DATABASES', schema: databasesSchema, default: [] as DatabaseSpec[], secret: true },
  sqlTimeoutS: { flag: 'sqlTimeout', env: 'RELAY_SQL_TIMEOUT_S', schema: num(0.1, 86_400), default: 300 },
  sqlBatchRows: { env: 'RELAY_SQL_BATCH_ROWS', schema: int(1, 1_000_000), default: 10_000 },
  duckdbMemoryLimit: { env: 'RELAY_DUCKDB_MEMORY_LIMIT', schema: z.string().regex(/^\d+(\.\d+)?\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)$/i, 'a size such as 512MB or 2GiB'), default: '1GB' },
  duckdbThreads: { env: 'RELAY_DUCKDB_THREADS', schema: int(1, 1024), default: 2 },
} satisfies Record<string, Setting<unknown>>;

export type ConnectorConfig = ReturnType<typeof connectorConfig> & { id: string; token: string };
export function connectorConfig(flags: Flags = {}, env: Env = process.env) {
  // commander hands an empty list when --database was not given: the variable applies then.
  if (Array.isArray(flags.database) && flags.database.length === 0) flags = { ...flags, database: undefined };
  const c = read(connectorSettings, flags, env);
  if (!c.token) throw new ConfigError('invalid configuration: a connector token is required (--token or RELAY_CONNECTOR_TOKEN)');
  // Extra CA certificates to trust (a private CA in front of the router or the object store).
  const ca = c.caFile ? readPem(c.caFile, 'RELAY_CA_FILE') : undefined;
  return { ...c, id: c.id ?? primaryMacId(), token: c.token, ca };
}

const clientSettings = {
  routerUrl: { flag: 'router', env: 'RELAY_ROUTER_URL', schema: url, default: 'http://127.0.0.1:8080' },
  apiKey: { flag: 'key', env: 'RELAY_API_KEY', schema: z.string().min(1).optional(), default: undefined },
  caFile: { flag: 'caFile', env: 'RELAY_CA_FILE', schema: z.string().min(1).optional(), default: undefined },
} satisfies Record<string, Setting<unknown>>;

/** ca: extra CA certificates (PEM) to trust for the router and the object store. */
export type ClientConfig = { routerUrl: string; apiKey: string; ca?: string };
export function clientConfig(flags: Flags = {}, env: Env = process.env): ClientConfig {
  const c = read(clientSettings, flags, env);
  if (!c.apiKey) throw new ConfigError('invalid configuration: a client key is required (--key or RELAY_API_KEY)');
  return { routerUrl: c.routerUrl, apiKey: c.apiKey, ...(c.caFile ? { ca: readPem(c.caFile, 'RELAY_CA_FILE') } : {}) };
}

const statusSettings = {
  ...clientSettings,
  adminToken: { env: 'RELAY_ADMIN_TOKEN', schema: z.string().min(1).optional(), default: undefined },
} satisfies Record<string, Setting<unknown>>;

/** `relay status`: the admin secret (every tenant, queue counts) or a client key (its tenant). */
export function statusConfig(flags: Flags = {}, env: Env = process.env): ClientConfig & { admin: boolean } {
  const c = read(statusSettings, flags, env);
  // An explicit --key wins over the admin secret in the environment.
  const useAdmin = c.adminToken !== undefined && flags.key === undefined;
  const secret = useAdmin ? c.adminToken : c.apiKey;
  if (!secret) throw new ConfigError('invalid configuration: the admin secret (RELAY_ADMIN_TOKEN) or a client key (--key or RELAY_API_KEY) is required');
  return { routerUrl: c.routerUrl, apiKey: secret, admin: useAdmin };
}

const adminSettings = {
  redisUrl: { flag: 'redisUrl', env: 'RELAY_REDIS_URL', schema: url, default: 'redis://127.0.0.1:6379' },
} satisfies Record<string, Setting<unknown>>;
export function adminConfig(flags: Flags = {}, env: Env = process.env) {
  return read(adminSettings, flags, env);
}

/** The default connector id: the primary MAC address as `cc-28-aa-01-02-03`. */
export function primaryMacId(): string {
  const ifaces = Object.entries(networkInterfaces()).sort(([a], [b]) => a.localeCompare(b));
  for (const [, addrs] of ifaces) {
    for (const a of addrs ?? []) {
      if (!a.internal && a.mac && a.mac !== '00:00:00:00:00:00') return a.mac.toLowerCase().replaceAll(':', '-');
    }
  }
  throw new ConfigError('invalid configuration: no network interface with a MAC address; pass --id or RELAY_CONNECTOR_ID');
}
