// Request records: one Redis hash per request, with a TTL. Every state transition is one
// Lua script (atomic), so a crash can never leave a request half-moved; every change is
// announced on the bus so whichever router holds the client's response learns of it.
import { nanoid } from 'nanoid';
import { RelayError, type ErrorCode } from '../protocol/errors.js';
import type { Format, Mode, RequestStatus, RequestStatusBody, TableSchema } from '../protocol/wire.js';
import { LuaScript } from './lua.js';
import { IN_FLIGHT_TTL_S, keys, type Redis } from './redis.js';

export interface RequestSpec {
  dataset?: string;
  sql?: string;
  database?: string;
  format: Format;
}

export interface RequestRecord {
  id: string;
  tenant: string;
  connector: string;
  mode: Mode;
  spec: RequestSpec;
  status: RequestStatus;
  attempt: number;
  createdAt: string;
  updatedAt: string;
  deadline: number;
  leaseAt: number;
  ackedAttempt: number;
  bytes: number;
  chunks: number;
  checksum: string | null;
  contentType: string | null;
  /** stream/init's column list for Arrow results (JSON). */
  schema: TableSchema | null;
  totalBytes: number | null;
  error: { code: ErrorCode; message: string } | null;
  /** Chunks 0..contiguous-1 are all stored: where a retry resumes. */
  contiguous: number;
  offload: { uploadId: string; key: string; partSize: number } | null;
  /** Offload, once complete: the presigned GET and the stored object's size (null: recorded by an older router). */
  download: { url: string; expiresAt: string; contentEncoding: 'zstd' | 'identity'; storedBytes: number | null } | null;
  /** Sync and stream: the instance holding the client's answer (handoff.ts), null before it was recorded. */
  answerAt: string | null;
}

const TERMINAL_STATUSES = ['complete', 'failed', 'cancelled'] as const;
export type TerminalStatus = (typeof TERMINAL_STATUSES)[number];
export const TERMINAL: readonly RequestStatus[] = TERMINAL_STATUSES;

export type BusEvent =
  | { t: 'req'; id: string; status: RequestStatus | 'acked'; attempt?: number }
  | { t: 'cmd'; connector: string; id: string; event: 'command' | 'cancel'; data: string }
  | { t: 'takeover'; connector: string; session: string }
  | { t: 'answer'; id: string; at: string }
  | { t: 'revoke'; connector?: string; hash: string };

// nanoid draws from a pooled buffer of random bytes: randomBytes(12) per request cost ~7 µs
// (17 µs under load, 2.5 % of the router's CPU in the small-requests bench). 16 characters of
// its URL-safe alphabet are the same 96 bits.
export const newRequestId = () => `r_${nanoid(16)}`;

// Guard shared by every connector call on a request: right connector, live request,
// current attempt. Renews the lease. Returns a status word the caller maps to a code.
const GUARD = `
local r = KEYS[1]
if redis.call('EXISTS', r) == 0 then return 'NOT_FOUND' end
local f = redis.call('HMGET', r, 'connector', 'status', 'attempt')
if f[1] ~= ARGV[1] then return 'FORBIDDEN' end
if f[2] == 'complete' then return 'COMPLETE' end
if f[2] == 'failed' or f[2] == 'cancelled' then return 'GONE' end
if tonumber(f[3]) ~= tonumber(ARGV[2]) then return 'STALE' end
redis.call('HSET', r, 'lease_at', ARGV[3], 'updated_at', ARGV[4])
if ARGV[5] == 'upload' and f[2] == 'dispatched' then redis.call('HSET', r, 'status', 'running') end
if ARGV[5] == 'ack' then redis.call('HSET', r, 'acked_attempt', ARGV[2]) end
`;

