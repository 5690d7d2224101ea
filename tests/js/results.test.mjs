// Every way a web app learns a job is done, through the real gateway: artifacts served
// with Range/ETag/HEAD, /result (202 + Retry-After, 303 to an artifact, the job's error),
// the :wait long-poll, a POST that answers with the new job's event stream, and the
// shared /v1/events stream (a bad filter is a 400, a late joiner gets the snapshot).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startServer, startGateway } from './server.mjs';

let server;
let gateway;
let dir;
before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'jobstream-results-'));
  const script = path.join(dir, 'plot.sh');
  writeFileSync(script, `#!/bin/sh
printf 'PNG-bytes' > "$JOBSTREAM_OUTPUT_DIR/plot.png"
echo '{"result": {"artifact": "plot.png"}}'
`);
  chmodSync(script, 0o755);
  const config = path.join(dir, 'config.json');
  writeFileSync(config, JSON.stringify({ types: [{ name: 'plot', exec: { argv: [script] } }] }));
  server = await startServer(['--retry_backoff=0s', `--config=${config}`]);
  gateway = await startGateway(server.address);
});
after(async () => {
  await gateway.stop();
  assert.equal(await server.stop(), 0);
  rmSync(dir, { recursive: true, force: true });
});

// The bytes demo.steps attaches: byte i is (i*131 + floor(i/251)) & 0xff.
const demoBytes = (n) => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 131 + Math.floor(i / 251)) & 0xff;
  return b;
};
const sha256 = (buffer) => createHash('sha256').update(buffer).digest('hex');

const post = (body, headers = {}) => fetch(`${gateway.url}/v1/jobs`, {
  method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body: JSON.stringify(body),
});
const submit = async (type, params = {}) => {
  const response = await post({ type, params });
  assert.equal(response.status, 202);
  return (await response.json()).id;
};
const wait = async (id) => (await fetch(`${gateway.url}/v1/jobs/${id}:wait?timeout=60s`)).json();

// The job's events (a closing 'end', which says the job is done, left out).
function parseSse(text) {
  return text.split('\n\n').filter((block) => block.includes('data:')).map((block) => {
    const field = (name) => block.split('\n').filter((l) => l.startsWith(`${name}: `))
      .map((l) => l.slice(name.length + 2));
    return { id: field('id')[0], event: field('event')[0], data: JSON.parse(field('data').join('\n')) };
  }).filter((e) => e.event !== 'end');
}

// An SSE response read as it arrives: its events so far, a wait for one, and close.
async function openSse(path) {
  const controller = new AbortController();
  const response = await fetch(gateway.url + path, { signal: controller.signal });
  const stream = { status: response.status, response, events: [], text: '' };
  if (response.status !== 200) {
    stream.body = await response.json();
    return stream;
  }
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  const waiters = [];
  (async () => {
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        stream.text += decoder.decode(value, { stream: true });
        const cut = stream.text.lastIndexOf('\n\n');
        if (cut < 0) continue;
        stream.events.push(...parseSse(stream.text.slice(0, cut + 2)));
        stream.text = stream.text.slice(cut + 2);
        for (const w of [...waiters]) w();
      }
    } catch { /* aborted */ }
  })();
  stream.waitFor = (pred, ms = 10000) => new Promise((resolve, reject) => {
    const check = () => {
      const found = stream.events.find(pred);
      if (found) {
        waiters.splice(waiters.indexOf(check), 1);
        resolve(found);
      }
    };
    waiters.push(check);
    check();
    setTimeout(() => reject(new Error(`no such event within ${ms} ms`)), ms);
  });
  stream.close = () => controller.abort();
  return stream;
}

const metric = async (name) => {
  const text = await (await fetch(`${gateway.url}/metrics`)).text();
  return Number(new RegExp(`^jobstream_gateway_${name} (\\d+)$`, 'm').exec(text)[1]);
};

