// The web data preview and the API docs page, end to end in headless Chromium against a real
// router and connector (with a DuckDB database over its data directory). The dataset tests use
// a file stored as an Arrow IPC stream asked for with format "raw" (its exact bytes are known);
// the SQL test has the connector encode Arrow itself.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { decompress } from '@mongodb-js/zstd';
import { RecordBatchStreamWriter, Table, Utf8, vectorFromArray, type RecordBatch } from 'apache-arrow';
import type { Browser, Page } from 'playwright-core';
import { chromiumMissing, launchChromium, screenshotInk } from '../helpers/browser.js';
import { Stack } from '../helpers/stack.js';

const ROWS = 200_000;
const BATCH_ROWS = 10_000;
const REGIONS = ['north', 'south', 'east', 'west'];
const amountOf = (i: number) => Math.round((1000 + 800 * Math.sin(i / 5000) + ((i * 7919) % 200)) * 100) / 100;

/** An Arrow IPC stream of ROWS rows (id, amount, region) in batches of BATCH_ROWS. */
function arrowStream(): Buffer {
  const table = new Table({
    id: vectorFromArray(Int32Array.from({ length: ROWS }, (_, i) => i)),
    amount: vectorFromArray(Float64Array.from({ length: ROWS }, (_, i) => amountOf(i))),
    region: vectorFromArray(Array.from({ length: ROWS }, (_, i) => REGIONS[i % 4]!), new Utf8()),
  });
  const batches: RecordBatch[] = [];
  for (let i = 0; i < ROWS; i += BATCH_ROWS) batches.push(...table.slice(i, i + BATCH_ROWS).batches);
  return Buffer.from(RecordBatchStreamWriter.writeAll(batches).toUint8Array(true));
}

