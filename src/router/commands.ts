// Command log and SSE hub (PROTOCOL.md §3.1).
// Log: per connector, a Redis Stream whose entry ids are the SSE event ids (they increase
// and survive router restarts) plus a hash of the commands not yet acknowledged, which is
// what a (re)connecting connector is sent first. Hub: the event streams open on this instance.
import type { ServerResponse } from 'node:http';
import { nanoid } from 'nanoid';
import type { Logger } from '../log.js';
import type { Command, HelloEvent } from '../protocol/wire.js';
import type { Bus } from './bus.js';
import type { Metrics } from './metrics.js';
import { LuaScript } from './lua.js';
import { keys, type Redis } from './redis.js';
import type { BusEvent } from './requests.js';

const LOG_MAXLEN = 10_000;
const LOG_TTL_S = 7 * 86_400;
/** A connector that cannot take this much queued event data is dropped (it will reconnect). */
const MAX_UNSENT_BYTES = 4 * 1024 * 1024;
const ECHO_MAX = 256;
/**
 * How often the presence of the streams that pinged is written, all in one pipeline. A MULTI
 * per ping cost ~130 µs of router CPU: with 10,000 streams (a ping each every 30 s), 4.3 % of a
 * core of the 5.5 % the router spent with nothing to do. Presence lives 2 × heartbeat_s + 5 s,
 * so a refresh up to a second late keeps it.
 */
const PRESENCE_FLUSH_MS = 1000;

const APPEND = new LuaScript(
  2,
  `
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[7], '*', 'event', ARGV[1], 'data', ARGV[2])
if ARGV[1] == 'command' then
  redis.call('HSET', KEYS[2], ARGV[3], cjson.encode({id = id, attempt = tonumber(ARGV[4]), data = ARGV[2]}))
else
  redis.call('HDEL', KEYS[2], ARGV[3])
end
redis.call('EXPIRE', KEYS[1], ARGV[8])
redis.call('EXPIRE', KEYS[2], ARGV[8])
redis.call('PUBLISH', ARGV[5], cjson.encode({t = 'cmd', connector = ARGV[6], id = id, event = ARGV[1], data = ARGV[2]}))
return id`,
);

// Deletes presence only if it still belongs to the closing session.
const LEAVE = new LuaScript(
  1,
  `
if redis.call('HGET', KEYS[1], 'session_id') == ARGV[1] then redis.call('DEL', KEYS[1]) end
return 1`,
);

interface SseEvent {
  id?: string;
  event: string;
  data: string;
}

function formatEvent(e: SseEvent & { retry?: number }): string {
  let out = '';
  if (e.retry !== undefined) out += `retry: ${e.retry}\n`;
  if (e.id) out += `id: ${e.id}\n`;
  out += `event: ${e.event}\n`;
  for (const line of e.data.split('\n')) out += `data: ${line}\n`;
  return out + '\n';
}

export class CommandLog {
  /**
   * Set by the Hub: hands an appended event to this instance's stream for the connector, if it
   * has it, without waiting for the bus to echo it back (one hop less per command).
   */
  local?: (connector: string, e: SseEvent) => void;
  constructor(private readonly r: Redis) {}

  /** Persists a command (pending until acknowledged) and announces it to every router. */
  sendCommand(connector: string, cmd: Command): Promise<string> {
    return this.append(connector, 'command', JSON.stringify(cmd), cmd.request_id, cmd.attempt);
  }

  /** Persists a cancel event; the command is no longer pending. */
  sendCancel(connector: string, requestId: string): Promise<string> {
    return this.append(connector, 'cancel', JSON.stringify({ request_id: requestId }), requestId, 0);
  }

  private async append(connector: string, event: 'command' | 'cancel', data: string, requestId: string, attempt: number): Promise<string> {
    const id = await APPEND.run<string>(this.r, keys.commandLog(connector), keys.pending(connector), event, data, requestId, attempt, keys.busChannel, connector, LOG_MAXLEN, LOG_TTL_S);
    this.local?.(connector, { id, event, data });
    return id;
  }

  async dropPending(connector: string, requestId: string): Promise<void> {
    await this.r.hdel(keys.pending(connector), requestId);
  }

