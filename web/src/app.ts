// The data preview page (served at `/`): sign in with a client key, pick an online connector
// and a dataset or SQL query; the result streams in as an Arrow IPC stream and is parsed batch
// by batch while it arrives (apache-arrow's RecordBatchReader over the fetch body), with a live
// progress bar, the first rows as a table and a chart of a numeric column. No framework.
import type * as ArrowNS from 'apache-arrow';

/** apache-arrow's browser bundle (`/ui/arrow.js`) defines this global. */
declare const Arrow: typeof ArrowNS;

type Mode = 'sync' | 'stream' | 'offload';
type PageState = 'signed-out' | 'ready' | 'running' | 'done' | 'error';

interface ConnectorInfo {
  connector_id: string;
  tenant: string;
  online: boolean;
  last_seen: string | null;
  version: string | null;
  in_flight: number;
}

interface OffloadAnswer {
  request_id: string;
  download_url: string;
  expires_at: string;
  bytes: number;
  checksum: string;
  content_encoding: 'zstd' | 'identity';
}

/** Rows shown in the table. */
const TABLE_ROWS = 100;
/** Values kept per numeric column for the chart (memory stays bounded on huge results). */
const MAX_POINTS = 200_000;
const KEY_STORAGE = 'relay.key';
// Arrow type ids (apache-arrow's Type enum): the numeric ones we chart.
const TYPE_INT = 2;
const TYPE_FLOAT = 3;
const TYPE_DECIMAL = 7;

const $ = <T extends HTMLElement>(id: string): T => {
  const el = document.getElementById(id);
  if (!el) throw new Error(`page is missing #${id}`);
  return el as T;
};

const ui = {
  signin: $<HTMLElement>('signin'),
  signinForm: $<HTMLFormElement>('signin-form'),
  key: $<HTMLInputElement>('key'),
  signinError: $<HTMLElement>('signin-error'),
  signout: $<HTMLButtonElement>('signout'),
  query: $<HTMLElement>('query'),
  queryForm: $<HTMLFormElement>('query-form'),
  connector: $<HTMLSelectElement>('connector'),
  refresh: $<HTMLButtonElement>('refresh'),
  tenant: $<HTMLElement>('tenant'),
  datasetRow: $<HTMLElement>('dataset-row'),
  sqlRow: $<HTMLElement>('sql-row'),
  dataset: $<HTMLInputElement>('dataset'),
  sql: $<HTMLTextAreaElement>('sql'),
  database: $<HTMLInputElement>('database'),
  format: $<HTMLSelectElement>('format'),
  mode: $<HTMLSelectElement>('mode'),
  run: $<HTMLButtonElement>('run'),
  cancel: $<HTMLButtonElement>('cancel'),
  result: $<HTMLElement>('result'),
  status: $<HTMLElement>('status'),
  progress: $<HTMLProgressElement>('progress'),
  progressText: $<HTMLElement>('progress-text'),
  error: $<HTMLElement>('error'),
  offload: $<HTMLElement>('offload'),
  downloadLink: $<HTMLAnchorElement>('download-link'),
  offloadMeta: $<HTMLElement>('offload-meta'),
  chartArea: $<HTMLElement>('chart-area'),
  chartColumn: $<HTMLSelectElement>('chart-column'),
  chartNote: $<HTMLElement>('chart-note'),
  chart: $<HTMLCanvasElement>('chart'),
  tableArea: $<HTMLElement>('table-area'),
  rows: $<HTMLTableElement>('rows'),
};

let apiKey: string | null = sessionStorage.getItem(KEY_STORAGE);
let running: { abort: AbortController; requestId: string | null } | null = null;
/** The latest run: its values stay for redraws (another chart column, a resize). */
let lastRun: RunState | null = null;

function setState(s: PageState): void {
  document.body.dataset.state = s;
}

// ---- formatting ---------------------------------------------------------------------------

function fmtBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 2 : 1)} ${units[i]}`;
}

const fmtInt = (n: number) => n.toLocaleString('en-US');

function fmtCell(v: unknown): string {
  if (v === null || v === undefined) return '∅';
  if (typeof v === 'bigint') return v.toString();
  if (typeof v === 'number') return Number.isInteger(v) ? String(v) : String(Math.round(v * 1e6) / 1e6);
  if (typeof v === 'string') return v.length > 200 ? `${v.slice(0, 200)}…` : v;
  if (v instanceof Date) return v.toISOString();
  if (ArrayBuffer.isView(v)) return `<${(v as ArrayBufferView).byteLength} bytes>`;
  let text: string;
  try {
    text = JSON.stringify(v, (_k, x: unknown) => (typeof x === 'bigint' ? x.toString() : x));
  } catch {
    text = String(v);
  }
  return text.length > 200 ? `${text.slice(0, 200)}…` : text;
}

// ---- HTTP -----------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(
    readonly code: string,
    message: string,
    readonly requestId?: string,
  ) {
    super(message);
  }
}

/** The router's error body (PROTOCOL.md §1) as an ApiError. */
async function apiError(res: Response): Promise<ApiError> {
  let code = `HTTP_${res.status}`;
  let message = res.statusText || 'request failed';
  let requestId: string | undefined;
  try {
    const b = (await res.json()) as { request_id?: string; error?: { code?: string; message?: string } };
    code = b.error?.code ?? code;
    message = b.error?.message ?? message;
    requestId = b.request_id;
  } catch {
    /* not JSON: keep the status line */
  }
  return new ApiError(code, message, requestId);
}

function authHeaders(): Record<string, string> {
  return { authorization: `Bearer ${apiKey ?? ''}` };
}

async function fetchConnectors(): Promise<ConnectorInfo[]> {
  const res = await fetch('/v1/connectors', { headers: authHeaders() });
  if (!res.ok) throw await apiError(res);
  return (await res.json()) as ConnectorInfo[];
}

// ---- sign in and the connector list ----------------------------------------------------------

function showSignedIn(connectors: ConnectorInfo[]): void {
  ui.signin.hidden = true;
  ui.query.hidden = false;
  ui.signout.hidden = false;
  fillConnectors(connectors);
  setState('ready');
}

function fillConnectors(connectors: ConnectorInfo[]): void {
  const previous = ui.connector.value;
  ui.connector.replaceChildren();
  for (const c of connectors) {
    const opt = document.createElement('option');
    opt.value = c.connector_id;
    opt.textContent = `${c.connector_id}${c.online ? '' : ' (offline)'}${c.version ? ` · v${c.version}` : ''}${c.in_flight ? ` · ${c.in_flight} in flight` : ''}`;
    opt.disabled = !c.online;
    ui.connector.append(opt);
  }
  const online = connectors.filter((c) => c.online);
  const keep = online.find((c) => c.connector_id === previous);
  ui.connector.value = keep?.connector_id ?? online[0]?.connector_id ?? '';
  const tenants = [...new Set(connectors.map((c) => c.tenant))];
  ui.tenant.textContent = connectors.length ? `tenant ${tenants.join(', ')} · ${online.length} of ${connectors.length} online` : 'no connectors in this tenant';
}

async function signIn(key: string): Promise<void> {
  apiKey = key;
  ui.signinError.textContent = '';
  try {
    const connectors = await fetchConnectors();
    sessionStorage.setItem(KEY_STORAGE, key);
    showSignedIn(connectors);
  } catch (err) {
    apiKey = null;
    sessionStorage.removeItem(KEY_STORAGE);
    ui.signinError.textContent = err instanceof ApiError ? `${err.code}: ${err.message}` : `cannot reach the router: ${(err as Error).message}`;
    setState('signed-out');
  }
}

function signOut(): void {
  running?.abort.abort();
  apiKey = null;
  sessionStorage.removeItem(KEY_STORAGE);
  ui.query.hidden = true;
  ui.result.hidden = true;
  ui.signout.hidden = true;
  ui.signin.hidden = false;
  ui.key.value = '';
  setState('signed-out');
}

// ---- the chart --------------------------------------------------------------------------------

/** Values of one numeric column, first MAX_POINTS rows (NaN for nulls). */
class Series {
  values = new Float64Array(4096);
  length = 0;

  push(v: number): boolean {
    if (this.length >= MAX_POINTS) return false;
    if (this.length === this.values.length) {
      const grown = new Float64Array(Math.min(MAX_POINTS, this.values.length * 2));
      grown.set(this.values);
      this.values = grown;
    }
    this.values[this.length++] = v;
    return true;
  }
}

function drawChart(canvas: HTMLCanvasElement, s: Series | undefined, name: string): void {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth || 900;
  const h = canvas.clientHeight || 280;
  canvas.width = Math.round(w * dpr);
  canvas.height = Math.round(h * dpr);
  const g = canvas.getContext('2d');
  if (!g) return;
  g.setTransform(dpr, 0, 0, dpr, 0, 0);
  g.fillStyle = '#ffffff';
  g.fillRect(0, 0, w, h);
  g.font = '11px system-ui, sans-serif';
  const n = s?.length ?? 0;
  if (!s || n === 0) {
    g.fillStyle = '#667085';
    g.fillText('no values yet', 12, 20);
    return;
  }
  let min = Infinity;
  let max = -Infinity;
  for (let i = 0; i < n; i++) {
    const v = s.values[i]!;
    if (v < min) min = v;
    if (v > max) max = v;
  }
  if (!Number.isFinite(min)) {
    g.fillStyle = '#667085';
    g.fillText(`${name}: only nulls so far`, 12, 20);
    return;
  }
  if (min === max) {
    min -= 1;
    max += 1;
  }
  const left = 64;
  const right = 12;
  const top = 12;
  const bottom = 26;
  const pw = w - left - right;
  const ph = h - top - bottom;
  const y = (v: number) => top + ph - ((v - min) / (max - min)) * ph;

  // Grid and y labels.
  g.strokeStyle = '#eef0f3';
  g.fillStyle = '#667085';
  g.lineWidth = 1;
  for (let k = 0; k <= 4; k++) {
    const v = min + ((max - min) * k) / 4;
    const yy = Math.round(y(v)) + 0.5;
    g.beginPath();
    g.moveTo(left, yy);
    g.lineTo(left + pw, yy);
    g.stroke();
    g.fillText(fmtCell(v), 4, yy + 4);
  }
  g.fillText('row 0', left, h - 8);
  const lastLabel = `row ${fmtInt(n - 1)}`;
  g.fillText(lastLabel, left + pw - g.measureText(lastLabel).width, h - 8);
  g.fillText(name, left + pw / 2 - g.measureText(name).width / 2, h - 8);

  // One pixel column per bucket of rows: the min–max band, and the mean as a line.
  g.fillStyle = 'rgba(37, 99, 235, 0.25)';
  const means: [number, number][] = [];
  const columns = Math.min(pw, n);
  for (let px = 0; px < columns; px++) {
    const from = Math.floor((px * n) / columns);
    const to = Math.max(from + 1, Math.floor(((px + 1) * n) / columns));
    let lo = Infinity;
    let hi = -Infinity;
    let sum = 0;
    let count = 0;
    for (let i = from; i < to; i++) {
      const v = s.values[i]!;
      if (Number.isNaN(v)) continue;
      if (v < lo) lo = v;
      if (v > hi) hi = v;
      sum += v;
      count++;
    }
    if (!count) continue;
    const x = left + (columns === 1 ? pw / 2 : (px * pw) / (columns - 1));
    g.fillRect(x - 0.5, y(hi), Math.max(1, pw / columns), Math.max(1, y(lo) - y(hi)));
    means.push([x, y(sum / count)]);
  }
  g.strokeStyle = '#2563eb';
  g.lineWidth = 1.5;
  g.beginPath();
  means.forEach(([x, yy], i) => (i ? g.lineTo(x, yy) : g.moveTo(x, yy)));
  g.stroke();
  if (means.length < 60) {
    g.fillStyle = '#2563eb';
    for (const [x, yy] of means) g.fillRect(x - 2, yy - 2, 4, 4);
  }
}

// ---- one run ----------------------------------------------------------------------------------

interface RunState {
  started: number;
  received: number;
  total: number | null;
  rows: number;
  batches: number;
  firstBatchBytes: number | null;
  /** Batches parsed by the time the last byte arrived (incremental parsing shows here). */
  batchesBeforeEnd: number | null;
  series: Map<string, Series>;
  chartPending: boolean;
}

function resetResult(): void {
  ui.result.hidden = false;
  ui.error.textContent = '';
  ui.status.textContent = '';
  ui.offload.hidden = true;
  ui.chartArea.hidden = true;
  ui.tableArea.hidden = true;
  ui.chartColumn.replaceChildren();
  ui.chartNote.textContent = '';
  ui.rows.tHead!.replaceChildren();
  ui.rows.tBodies[0]!.replaceChildren();
  ui.progress.removeAttribute('value');
  ui.progressText.textContent = '';
  for (const k of ['bytes', 'rows', 'batches', 'firstBatchBytes', 'batchesBeforeEnd', 'totalBytes', 'requestId']) delete ui.result.dataset[k];
}

function showProgress(st: RunState, done = false): void {
  const secs = Math.max(0.001, (performance.now() - st.started) / 1000);
  if (st.total) ui.progress.value = Math.min(1, st.received / st.total);
  else if (done) ui.progress.value = 1;
  else ui.progress.removeAttribute('value');
  const of = st.total ? ` of ${fmtBytes(st.total)} (${Math.floor((100 * st.received) / st.total)} %)` : '';
  ui.progressText.textContent = `${fmtBytes(st.received)}${of} · ${fmtInt(st.rows)} rows · ${fmtInt(st.batches)} batches · ${(st.received / 1048576 / secs).toFixed(1)} MiB/s · ${secs.toFixed(1)} s`;
  ui.result.dataset.bytes = String(st.received);
  ui.result.dataset.rows = String(st.rows);
  ui.result.dataset.batches = String(st.batches);
}

function scheduleChart(st: RunState): void {
  if (st.chartPending) return;
  st.chartPending = true;
  requestAnimationFrame(() => {
    st.chartPending = false;
    const name = ui.chartColumn.value;
    drawChart(ui.chart, st.series.get(name), name);
    const s = st.series.get(name);
    ui.chartNote.textContent = s && st.rows > MAX_POINTS ? `first ${fmtInt(MAX_POINTS)} of ${fmtInt(st.rows)} rows charted` : '';
  });
}

function isNumeric(f: ArrowNS.Field): boolean {
  const id = f.type.typeId as number;
  return id === TYPE_INT || id === TYPE_FLOAT || id === TYPE_DECIMAL;
}

function asNumber(v: unknown): number {
  if (v === null || v === undefined) return NaN;
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  const n = Number(v);
  return Number.isFinite(n) ? n : NaN;
}

/** The first batch: table header, chart column choices. */
function onSchema(st: RunState, schema: ArrowNS.Schema): void {
  const head = document.createElement('tr');
  for (const f of schema.fields) {
    const th = document.createElement('th');
    th.textContent = f.name;
    const small = document.createElement('small');
    small.textContent = ` ${String(f.type)}`;
    th.append(small);
    head.append(th);
  }
  ui.rows.tHead!.replaceChildren(head);
  ui.tableArea.hidden = false;

  const numeric = schema.fields.filter(isNumeric);
  for (const f of numeric) {
    st.series.set(f.name, new Series());
    const opt = document.createElement('option');
    opt.value = f.name;
    opt.textContent = `${f.name} (${String(f.type)})`;
    ui.chartColumn.append(opt);
  }
  if (numeric.length) {
    // Prefer a floating-point column (an amount, a measurement) over an integer id.
    ui.chartColumn.value = (numeric.find((f) => (f.type.typeId as number) === TYPE_FLOAT) ?? numeric[0]!).name;
    ui.chartArea.hidden = false;
  }
}

function onBatch(st: RunState, batch: ArrowNS.RecordBatch): void {
  if (st.batches === 0) {
    st.firstBatchBytes = st.received;
    ui.result.dataset.firstBatchBytes = String(st.received);
    onSchema(st, batch.schema);
  }
  st.batches++;
  const fields = batch.schema.fields;
  const tbody = ui.rows.tBodies[0]!;
  const numRows = batch.numRows;
  // Table: until TABLE_ROWS rows are shown.
  const take = Math.min(numRows, TABLE_ROWS - tbody.rows.length);
  if (take > 0) {
    const columns = fields.map((_, i) => batch.getChildAt(i));
    const frag = document.createDocumentFragment();
    for (let r = 0; r < take; r++) {
      const tr = document.createElement('tr');
      fields.forEach((f, i) => {
        const v: unknown = columns[i]?.get(r);
        const td = document.createElement('td');
        td.textContent = fmtCell(v);
        if (v === null || v === undefined) td.className = 'null';
        else if (isNumeric(f)) td.className = 'num';
        tr.append(td);
      });
      frag.append(tr);
    }
    tbody.append(frag);
  }
  // Chart: every numeric column, up to MAX_POINTS values each.
  fields.forEach((f, i) => {
    const s = st.series.get(f.name);
    if (!s || s.length >= MAX_POINTS) return;
    const col = batch.getChildAt(i);
    if (!col) return;
    const n = Math.min(numRows, MAX_POINTS - s.length);
    for (let r = 0; r < n; r++) s.push(asNumber(col.get(r)));
  });
  st.rows += numRows;
  scheduleChart(st);
}

function requestBody(): Record<string, unknown> {
  const source = (document.querySelector('input[name=source]:checked') as HTMLInputElement | null)?.value ?? 'dataset';
  const body: Record<string, unknown> = { connector: ui.connector.value, format: ui.format.value };
  if (source === 'sql') {
    body.sql = ui.sql.value;
    if (ui.database.value.trim()) body.database = ui.database.value.trim();
  } else {
    body.dataset = ui.dataset.value.trim();
  }
  return body;
}

async function runQuery(): Promise<void> {
  if (running) return;
  const mode = ui.mode.value as Mode;
  const body = requestBody();
  if (!body.connector) {
    ui.result.hidden = false;
    ui.error.textContent = 'No online connector to ask: refresh the list once one has connected.';
    return;
  }
  resetResult();
  setState('running');
  const abort = new AbortController();
  running = { abort, requestId: null };
  ui.run.disabled = true;
  ui.cancel.disabled = false;
  const st: RunState = { started: performance.now(), received: 0, total: null, rows: 0, batches: 0, firstBatchBytes: null, batchesBeforeEnd: null, series: new Map(), chartPending: false };
  lastRun = st;
  ui.status.textContent = `${mode} request to ${String(body.connector)}…`;
  try {
    const res = await fetch(`/v1/datasets/request-${mode}`, {
      method: 'POST',
      headers: { ...authHeaders(), 'content-type': 'application/json' },
      body: JSON.stringify(body),
      signal: abort.signal,
    });
    if (!res.ok) throw await apiError(res);
    const requestId = res.headers.get('x-relay-request-id');
    running.requestId = requestId;
    if (requestId) ui.result.dataset.requestId = requestId;
    if (mode === 'offload') {
      showOffload((await res.json()) as OffloadAnswer, st);
    } else {
      await readArrow(res, st, requestId);
    }
    setState('done');
  } catch (err) {
    const e = err as Error;
    const failed = !abort.signal.aborted && !(err instanceof ApiError) && running?.requestId ? await requestError(running.requestId) : null;
    if (abort.signal.aborted) ui.error.textContent = 'Cancelled.';
    else if (failed) ui.error.textContent = `${failed.code}: ${failed.message} (request ${running!.requestId!})`;
    else if (err instanceof ApiError) ui.error.textContent = `${err.code}: ${err.message}${err.requestId ? ` (request ${err.requestId})` : ''}`;
    else ui.error.textContent = `The result could not be read: ${e.message}`;
    ui.progress.value = 0;
    setState('error');
  } finally {
    running = null;
    ui.run.disabled = false;
    ui.cancel.disabled = true;
  }
}

async function readArrow(res: Response, st: RunState, requestId: string | null): Promise<void> {
  const announced = res.headers.get('x-relay-total-bytes') ?? (res.headers.get('content-encoding') ? null : res.headers.get('content-length'));
  st.total = announced !== null && /^\d+$/.test(announced) ? Number(announced) : null;
  if (st.total !== null) ui.result.dataset.totalBytes = String(st.total);
  const contentType = res.headers.get('content-type') ?? '';
  ui.status.textContent = `request ${requestId ?? '?'} · ${contentType || 'no content type'} · receiving…`;
  if (!res.body) throw new Error('the response has no body');
  // Count bytes as they arrive; the reader parses each IPC message as soon as it is complete.
  const counted = res.body.pipeThrough(
    new TransformStream<Uint8Array, Uint8Array>({
      transform(chunk, ctl) {
        st.received += chunk.byteLength;
        showProgress(st);
        // The last byte has arrived (when the size is known): how far parsing had got by then.
        if (st.total !== null && st.received >= st.total) bodyEnded(st);
        ctl.enqueue(chunk);
      },
      flush() {
        bodyEnded(st);
      },
    }),
  );
  try {
    const reader = (await Arrow.RecordBatchReader.from(counted as unknown as ReadableStream<Uint8Array>)) as unknown as AsyncIterable<ArrowNS.RecordBatch>;
    for await (const batch of reader) {
      onBatch(st, batch);
      showProgress(st);
    }
  } catch (err) {
    // A body cut by the network or the router (a failure after the first byte) is a TypeError
    // from fetch; anything else came from the Arrow parser.
    if (err instanceof TypeError) throw err;
    throw new Error(`not a valid Arrow IPC stream (${contentType || 'no content type'}): ${(err as Error).message}; a file stored as Arrow needs format "raw"`);
  }
  // The reader may stop at the stream's end marker without draining the body (no flush).
  bodyEnded(st);
  showProgress(st, true);
  if (st.batches === 0 && st.received > 0) throw new Error(`no Arrow record batch in ${fmtBytes(st.received)} (${contentType}); is it an Arrow IPC stream? (a file stored as Arrow needs format "raw")`);
  const secs = (performance.now() - st.started) / 1000;
  ui.status.textContent = `request ${requestId ?? '?'} complete · ${fmtInt(st.rows)} rows in ${fmtInt(st.batches)} batches · ${fmtBytes(st.received)} in ${secs.toFixed(2)} s`;
  scheduleChart(st);
}

/** Notes, once, how many batches had been parsed when the body ended. */
function bodyEnded(st: RunState): void {
  if (st.batchesBeforeEnd !== null) return;
  st.batchesBeforeEnd = st.batches;
  ui.result.dataset.batchesBeforeEnd = String(st.batches);
}

function showOffload(a: OffloadAnswer, st: RunState): void {
  st.received = a.bytes;
  st.total = a.bytes;
  showProgress(st, true);
  ui.offload.hidden = false;
  ui.downloadLink.href = a.download_url;
  ui.downloadLink.textContent = `Download the result (${fmtBytes(a.bytes)})`;
  const enc = a.content_encoding === 'zstd' ? 'stored zstd-compressed: decode with `zstd -d`' : 'stored as is';
  ui.offloadMeta.textContent = `xxh64 ${a.checksum} · ${enc} · link valid until ${new Date(a.expires_at).toLocaleString()}`;
  ui.status.textContent = `request ${a.request_id} complete · uploaded by the connector to the object store`;
}

/** A body that broke off: the request's status says why (PROTOCOL.md §2.1, request-stream). */
async function requestError(id: string): Promise<{ code: string; message: string } | null> {
  try {
    const res = await fetch(`/v1/requests/${encodeURIComponent(id)}`, { headers: authHeaders() });
    if (!res.ok) return null;
    return ((await res.json()) as { error: { code: string; message: string } | null }).error;
  } catch {
    return null;
  }
}

async function cancelRun(): Promise<void> {
  const r = running;
  if (!r) return;
  r.abort.abort();
  if (r.requestId) await fetch(`/v1/requests/${encodeURIComponent(r.requestId)}`, { method: 'DELETE', headers: authHeaders() }).catch(() => undefined);
}

// ---- wiring -----------------------------------------------------------------------------------

ui.signinForm.addEventListener('submit', (e) => {
  e.preventDefault();
  void signIn(ui.key.value.trim());
});
ui.signout.addEventListener('click', signOut);
ui.refresh.addEventListener('click', () => {
  fetchConnectors().then(fillConnectors, (err: unknown) => {
    ui.result.hidden = false;
    ui.error.textContent = err instanceof ApiError ? `${err.code}: ${err.message}` : String(err);
  });
});
for (const radio of document.querySelectorAll<HTMLInputElement>('input[name=source]')) {
  radio.addEventListener('change', () => {
    const sql = radio.value === 'sql' && radio.checked;
    if (!radio.checked) return;
    ui.sqlRow.hidden = !sql;
    ui.datasetRow.hidden = sql;
    // SQL results are encoded by the connector; a stored file may already be Arrow.
    if (sql) ui.format.value = 'arrow';
  });
}
ui.queryForm.addEventListener('submit', (e) => {
  e.preventDefault();
  void runQuery();
});
ui.cancel.addEventListener('click', () => void cancelRun());
// Redraw from the values kept for every numeric column.
ui.chartColumn.addEventListener('change', () => lastRun && scheduleChart(lastRun));
window.addEventListener('resize', () => lastRun && scheduleChart(lastRun));

if (apiKey) void signIn(apiKey);
else setState('signed-out');