const SCRIPTS = {
  // KEYS: req, the connector's in-flight set. ARGV: ttl_s, in-flight ttl_s, request id, the
  // fields as one JSON object of strings.
  // One script rather than MULTI: a transaction is written on its own, a script joins the
  // commands other requests send in the same tick (auto-pipelining). One JSON argument rather
  // than 30 field/value arguments: ioredis's client-side cost grows with the argument count
  // (flattened, measured and framed one by one): 45 → 27 µs of client CPU per call, 20 at a time.
  relayCreate: new LuaScript(
    2,
    `
local f, hset = cjson.decode(ARGV[4]), {'HSET', KEYS[1]}
for k, v in pairs(f) do hset[#hset + 1] = k; hset[#hset + 1] = v end
redis.call(unpack(hset))
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('SADD', KEYS[2], ARGV[3])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return 'OK'`,
  ),
  relayGuard: new LuaScript(1, `${GUARD}
return 'OK'`),
  // KEYS: req, chunks. ARGV: connector, attempt, now_ms, now_iso, 'upload', index, checksum, decoded_len
  // A chunk is stored as <xxh64 as sent>:<decoded length>:<attempt>. The same chunk from a later
  // attempt may be encoded otherwise (another zstd level, raw): a new attempt resumes after the
  // contiguous chunks, so chunks stored out of order past them come again. Same decoded length
  // from an earlier attempt is a duplicate; the result's checksum at complete covers its bytes.
  // Other bytes within one attempt are a CONFLICT, as PROTOCOL.md §3.3 says.
  relayChunkPut: new LuaScript(
    2,
    `${GUARD}
local prev = redis.call('HGET', KEYS[2], ARGV[6])
if prev then
  if string.sub(prev, 1, 16) == ARGV[7] then return 'DUP' end
  local len, by = string.match(prev, '^%x+:(%d+):?(%d*)$')
  if by ~= nil and by ~= '' and tonumber(by) < tonumber(ARGV[2]) and len == ARGV[8] then return 'DUP' end
  return 'CONFLICT'
end
redis.call('HSET', KEYS[2], ARGV[6], ARGV[7] .. ':' .. ARGV[8] .. ':' .. ARGV[2])
redis.call('PEXPIRE', KEYS[2], redis.call('PTTL', KEYS[1]))
redis.call('HINCRBY', KEYS[1], 'recv_bytes', ARGV[8])
redis.call('HINCRBY', KEYS[1], 'recv_chunks', 1)
local c = tonumber(redis.call('HGET', KEYS[1], 'contiguous') or '0')
while redis.call('HEXISTS', KEYS[2], tostring(c)) == 1 do c = c + 1 end
redis.call('HSET', KEYS[1], 'contiguous', c)
return 'NEW'`,
  ),
  // KEYS: req. ARGV: status, now_iso, in-flight key prefix, bus channel, bus message, the
  // call's token (kept as ended_by), then field/value pairs (written with the status in one
  // HSET). Only from a live status. The end also leaves the connector's in-flight set and is
  // announced on the bus, in this one call.
  relayFinish: new LuaScript(
    1,
    `
local f = redis.call('HMGET', KEYS[1], 'status', 'connector', 'id', 'ended_by')
local s = f[1]
if not s then return 'NOT_FOUND' end
if s == 'complete' or s == 'failed' or s == 'cancelled' then
  -- This very call again (ioredis sends a script again when a Redis restart lost its reply).
  if f[4] == ARGV[6] then return 'OK' end
  return s
end
local hset = {'HSET', KEYS[1], 'status', ARGV[1], 'updated_at', ARGV[2], 'ended_by', ARGV[6]}
for i = 7, #ARGV do hset[#hset + 1] = ARGV[i] end
redis.call(unpack(hset))
redis.call('SREM', ARGV[3] .. f[2], f[3])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 'OK'`,
  ),
  // KEYS: req, the connector's pending commands. ARGV: connector, attempt, now_ms, now_iso,
  // 'ack', request id, bus channel, bus message. Command no longer pending, guard, and the news.
  // The pending command goes first, whatever the guard says: a connector uploads while its ack
  // is on the way, so the ack may come after the request ended (KEYS[2] is the caller's own).
  relayAck: new LuaScript(
    2,
    `
local p = redis.call('HGET', KEYS[2], ARGV[6])
if p and cjson.decode(p).attempt <= tonumber(ARGV[2]) then redis.call('HDEL', KEYS[2], ARGV[6]) end
${GUARD}
redis.call('PUBLISH', ARGV[7], ARGV[8])
return 'OK'`,
  ),
  // KEYS: req. ARGV: attempt, now_ms, now_iso. Starts a new attempt unless the request ended.
  relayNewAttempt: new LuaScript(
    1,
    `
local s = redis.call('HGET', KEYS[1], 'status')
if not s then return 'NOT_FOUND' end
if s == 'complete' or s == 'failed' or s == 'cancelled' then return s end
redis.call('HSET', KEYS[1], 'status', 'dispatched', 'attempt', ARGV[1], 'lease_at', ARGV[2], 'updated_at', ARGV[3], 'acked_attempt', 0)
return redis.call('HGET', KEYS[1], 'contiguous') or '0'`,
  ),
  // KEYS: req, chunks. ARGV: now_ms, now_iso, the call's token. A client re-attached with
  // nothing delivered yet: forget the chunks stored so far and start the next attempt from
  // chunk 0. A completed request is reopened too: its bytes were lost on the way to the client
  // (router restart). Returns the status it had and the new attempt.
  relayRestart: new LuaScript(
    2,
    `
local f = redis.call('HMGET', KEYS[1], 'status', 'restarted_by', 'restarted_from', 'attempt')
local s = f[1]
if not s then return 'NOT_FOUND' end
-- This very call again (ioredis sends a script again when a Redis restart lost its reply).
if f[2] == ARGV[3] then return f[3] .. ':' .. f[4] end
if s == 'failed' or s == 'cancelled' then return s end
redis.call('DEL', KEYS[2])
redis.call('HDEL', KEYS[1], 'bytes', 'chunks', 'checksum')
local a = redis.call('HINCRBY', KEYS[1], 'attempt', 1)
redis.call('HSET', KEYS[1], 'status', 'dispatched', 'lease_at', ARGV[1], 'updated_at', ARGV[2], 'acked_attempt', 0, 'contiguous', 0, 'recv_bytes', 0, 'recv_chunks', 0, 'restarted_by', ARGV[3], 'restarted_from', s)
return s .. ':' .. tostring(a)`,
  ),
  // KEYS: req. Marks a failed request whose queue job ended in the failed set (relayReopen).
  relayMarkJobFailed: new LuaScript(1, `if redis.call('HGET', KEYS[1], 'status') == 'failed' then redis.call('HSET', KEYS[1], 'job_failed', '1') end`),
  // KEYS: req. ARGV: deadline_ms, now_iso. A failed request whose queue job failed is opened
  // again (retry from the queue dashboard): back to queued, error cleared, a fresh deadline.
  relayReopen: new LuaScript(
    1,
    `
local f = redis.call('HMGET', KEYS[1], 'status', 'job_failed')
if not f[1] then return 'NOT_FOUND' end
if f[1] ~= 'failed' or f[2] ~= '1' then return f[1] end
redis.call('HDEL', KEYS[1], 'error_code', 'error_message', 'job_failed')
redis.call('HSET', KEYS[1], 'status', 'queued', 'deadline', ARGV[1], 'updated_at', ARGV[2])
return 'OK'`,
  ),
  // KEYS: a claim. ARGV: its token, then 'renew' and the ms, or 'release'. Only the holder's token acts.
  relayClaim: new LuaScript(
    1,
    `
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if ARGV[2] == 'renew' then return redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return redis.call('DEL', KEYS[1])`,
  ),
} as const;