  /** What a connecting stream is sent first: every unacknowledged command, then cancels it has not seen. */
  async catchUp(connector: string, lastEventId: string | null): Promise<SseEvent[]> {
    const pending = await this.r.hgetall(keys.pending(connector));
    const out: SseEvent[] = Object.values(pending).map((v) => {
      const p = JSON.parse(v) as { id: string; data: string };
      return { id: p.id, event: 'command', data: p.data };
    });
    if (lastEventId && /^\d+-\d+$/.test(lastEventId)) {
      const after = (await this.r.xrange(keys.commandLog(connector), `(${lastEventId}`, '+', 'COUNT', 1000)) as [string, string[]][];
      for (const [id, fields] of after) {
        if (fields[1] === 'cancel') out.push({ id, event: 'cancel', data: fields[3]! });
      }
    }
    return out.sort((a, b) => compareIds(a.id!, b.id!));
  }

  leave(connector: string, session: string): Promise<number> {
    return LEAVE.run<number>(this.r, keys.presence(connector), session);
  }
}

function compareIds(a: string, b: string): number {
  const [am, as] = a.split('-').map(BigInt) as [bigint, bigint];
  const [bm, bs] = b.split('-').map(BigInt) as [bigint, bigint];
  return am === bm ? Number(as - bs) : am < bm ? -1 : 1;
}

interface Session {
  id: string;
  connector: string;
  res: ServerResponse;
  /** Live events that arrive while the catch-up is being sent. */
  backlog: SseEvent[] | null;
  /**
   * Ids of live events seen once: a command appended on this instance arrives twice (at once
   * from the log, later as the bus echo, in either order); the second copy is dropped. Bounded:
   * an id whose twin never comes (appended elsewhere) is forgotten after ECHO_MAX others.
   */
  echo: Set<string>;
  sent: Set<string>;
  timers: NodeJS.Timeout[];
  closed: boolean;
}

export interface HubConfig {
  heartbeatS: number;
  maxAgeS: number;
  instanceId: string;
}

export class Hub {
  private readonly sessions = new Map<string, Session>();
  /** Streams that pinged since the last presence flush, and when. */
  private readonly pinged = new Map<Session, string>();
  private readonly presenceTimer: NodeJS.Timeout;

  constructor(
    private readonly redis: Redis,
    private readonly log: CommandLog,
    bus: Bus,
    private readonly cfg: HubConfig,
    private readonly metrics: Metrics,
    private readonly logger: Logger,
  ) {
    bus.on('cmd', (ev: Extract<BusEvent, { t: 'cmd' }>) => this.deliver(ev.connector, { id: ev.id, event: ev.event, data: ev.data }));
    log.local = (connector, e) => this.deliver(connector, e);
    bus.on('takeover', (ev: Extract<BusEvent, { t: 'takeover' }>) => {
      const s = this.sessions.get(ev.connector);
      if (s && s.id !== ev.session) this.close(s, 'replaced by a newer stream');
    });
    bus.on('revoke', (ev: Extract<BusEvent, { t: 'revoke' }>) => {
      const s = ev.connector ? this.sessions.get(ev.connector) : undefined;
      if (s) this.close(s, 'token revoked');
    });
    this.presenceTimer = setInterval(() => this.flushPresence(), PRESENCE_FLUSH_MS);
    this.presenceTimer.unref();
  }

  /** Seconds a connector's presence lives without a ping. */
  private get presenceTtl(): number {
    return Math.ceil(this.cfg.heartbeatS * 2 + 5);
  }

  /** Refreshes the presence of every open stream that pinged since the last flush (cleanup drops closed ones). */
  private flushPresence(): void {
    if (this.pinged.size === 0) return;
    const p = this.redis.pipeline();
    const ttl = this.presenceTtl;
    for (const [s, seen] of this.pinged) {
      p.hset(keys.presence(s.connector), 'last_seen', seen).expire(keys.presence(s.connector), ttl).hset(keys.connector(s.connector), 'last_seen', seen);
    }
    this.pinged.clear();
    void p.exec().catch(() => undefined);
  }

  get size(): number {
    return this.sessions.size;
  }

  isLocal(connector: string): boolean {
    return this.sessions.has(connector);
  }