describe('web page', { skip: chromiumMissing }, () => {
  let stack: Stack;
  let browser: Browser;
  let page: Page;
  let data: Buffer;

  before(async () => {
    stack = await Stack.start({ connectorEnv: { RELAY_DATABASES: 'files=duckdb' } });
    data = await stack.writeData('sales/orders.arrows', arrowStream());
    const csv = ['id,amount,region', ...Array.from({ length: 1000 }, (_, i) => `${i},${amountOf(i)},${REGIONS[i % 4]}`)].join('\n');
    await stack.writeData('sales/orders.csv', `${csv}\n`);
    await stack.writeData('notes.txt', 'not arrow at all\n');
    browser = await launchChromium();
    page = await browser.newPage({ viewport: { width: 1200, height: 1000 } });
    page.on('pageerror', (err) => process.stderr.write(`[page error] ${err.message}\n`));
  });

  after(async () => {
    await browser?.close();
    await stack?.stop();
  });

  async function run(mode: 'stream' | 'sync' | 'offload', dataset: string, format: 'raw' | 'arrow' = 'raw'): Promise<string> {
    await page.check('input[name=source][value=dataset]');
    await page.fill('#dataset', dataset);
    await page.selectOption('#format', format);
    await page.selectOption('#mode', mode);
    await page.click('#run');
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state ?? ''), undefined, { timeout: 60_000 });
    return (await page.getAttribute('body', 'data-state'))!;
  }

  test('a wrong key is refused with the router\'s error', async () => {
    await page.goto(stack.routerUrl);
    assert.equal(await page.getAttribute('body', 'data-state'), 'signed-out');
    await page.fill('#key', 'rk_not_a_key_at_all');
    await page.click('#signin-form button[type=submit]');
    await page.waitForFunction(() => document.getElementById('signin-error')!.textContent !== '');
    assert.match((await page.textContent('#signin-error'))!, /UNAUTHORIZED/);
  });

  test('sign in lists the tenant\'s connectors, the online one picked', async () => {
    await page.fill('#key', stack.clientKey);
    await page.click('#signin-form button[type=submit]');
    await page.waitForSelector('#query:not([hidden])');
    assert.equal(await page.getAttribute('body', 'data-state'), 'ready');
    assert.equal(await page.inputValue('#connector'), stack.connectorId);
    // Another tenant's connector is not listed.
    const options = await page.$$eval('#connector option', (os) => os.map((o) => o.getAttribute('value')));
    assert.deepEqual(options, [stack.connectorId]);
  });

  test('stream: rows parsed while bytes arrive, progress bar, table, chart, non-blank screenshot', async () => {
    // On loopback the whole body lands at once; at 4 MiB/s it arrives over about a second, as
    // over a real link, and parsing can be seen keeping up with it.
    const cdp = await page.context().newCDPSession(page);
    await cdp.send('Network.enable');
    await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: 4 * 1024 * 1024, uploadThroughput: -1 });
    let state: string;
    try {
      state = await run('stream', 'sales/orders.arrows');
    } finally {
      await cdp.send('Network.emulateNetworkConditions', { offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1 });
      await cdp.detach();
    }
    assert.equal(state, 'done', (await page.textContent('#error')) ?? '');
    const ds = await page.$eval('#result', (el) => ({ ...(el as HTMLElement).dataset }));
    assert.equal(Number(ds.rows), ROWS);
    assert.equal(Number(ds.batches), ROWS / BATCH_ROWS);
    assert.equal(Number(ds.bytes), data.length, 'every byte arrived (decoded)');
    assert.equal(Number(ds.totalBytes), data.length, 'the router announced the size (X-Relay-Total-Bytes)');
    // Incremental: the first batch was parsed long before the last byte arrived (the result
    // is ~9 chunks of 512 KiB; a page that buffered the whole body would see it at the end).
    assert.ok(Number(ds.firstBatchBytes) < data.length / 2, `first batch after ${ds.firstBatchBytes} of ${data.length} bytes`);
    assert.ok(Number(ds.batchesBeforeEnd) >= ROWS / BATCH_ROWS / 2, `${ds.batchesBeforeEnd} batches parsed before the body ended`);
    assert.equal(await page.$eval('#progress', (p) => (p as HTMLProgressElement).value), 1);
    assert.match((await page.textContent('#status'))!, /complete · 200,000 rows/);

    // The first rows as a table, with the file's values.
    assert.equal(await page.$$eval('#rows tbody tr', (rs) => rs.length), 100);
    const headers = await page.$$eval('#rows thead th', (ths) => ths.map((th) => th.firstChild!.textContent));
    assert.deepEqual(headers, ['id', 'amount', 'region']);
    const row7 = await page.$$eval('#rows tbody tr:nth-child(8) td', (tds) => tds.map((td) => td.textContent));
    assert.deepEqual(row7, ['7', String(amountOf(7)), REGIONS[7 % 4]]);

    // The chart of a chosen numeric column: both numeric columns are offered.
    const choices = await page.$$eval('#chart-column option', (os) => os.map((o) => (o as HTMLOptionElement).value));
    assert.deepEqual(choices, ['id', 'amount']);
    await page.selectOption('#chart-column', 'amount');
    await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
    const chart = await page.$('#chart');
    const ink = await screenshotInk(page, await chart!.screenshot());
    assert.ok(ink.width > 400 && ink.height > 200, `chart is ${ink.width}x${ink.height}`);
    assert.ok(ink.colours > 20, `chart has ${ink.colours} colours`);
    assert.ok(ink.inkShare > 0.03, `chart draws on ${(ink.inkShare * 100).toFixed(1)} % of its pixels`);
    const shot = await page.screenshot({ fullPage: true });
    if (process.env.RELAY_TEST_SCREENSHOTS) await writeFile(join(process.env.RELAY_TEST_SCREENSHOTS, 'web-stream.png'), shot);
    const full = await screenshotInk(page, shot);
    assert.ok(full.colours > 50 && full.inkShare > 0.05, `page screenshot: ${JSON.stringify(full)}`);
  });

  test('sync: Content-Length drives the progress bar; the same rows arrive', async () => {
    assert.equal(await run('sync', 'sales/orders.arrows'), 'done', (await page.textContent('#error')) ?? '');
    const ds = await page.$eval('#result', (el) => ({ ...(el as HTMLElement).dataset }));
    assert.equal(Number(ds.rows), ROWS);
    assert.equal(Number(ds.totalBytes), data.length);
    assert.equal(await page.$$eval('#rows tbody tr', (rs) => rs.length), 100);
  });

  test('offload: the download link of the stored result is shown and works', async () => {
    assert.equal(await run('offload', 'sales/orders.arrows'), 'done', (await page.textContent('#error')) ?? '');
    await page.waitForSelector('#offload:not([hidden])');
    const href = (await page.getAttribute('#download-link', 'href'))!;
    assert.match(href, /^http:\/\/127\.0\.0\.1:\d+\/relay-results\/.+X-Amz-Signature=/);
    assert.match((await page.textContent('#offload-meta'))!, /xxh64 [0-9a-f]{16}/);
    const res = await fetch(href);
    assert.equal(res.status, 200);
    const stored = Buffer.from(await res.arrayBuffer());
    const decoded = /zstd/.test((await page.textContent('#offload-meta'))!) ? await decompress(stored) : stored;
    assert.ok(decoded.equals(data), 'the linked object is the dataset');
  });

  test('a result that is not Arrow, and a missing dataset, are explained', async () => {
    assert.equal(await run('stream', 'notes.txt'), 'error');
    assert.match((await page.textContent('#error'))!, /Arrow/);
    assert.equal(await run('stream', 'sales/missing.arrows'), 'error');
    assert.match((await page.textContent('#error'))!, /DATASET_NOT_FOUND/);
  });

  test('a SQL query is sent as the protocol\'s request body (sql, format arrow) and its rows stream in', async () => {
    const sql = "SELECT region, count(*) AS orders, sum(amount) AS amount FROM 'sales/orders.csv' GROUP BY 1 ORDER BY 1";
    const sent = page.waitForRequest((r) => r.url().endsWith('/v1/datasets/request-stream'));
    await page.check('input[name=source][value=sql]');
    await page.fill('#sql', sql);
    await page.fill('#database', 'files');
    assert.equal(await page.inputValue('#format'), 'arrow');
    await page.selectOption('#mode', 'stream');
    await page.click('#run');
    const body = JSON.parse((await sent).postData()!) as Record<string, unknown>;
    assert.deepEqual(body, { connector: stack.connectorId, format: 'arrow', sql, database: 'files' });
    await page.waitForFunction(() => ['done', 'error'].includes(document.body.dataset.state ?? ''), undefined, { timeout: 60_000 });
    assert.equal(await page.getAttribute('body', 'data-state'), 'done', (await page.textContent('#error')) ?? '');
    assert.equal(Number(await page.getAttribute('#result', 'data-rows')), 4);
    const headers = await page.$$eval('#rows thead th', (ths) => ths.map((th) => th.firstChild!.textContent));
    assert.deepEqual(headers, ['region', 'orders', 'amount']);
    const first = await page.$$eval('#rows tbody tr:nth-child(1) td', (tds) => tds.map((td) => td.textContent));
    assert.deepEqual(first.slice(0, 2), ['east', '250']);
  });

  test('/openapi.json describes every route from the route schemas; /docs renders it', async () => {
    const spec = (await (await fetch(`${stack.routerUrl}/openapi.json`)).json()) as {
      openapi: string;
      paths: Record<string, Record<string, { requestBody?: { content: Record<string, { schema: { $ref?: string } }> } }>>;
      components: { schemas: Record<string, { properties?: Record<string, { enum?: string[] }>; required?: string[]; additionalProperties?: boolean }> };
    };
    assert.equal(spec.openapi, '3.1.0');
    const req = spec.components.schemas.ClientRequest!;
    assert.deepEqual(Object.keys(req.properties!).sort(), ['connector', 'database', 'dataset', 'format', 'sql', 'timeout_s']);
    assert.deepEqual(req.properties!.format!.enum, ['raw', 'arrow', 'csv', 'ndjson', 'parquet']);
    assert.equal(req.additionalProperties, false);
    assert.equal(spec.paths['/v1/datasets/request-stream']!.post!.requestBody!.content['application/json']!.schema.$ref, '#/components/schemas/ClientRequest');
    assert.deepEqual(spec.components.schemas.StreamComplete!.required, ['attempt', 'chunks', 'bytes', 'checksum']);

    // Every documented operation exists on the router (no "no route" 404).
    let operations = 0;
    for (const [path, item] of Object.entries(spec.paths)) {
      for (const method of Object.keys(item)) {
        operations++;
        if (path === '/v1/connectors/events') continue; // an SSE stream: checked by the e2e suites
        const url = `${stack.routerUrl}${path.replace('{id}', 'r_abcdefghijkl').replace('{index}', '0')}`;
        const res = await fetch(url, { method: method.toUpperCase(), headers: { authorization: `Bearer ${stack.adminToken}` }, redirect: 'manual' });
        const text = await res.text();
        assert.ok(!(res.status === 404 && text.includes('no route')), `${method.toUpperCase()} ${path} is documented but not routed`);
      }
    }
    assert.ok(operations >= 22, `${operations} operations documented`);

    await page.goto(`${stack.routerUrl}/docs`);
    await page.waitForFunction(() => document.body.dataset.state !== 'loading', undefined, { timeout: 20_000 });
    assert.equal(await page.getAttribute('body', 'data-state'), 'done');
    assert.equal(await page.$$eval('details.op', (ds) => ds.length), operations);
    await page.click('details.op[data-path="/v1/datasets/request-stream"] summary');
    const text = (await page.textContent('details.op[data-path="/v1/datasets/request-stream"]'))!;
    assert.match(text, /connector/);
    assert.match(text, /"raw" \| "arrow"/);
  });
});