/** How long a completion claim lives unless renewed (a third of it), so a router that dies mid-way holds up a retry only this long. */
export const COMPLETION_CLAIM_MS = 30_000;

/** A claim on completing one request's result, held by this call until release(). */
export interface CompletionClaim {
  release(): Promise<void>;
}

export type GuardOp = 'ack' | 'upload' | 'final';

export class Requests {
  /** Told once of each request that finish() ended here (the dispatcher settles its job). */
  private readonly endListeners: ((id: string, status: TerminalStatus) => void)[] = [];

  constructor(
    private readonly r: Redis,
    private readonly ttlS: number,
  ) {}

  /**
   * Stores a new request as attempt 1, already dispatched: the command goes out right after
   * the queue job is added (see Dispatcher.submit), and the in-flight set lists it.
   */
  async create(rec: Pick<RequestRecord, 'id' | 'tenant' | 'connector' | 'mode' | 'spec' | 'deadline' | 'offload'> & Partial<Pick<RequestRecord, 'answerAt'>>): Promise<void> {
    const nowMs = Date.now();
    const now = new Date(nowMs).toISOString();
    // Strings only: cjson would turn numbers into Lua numbers, which HSET writes as %.14g.
    const fields: Record<string, string> = {
      id: rec.id,
      tenant: rec.tenant,
      connector: rec.connector,
      mode: rec.mode,
      spec: JSON.stringify(rec.spec),
      status: 'dispatched',
      attempt: '1',
      created_at: now,
      updated_at: now,
      deadline: String(rec.deadline),
      lease_at: String(nowMs),
      acked_attempt: '0',
      contiguous: '0',
      recv_bytes: '0',
      recv_chunks: '0',
    };
    if (rec.answerAt) fields.answer_at = rec.answerAt;
    if (rec.offload) Object.assign(fields, { upload_id: rec.offload.uploadId, object_key: rec.offload.key, part_size: String(rec.offload.partSize) });
    await SCRIPTS.relayCreate.run<string>(this.r, keys.request(rec.id), keys.inFlight(rec.connector), this.ttlS, IN_FLIGHT_TTL_S, rec.id, JSON.stringify(fields));
  }