  /** Serves one event stream on a raw Node response until it closes. */
  async open(connector: string, res: ServerResponse, opts: { lastEventId: string | null; version: string | null; concurrency: number | null }): Promise<void> {
    // Closed while the route awaited (auth): its 'close' has come and gone, so a session opened
    // now would never be cleaned up, pinging a dead socket and keeping the connector "online".
    if (res.destroyed) return;
    const old = this.sessions.get(connector);
    if (old) this.close(old, 'replaced by a newer stream');
    const s: Session = { id: `s_${nanoid(12)}`, connector, res, backlog: [], echo: new Set(), sent: new Set(), timers: [], closed: false };
    this.sessions.set(connector, s);
    this.metrics.streamsOpened.inc();
    this.metrics.connectorsOnline.set(this.sessions.size);
    res.on('close', () => this.cleanup(s));

    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache, no-transform',
      'x-accel-buffering': 'no',
      connection: 'keep-alive',
    });
    res.socket?.setNoDelay(true);
    const hello: HelloEvent = { connector_id: connector, session_id: s.id, heartbeat_s: this.cfg.heartbeatS, max_age_s: this.cfg.maxAgeS };
    // Reconnect delay spread over 0.5–5 s so a router restart does not bring every connector back at once.
    const retry = 500 + Math.floor(Math.random() * 4500);
    res.write(formatEvent({ event: 'hello', data: JSON.stringify(hello), retry }));

    const now = new Date().toISOString();
    const presence = { session_id: s.id, instance: this.cfg.instanceId, version: opts.version ?? '', connected_at: now, last_seen: now, concurrency: opts.concurrency ?? '' };
    const ttl = this.presenceTtl;
    await this.redis
      .multi()
      .hset(keys.presence(connector), presence)
      .expire(keys.presence(connector), ttl)
      .hset(keys.connector(connector), { last_seen: now, version: opts.version ?? '' })
      .publish(keys.busChannel, JSON.stringify({ t: 'takeover', connector, session: s.id } satisfies BusEvent))
      .exec();

    try {
      for (const e of await this.log.catchUp(connector, opts.lastEventId)) {
        s.sent.add(e.id!);
        this.write(s, e);
      }
    } catch (err) {
      this.logger.error({ err, connector }, 'catch-up of pending commands failed; closing the stream');
      this.close(s, 'catch-up failed');
      return;
    }
    const backlog = s.backlog ?? [];
    s.backlog = null;
    for (const e of backlog) if (!s.sent.has(e.id!)) this.write(s, e);
    s.sent.clear();

    s.timers.push(
      setInterval(() => {
        if (s.closed) return;
        res.write(': ping\n\n');
        this.pinged.set(s, new Date().toISOString());
      }, this.cfg.heartbeatS * 1000),
      // Streams end after max_age_s (±10 %) so connectors spread over router instances.
      setTimeout(() => this.close(s, 'max age reached'), this.cfg.maxAgeS * 1000 * (0.9 + Math.random() * 0.2)),
    );
    this.logger.info({ connector, session: s.id, version: opts.version }, 'connector connected');
  }

  private deliver(connector: string, e: SseEvent): void {
    const s = this.sessions.get(connector);
    if (!s || s.closed) return;
    if (e.id) {
      if (s.echo.delete(e.id)) return;
      s.echo.add(e.id);
      if (s.echo.size > ECHO_MAX) s.echo.delete(s.echo.values().next().value!);
    }
    if (s.backlog) s.backlog.push(e);
    else this.write(s, e);
  }

  private write(s: Session, e: SseEvent): void {
    if (s.closed) return;
    if (s.res.writableLength > MAX_UNSENT_BYTES) {
      this.close(s, 'connector is not reading its event stream');
      return;
    }
    s.res.write(formatEvent(e));
    if (e.event === 'command') this.metrics.commandsSent.inc();
  }

  private close(s: Session, reason: string): void {
    if (s.closed) return;
    this.logger.info({ connector: s.connector, session: s.id, reason }, 'closing event stream');
    s.res.end();
    this.cleanup(s);
  }

  private cleanup(s: Session): void {
    if (s.closed) return;
    s.closed = true;
    s.timers.forEach((t) => clearTimeout(t));
    // Its presence is gone (leave): a refresh still queued would bring it back for a TTL.
    this.pinged.delete(s);
    if (this.sessions.get(s.connector) === s) this.sessions.delete(s.connector);
    this.metrics.streamsClosed.inc();
    this.metrics.connectorsOnline.set(this.sessions.size);
    void this.log.leave(s.connector, s.id).catch(() => undefined);
    this.logger.info({ connector: s.connector, session: s.id }, 'connector disconnected');
  }

  /** Ends every stream (shutdown): connectors reconnect, elsewhere when there are several routers. */
  closeAll(): void {
    clearInterval(this.presenceTimer);
    for (const s of [...this.sessions.values()]) this.close(s, 'router shutting down');
  }
}

export async function isOnline(redis: Redis, connector: string): Promise<boolean> {
  return (await redis.exists(keys.presence(connector))) === 1;
}