test('artifacts are served with Range, ETag/304, HEAD and Content-Disposition', async () => {
  const size = 1_000_000;
  const id = await submit('demo.steps', {
    steps: ['a'], step_ms: 0, ticks: 0,
    artifact: { name: 'clip.mp4', bytes: size, content_type: 'video/mp4' },
  });
  const job = await wait(id);
  assert.equal(job.state, 'SUCCEEDED');
  const bytes = demoBytes(size);
  const url = `${gateway.url}/v1/jobs/${id}/artifacts/clip.mp4`;
  const etag = `"${sha256(bytes)}"`;

  const whole = await fetch(url);
  assert.equal(whole.status, 200);
  assert.equal(whole.headers.get('content-type'), 'video/mp4');
  assert.equal(whole.headers.get('content-length'), String(size));
  assert.equal(whole.headers.get('etag'), etag);
  assert.equal(whole.headers.get('accept-ranges'), 'bytes');
  assert.equal(whole.headers.get('content-disposition'), `inline; filename="clip.mp4"; filename*=UTF-8''clip.mp4`);
  assert.equal(whole.headers.get('x-content-type-options'), 'nosniff');
  assert.ok(Buffer.from(await whole.arrayBuffer()).equals(bytes));

  const range = async (spec) => {
    const r = await fetch(url, { headers: { Range: spec } });
    return { status: r.status, range: r.headers.get('content-range'), body: Buffer.from(await r.arrayBuffer()) };
  };
  const first = await range('bytes=0-99');
  assert.equal(first.status, 206);
  assert.equal(first.range, `bytes 0-99/${size}`);
  assert.ok(first.body.equals(bytes.subarray(0, 100)));
  const middle = await range('bytes=500000-799999');
  assert.equal(middle.status, 206);
  assert.equal(middle.range, `bytes 500000-799999/${size}`);
  assert.ok(middle.body.equals(bytes.subarray(500000, 800000)));
  const suffix = await range('bytes=-100');
  assert.equal(suffix.range, `bytes ${size - 100}-${size - 1}/${size}`);
  assert.ok(suffix.body.equals(bytes.subarray(size - 100)));
  const open = await range('bytes=999990-');
  assert.ok(open.body.equals(bytes.subarray(999990)));
  const beyond = await range(`bytes=${size}-`);
  assert.equal(beyond.status, 416);
  assert.equal(beyond.range, `bytes */${size}`);

  const cached = await fetch(url, { headers: { 'If-None-Match': etag } });
  assert.equal(cached.status, 304);
  assert.equal((await cached.arrayBuffer()).byteLength, 0);
  assert.equal(cached.headers.get('etag'), etag);
  const stale = await fetch(url, { headers: { Range: 'bytes=0-9', 'If-Range': '"other"' } });
  assert.equal(stale.status, 200);  // the client's copy is of other bytes: all of them
  assert.equal((await stale.arrayBuffer()).byteLength, size);

  const head = await fetch(url, { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers.get('content-length'), String(size));
  assert.equal(head.headers.get('etag'), etag);
  const download = await fetch(`${url}?download=1`, { method: 'HEAD' });
  assert.match(download.headers.get('content-disposition'), /^attachment; filename="clip.mp4"/);

  const missing = await fetch(`${gateway.url}/v1/jobs/${id}/artifacts/other.mp4`);
  assert.equal(missing.status, 404);
  assert.match((await missing.json()).message, /has no artifact "other.mp4"/);
  assert.equal((await fetch(`${gateway.url}/v1/jobs/${id}/artifacts/..%2Fclip.mp4`)).status, 404);
  assert.equal((await fetch(`${gateway.url}/v1/jobs/01m8488yd72g1c1chq6xp84ke3/artifacts/x`)).status, 404);

  // An empty artifact is a 200 with no bytes.
  const emptyId = await submit('demo.steps', {
    steps: ['a'], step_ms: 0, ticks: 0, artifact: { name: 'empty.txt', bytes: 0 },
  });
  await wait(emptyId);
  const empty = await fetch(`${gateway.url}/v1/jobs/${emptyId}/artifacts/empty.txt`);
  assert.equal(empty.status, 200);
  assert.equal(empty.headers.get('content-length'), '0');
  assert.equal(empty.headers.get('etag'), `"${sha256(Buffer.alloc(0))}"`);
});

test('/result: 202 with Retry-After while unfinished, then the result, a 303 or the error', async () => {
  const id = await submit('demo.steps', { steps: ['a', 'b'], step_ms: 700, ticks: 4 });
  let early = await fetch(`${gateway.url}/v1/jobs/${id}/result`);
  assert.equal(early.status, 202);
  assert.equal(early.headers.get('location'), `/v1/jobs/${id}/result`);
  assert.ok(Number(early.headers.get('retry-after')) >= 1);
  assert.ok(['QUEUED', 'RUNNING'].includes((await early.json()).state));
  const status = await fetch(`${gateway.url}/v1/jobs/${id}`);
  assert.ok(Number(status.headers.get('retry-after')) >= 1);
  await status.arrayBuffer();
  // A poller that follows Retry-After gets there.
  let polls = 0;
  while (early.status === 202) {
    await new Promise((r) => setTimeout(r, 1000 * Number(early.headers.get('retry-after'))));
    early = await fetch(`${gateway.url}/v1/jobs/${id}/result`);
    assert.ok(++polls < 10);
  }
  assert.equal(early.status, 200);
  assert.deepEqual(await early.json(), { steps: 2 });
  const finished = await fetch(`${gateway.url}/v1/jobs/${id}`);
  assert.equal(finished.headers.get('retry-after'), null);
  await finished.arrayBuffer();

  // A result naming an artifact redirects to it.
  const plot = await submit('plot');
  assert.equal((await wait(plot)).state, 'SUCCEEDED');
  const redirect = await fetch(`${gateway.url}/v1/jobs/${plot}/result`, { redirect: 'manual' });
  assert.equal(redirect.status, 303);
  assert.equal(redirect.headers.get('location'), `/v1/jobs/${plot}/artifacts/plot.png`);
  const followed = await fetch(`${gateway.url}/v1/jobs/${plot}/result`);
  assert.equal(followed.status, 200);
  assert.equal(followed.headers.get('content-type'), 'image/png');
  assert.equal(await followed.text(), 'PNG-bytes');

  // A failed job's result is its error.
  const failing = await submit('demo.steps', { steps: ['a'], step_ms: 0, fail_at: 'a' });
  await wait(failing);
  const failed = await fetch(`${gateway.url}/v1/jobs/${failing}/result`);
  assert.equal(failed.status, 409);  // ABORTED
  assert.equal(failed.headers.get('x-jobstream-state'), 'FAILED');
  assert.match((await failed.json()).message, /failed \(fail_at\)/);
  assert.equal((await fetch(`${gateway.url}/v1/jobs/01m8488yd72g1c1chq6xp84ke3/result`)).status, 404);
});

test(':wait returns at the job\'s end or at the timeout', async () => {
  // Runs until cancelled: still unfinished at the first timeout however slow the machine.
  const id = await submit('demo.steps', { steps: ['a'], step_ms: 600000, ticks: 0 });
  let start = Date.now();
  const early = await fetch(`${gateway.url}/v1/jobs/${id}:wait?timeout=300ms`);
  assert.equal(early.status, 200);
  assert.ok(['QUEUED', 'RUNNING'].includes((await early.json()).state));
  assert.ok(Date.now() - start >= 250);
  start = Date.now();
  const done = fetch(`${gateway.url}/v1/jobs/${id}:wait?timeout=30s`);
  await new Promise((r) => setTimeout(r, 200));
  assert.equal((await fetch(`${gateway.url}/v1/jobs/${id}:cancel`, { method: 'POST' })).status, 200);
  assert.equal((await (await done).json()).state, 'CANCELLED', 'answered at the end');
  assert.ok(Date.now() - start < 5000);
  for (const bad of ['abc', '10m', '-1s']) {
    const r = await fetch(`${gateway.url}/v1/jobs/${id}:wait?timeout=${bad}`);
    assert.equal(r.status, 400, bad);
    assert.match((await r.json()).message, /timeout must be a duration/);
  }
});

test('POST with Accept: text/event-stream streams the new job from CREATED; a retry resumes it', async () => {
  const key = `stream-${Date.now()}`;
  const body = { type: 'demo.steps', params: { steps: ['a', 'b'], step_ms: 100, ticks: 2 } };
  const headers = { Accept: 'text/event-stream', 'Idempotency-Key': key };
  const first = await post(body, headers);
  assert.equal(first.status, 200);
  assert.equal(first.headers.get('content-type'), 'text/event-stream');
  const location = first.headers.get('location');
  assert.match(location, /^\/v1\/jobs\/[0-9a-z]{26}$/);
  const events = parseSse(await first.text());
  assert.equal(events[0].event, 'created');
  assert.equal(events.at(-1).event, 'succeeded');
  assert.deepEqual(events.map((e) => Number(e.id)), events.map((_, i) => i + 1));

  // The same key again: the same job, resumed after Last-Event-ID — not a second job.
  const again = await post(body, { ...headers, 'Last-Event-ID': '3' });
  assert.equal(again.status, 200);
  assert.equal(again.headers.get('location'), location);
  const rest = parseSse(await again.text());
  assert.deepEqual(rest.map((e) => Number(e.id)), events.slice(3).map((e) => Number(e.id)));
  const past = await post(body, { ...headers, 'Last-Event-ID': String(events.length) });
  assert.equal(past.status, 204);
  const bad = await post({ type: 'no.such.type' }, { Accept: 'text/event-stream' });
  assert.equal(bad.status, 400);
  assert.match((await bad.json()).message, /no.such.type/);
});

test('/v1/events: a bad filter is a 400; one upstream per filter; a late joiner gets the snapshot', async () => {
  const bad = await openSse('/v1/events?type=' + encodeURIComponent('bad type!'));
  assert.equal(bad.status, 400);
  assert.match(bad.body.message, /type/);

  const before = await metric('upstream_streams_open');
  const a = await openSse('/v1/events?type=demo.steps');
  assert.equal(a.status, 200);
  const id = await submit('demo.steps', { steps: ['a'], step_ms: 3000, ticks: 0 });
  await a.waitFor((e) => e.data.jobId === id && e.event === 'started');
  // Joins the same upstream call, and starts with the job as it stands.
  const b = await openSse('/v1/events?type=demo.steps');
  const snapshot = await b.waitFor((e) => e.data.jobId === id);
  assert.equal(snapshot.event, 'snapshot');
  assert.equal(snapshot.data.status.state, 'RUNNING');
  assert.equal(await metric('upstream_streams_open'), before + 1);
  const c = await openSse('/v1/events?label=team%3Ared');
  assert.equal(c.status, 200);
  assert.equal(await metric('upstream_streams_open'), before + 2);
  // Both see the end.
  await a.waitFor((e) => e.data.jobId === id && e.event === 'succeeded');
  await b.waitFor((e) => e.data.jobId === id && e.event === 'succeeded');
  for (const s of [a, b, c]) s.close();
  // The last one leaving ends the upstream call.
  for (let i = 0; i < 50 && await metric('upstream_streams_open') !== before; i++) {
    await new Promise((r) => setTimeout(r, 100));
  }
  assert.equal(await metric('upstream_streams_open'), before);
});