  async get(id: string): Promise<RequestRecord | null> {
    const h = await this.r.hgetall(keys.request(id));
    if (!h.id) return null;
    return {
      id: h.id,
      tenant: h.tenant!,
      connector: h.connector!,
      mode: h.mode as Mode,
      spec: JSON.parse(h.spec!) as RequestSpec,
      status: h.status as RequestStatus,
      attempt: Number(h.attempt),
      createdAt: h.created_at!,
      updatedAt: h.updated_at!,
      deadline: Number(h.deadline),
      leaseAt: Number(h.lease_at),
      ackedAttempt: Number(h.acked_attempt),
      bytes: Number(h.bytes ?? h.recv_bytes ?? 0),
      chunks: Number(h.chunks ?? h.recv_chunks ?? 0),
      checksum: h.checksum ?? null,
      contentType: h.content_type ?? null,
      schema: h.schema ? (JSON.parse(h.schema) as TableSchema) : null,
      totalBytes: h.total_bytes ? Number(h.total_bytes) : null,
      error: h.error_code ? { code: h.error_code as ErrorCode, message: h.error_message ?? '' } : null,
      contiguous: Number(h.contiguous ?? 0),
      offload: h.upload_id ? { uploadId: h.upload_id, key: h.object_key!, partSize: Number(h.part_size) } : null,
      download: h.download_url
        ? { url: h.download_url, expiresAt: h.download_expires_at!, contentEncoding: h.content_encoding as 'zstd' | 'identity', storedBytes: h.stored_bytes ? Number(h.stored_bytes) : null }
        : null,
      answerAt: h.answer_at ?? null,
    };
  }

  /** The request's queue job ended in the failed set: a retry of that job may reopen it. */
  async markJobFailed(id: string): Promise<void> {
    await SCRIPTS.relayMarkJobFailed.run(this.r, keys.request(id));
  }

