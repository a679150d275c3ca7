// A process simulating many connectors with the real protocol (PROTOCOL.md §3), forked by the
// fleet scenario with an IPC channel. Per connector: one event stream
// (GET /v1/connectors/events with its token, parsed with eventsource-parser); on a command it
// POSTs the ack and then a one-chunk result (POST .../result, 1 KB, xxh64 checksum), so the
// request completes. Timestamps are wall-clock ms (performance.timeOrigin + now) so the parent
// can set them against the time it sent the request.
//
// IPC in:  {t: 'start', routerUrl, connectors: [{id, token}], inFlight}   open every stream
//          {t: 'stop'}                                                   close everything and exit
// IPC out: {t: 'connected', n, failed}  every stream said hello (or failed to open)
//          {t: 'cmd', dataset, requestId, tCmd, tAck, ackStatus, resultStatus}
//          {t: 'dropped', id}            a stream closed while the run was on
import http from 'node:http';
import { createParser } from 'eventsource-parser';
import { Pool } from 'undici';
import { xxh64 } from '../../src/protocol/checksum.js';
import { HEADERS } from '../../src/protocol/wire.js';
import { wallMs } from './stats.js';

interface Start {
  t: 'start';
  routerUrl: string;
  connectors: { id: string; token: string }[];
  /** Streams being opened at once. */
  inFlight: number;
}

const RESULT = Buffer.alloc(1024, 'x');
const RESULT_SUM = xxh64(RESULT);
const requests = new Set<http.ClientRequest>();
let stopping = false;
let pool: Pool | null = null;

const send = (m: object) => process.send?.(m);

function openStream(routerUrl: string, c: { id: string; token: string }): Promise<boolean> {
  return new Promise((resolve) => {
    let settled = false;
    const done = (ok: boolean) => {
      if (!settled) {
        settled = true;
        resolve(ok);
      }
    };
    const u = new URL('/v1/connectors/events?concurrency=50&version=bench-fleet', routerUrl);
    const req = http.get(u, { agent: false, headers: { authorization: `Bearer ${c.token}`, accept: 'text/event-stream' } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        done(false);
        return;
      }
      res.setEncoding('utf8');
      const parser = createParser({
        onEvent(e) {
          if (e.event === 'hello') done(true);
          else if (e.event === 'command') void onCommand(c, e.data);
        },
      });
      res.on('data', (s: string) => parser.feed(s));
      res.on('close', () => {
        done(false);
        if (!stopping) send({ t: 'dropped', id: c.id });
      });
    });
    req.on('error', () => done(false));
    requests.add(req);
    req.on('close', () => requests.delete(req));
  });
}

async function onCommand(c: { id: string; token: string }, data: string): Promise<void> {
  const tCmd = wallMs();
  const cmd = JSON.parse(data) as { request_id: string; attempt: number; dataset?: string };
  const auth = { authorization: `Bearer ${c.token}` };
  let ackStatus = 0;
  let resultStatus = 0;
  let tAck = 0;
  try {
    const ack = await pool!.request({
      method: 'POST',
      path: `/v1/requests/${cmd.request_id}/ack`,
      headers: { ...auth, 'content-type': 'application/json' },
      body: JSON.stringify({ attempt: cmd.attempt }),
    });
    await ack.body.dump();
    ackStatus = ack.statusCode;
    tAck = wallMs();
    const res = await pool!.request({
      method: 'POST',
      path: `/v1/requests/${cmd.request_id}/result`,
      headers: {
        ...auth,
        'content-type': 'application/octet-stream',
        [HEADERS.attempt]: String(cmd.attempt),
        [HEADERS.checksum]: RESULT_SUM,
        [HEADERS.decodedLength]: String(RESULT.length),
        [HEADERS.contentType]: 'text/plain',
      },
      body: RESULT,
    });
    await res.body.dump();
    resultStatus = res.statusCode;
  } catch {
    // reported as status 0
  }
  send({ t: 'cmd', dataset: cmd.dataset, requestId: cmd.request_id, tCmd, tAck, ackStatus, resultStatus });
}

async function start(m: Start): Promise<void> {
  pool = new Pool(m.routerUrl, { connections: 32, pipelining: 1 });
  let next = 0;
  let ok = 0;
  let failed = 0;
  const worker = async () => {
    while (next < m.connectors.length && !stopping) {
      const c = m.connectors[next++]!;
      if (await openStream(m.routerUrl, c)) ok++;
      else failed++;
    }
  };
  await Promise.all(Array.from({ length: m.inFlight }, worker));
  send({ t: 'connected', n: ok, failed });
}

function stop(): void {
  stopping = true;
  for (const r of requests) r.destroy();
  void pool?.destroy().catch(() => undefined);
  setTimeout(() => process.exit(0), 200).unref();
}

process.on('message', (m: { t: string }) => {
  if (m.t === 'start') void start(m as Start);
  else if (m.t === 'stop') stop();
});
process.on('disconnect', () => {
  stop();
  process.exit(0);
});
