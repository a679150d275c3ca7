import http from 'node:http';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as Minio from 'minio';
import { startDevS3 } from '../dist/src/router/storage.js';
const dir = await mkdtemp(join(tmpdir(), 'probe-s3-'));
const s3 = await startDevS3(dir, 'bkt');
const u = new URL(s3.endpoint);
const mc = new Minio.Client({ endPoint: u.hostname, port: Number(u.port), useSSL: false, accessKey: 'S3RVER', secretKey: 'S3RVER', region: 'us-east-1' });
const key = 'obj';
const uploadId = await mc.initiateNewMultipartUpload('bkt', key, {});
const parts = [];
for (let n = 1; n <= 8; n++) {
  const url = await mc.presignedUrl('PUT', 'bkt', key, 600, { partNumber: String(n), uploadId });
  const r = await fetch(url, { method: 'PUT', body: Buffer.alloc(5 << 20, n) });
  parts.push({ part: n, etag: r.headers.get('etag').replaceAll('"', '') });
}
const xml = `<CompleteMultipartUpload>${parts.map((p) => `<Part><PartNumber>${p.part}</PartNumber><ETag>"${p.etag}"</ETag></Part>`).join('')}</CompleteMultipartUpload>`;
const cutMs = Number(process.argv[2] ?? 5);
await new Promise((resolve) => {
  const req = http.request({ host: u.hostname, port: u.port, method: 'POST', path: `/bkt/${key}?uploadId=${encodeURIComponent(uploadId)}`, headers: { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(xml) } }, (res) => { console.log('first complete answered', res.statusCode); res.resume(); res.on('end', resolve); });
  req.on('error', (e) => { console.log('first complete cut:', e.message); resolve(); });
  req.end(xml);
  setTimeout(() => req.destroy(), cutMs);
});
await new Promise((r) => setTimeout(r, 1000));
try {
  const r = await mc.completeMultipartUpload('bkt', key, uploadId, parts);
  console.log('second complete ok', r);
} catch (e) { console.log('second complete failed:', e.code, e.message); }
try { const st = await mc.statObject('bkt', key); console.log('object size', st.size, 'expected', 8 * (5 << 20)); } catch (e) { console.log('stat failed', e.code); }
await s3.close();