  /** Reopens a failed request whose job failed (see relayReopen). True when it was reopened. */
  async reopen(id: string, deadline: number): Promise<boolean> {
    return (await SCRIPTS.relayReopen.run<string>(this.r, keys.request(id), deadline, new Date().toISOString())) === 'OK';
  }

  /** Checks a connector call against the request; renews the lease. Throws the protocol error. */
  async guard(id: string, connector: string, attempt: number, op: GuardOp): Promise<'OK' | 'COMPLETE'> {
    const now = Date.now();
    const res = await SCRIPTS.relayGuard.run<string>(this.r, keys.request(id), connector, attempt, now, new Date(now).toISOString(), op);
    return guardResult(res, id, attempt);
  }

  /**
   * The connector received attempt `attempt`: guard (renews the lease), the command is no
   * longer pending, and everyone waiting hears of it — one round trip.
   */
  async ack(id: string, connector: string, attempt: number): Promise<'OK' | 'COMPLETE'> {
    const now = Date.now();
    const ev: BusEvent = { t: 'req', id, status: 'acked', attempt };
    const res = await SCRIPTS.relayAck.run<string>(this.r, keys.request(id), keys.pending(connector), connector, attempt, now, new Date(now).toISOString(), 'ack', id, keys.busChannel, JSON.stringify(ev));
    return guardResult(res, id, attempt);
  }

  /**
   * Records a chunk once: NEW the first time, DUP for the same checksum again, COMPLETE when
   * the request is already complete. Guards the call like guard().
   */
  async putChunk(id: string, connector: string, attempt: number, index: number, checksum: string, decodedLength: number): Promise<'NEW' | 'DUP' | 'COMPLETE'> {
    const now = Date.now();
    const res = await SCRIPTS.relayChunkPut.run<string>(this.r, keys.request(id), keys.chunks(id), connector, attempt, now, new Date(now).toISOString(), 'upload', index, checksum, decodedLength);
    if (res === 'NEW' || res === 'DUP' || res === 'COMPLETE') return res;
    if (res === 'CONFLICT') throw new RelayError('CONFLICT', `chunk ${index} is already stored with another checksum`, { requestId: id });
    guardResult(res, id, attempt);
    throw new RelayError('INTERNAL', `unexpected chunk state ${res}`, { requestId: id });
  }

  async setFields(id: string, fields: Record<string, string | number>): Promise<void> {
    await this.r.hset(keys.request(id), fields);
  }

  /** The instance holding the request's client answer (sync and stream), if recorded. */
  async answerAt(id: string): Promise<string | null> {
    return this.r.hget(keys.request(id), 'answer_at');
  }

  /** A re-attached client's answer is now held by the instance at `at`: uploads go there, an older answer elsewhere ends. */
  async moveAnswer(id: string, at: string): Promise<void> {
    const ev: BusEvent = { t: 'answer', id, at };
    await Promise.all([this.r.hset(keys.request(id), 'answer_at', at), this.r.publish(keys.busChannel, JSON.stringify(ev))]);
  }

  /**
   * Moves a live request to a terminal status, takes it out of its connector's in-flight set
   * and announces it. Returns false if it had already ended.
   */
  async finish(id: string, status: TerminalStatus, fields: Record<string, string | number> = {}): Promise<boolean> {
    const ev: BusEvent = { t: 'req', id, status };
    // The token tells this call's own ending, run again after a lost reply, from another's.
    const res = await SCRIPTS.relayFinish.run<string>(this.r, keys.request(id), status, new Date().toISOString(), keys.inFlight(''), keys.busChannel, JSON.stringify(ev), nanoid(8), ...Object.entries(fields).flat());
    if (res !== 'OK') return false;
    for (const listener of this.endListeners) listener(id, status);
    return true;
  }

  /** `listener` hears of every request that this instance's finish() moved to a terminal status. */
  onEnd(listener: (id: string, status: TerminalStatus) => void): void {
    this.endListeners.push(listener);
  }

  fail(id: string, err: RelayError): Promise<boolean> {
    return this.finish(id, 'failed', { error_code: err.code, error_message: err.message.slice(0, 4096) });
  }

  /**
   * Claims the completion of a request's result, router-wide: null while another call holds it.
   * A connector sends complete again when the first got no answer, possibly while that one is
   * still being completed; an object store asked to complete one upload twice at once may
   * write the object twice over (s3rver does), and a client answered after the first would
   * download it mid-rewrite. The claim is renewed while held and lapses if its router dies.
   */
  async claimCompletion(id: string, ms = COMPLETION_CLAIM_MS): Promise<CompletionClaim | null> {
    const key = keys.completing(id);
    const token = nanoid(12);
    // Held by another call, unless it holds our own token: our SET ran, and ioredis sent it
    // again when a Redis restart lost its reply.
    if ((await this.r.set(key, token, 'PX', ms, 'NX')) !== 'OK' && (await this.r.get(key)) !== token) return null;
    const renew = setInterval(() => void SCRIPTS.relayClaim.run(this.r, key, token, 'renew', ms).catch(() => undefined), ms / 3);
    renew.unref();
    return {
      release: async () => {
        clearInterval(renew);
        // Never the caller's error: a claim not deleted (Redis away) lapses by itself.
        await SCRIPTS.relayClaim.run(this.r, key, token, 'release').catch(() => undefined);
      },
    };
  }

  /** True while some call holds the completion claim of the request. */
  async completionClaimed(id: string): Promise<boolean> {
    return (await this.r.exists(keys.completing(id))) === 1;
  }

  /** Starts attempt n; returns resume_from, or null if the request already ended. */
  async newAttempt(id: string, attempt: number): Promise<number | null> {
    const now = Date.now();
    const res = await SCRIPTS.relayNewAttempt.run<string>(this.r, keys.request(id), attempt, now, new Date(now).toISOString());
    if (res === 'NOT_FOUND' || (TERMINAL as string[]).includes(res)) return null;
    return Number(res);
  }

  /**
   * Starts the next attempt from chunk 0 (a re-attached client), also for a completed request;
   * null if the request failed, was cancelled or expired.
   */
  async restart(id: string): Promise<{ attempt: number; wasComplete: boolean } | null> {
    const now = Date.now();
    const res = await SCRIPTS.relayRestart.run<string>(this.r, keys.request(id), keys.chunks(id), now, new Date(now).toISOString(), nanoid(8));
    const m = /^(\w+):(\d+)$/.exec(res);
    if (!m) return null;
    return { attempt: Number(m[2]), wasComplete: m[1] === 'complete' };
  }

}

function guardResult(res: string, id: string, attempt: number): 'OK' | 'COMPLETE' {
  switch (res) {
    case 'OK':
    case 'COMPLETE':
      return res;
    case 'NOT_FOUND':
      throw new RelayError('NOT_FOUND', `no request ${id}`, { requestId: id });
    case 'FORBIDDEN':
      throw new RelayError('FORBIDDEN', 'this request was sent to another connector', { requestId: id });
    case 'GONE':
      throw new RelayError('GONE', 'the request was cancelled or has failed: stop sending', { requestId: id });
    case 'STALE':
      throw new RelayError('GONE', `attempt ${attempt} is not the current attempt: stop sending`, { requestId: id });
    default:
      throw new RelayError('INTERNAL', `unexpected guard state ${res}`, { requestId: id });
  }
}

export function statusBody(r: RequestRecord): RequestStatusBody {
  return {
    request_id: r.id,
    status: r.status,
    mode: r.mode,
    connector: r.connector,
    attempt: r.attempt,
    created_at: r.createdAt,
    updated_at: r.updatedAt,
    bytes: r.bytes,
    chunks: r.chunks,
    checksum: r.checksum,
    error: r.error,
    ...(r.schema ? { schema: r.schema } : {}),
  };
}
