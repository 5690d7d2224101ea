// Webhooks to a receiver on loopback: the signature verifies, a receiver that fails twice
// gets the third attempt (and the job shows every attempt), a target outside the
// allow-list is refused at Submit, and a server killed mid-retry still delivers after it
// restarts. JOBSTREAM_TEST_STORE=postgresql runs it all on PostgreSQL, and then also: two
// servers on one store send each delivery once, and one dying mid-retry leaves it to the other.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import http from 'node:http';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { freePort, openTestStore, startServer, startGateway } from './server.mjs';

const SECRET = 'a test secret of enough bytes';
let dir;
let receiver;
let server;
let gateway;
let flags;
let store;
let metricsPort;

// A webhook receiver: records each request; `answer` decides the status of the next one,
// or null to leave it unanswered.
function startReceiver() {
  const got = { requests: [], answer: () => 200 };
  got.server = http.createServer((req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      got.requests.push({ headers: req.headers, body, method: req.method, url: req.url, at: Date.now() });
      const status = got.answer(got.requests.length);
      if (status !== null) res.writeHead(status).end('ok');
    });
  });
  return new Promise((resolve) => got.server.listen(0, '127.0.0.1', () => {
    got.port = got.server.address().port;
    resolve(got);
  }));
}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'jobstream-webhooks-'));
  writeFileSync(path.join(dir, 'secret'), `${SECRET}\n`);
  receiver = await startReceiver();
  store = await openTestStore();
  flags = ['--retry_backoff=0s', `--webhook_allow=127.0.0.1:${receiver.port}`,
    `--webhook_secret_file=${path.join(dir, 'secret')}`, '--webhook_retry_backoff=100ms',
    '--webhook_timeout=2s'];
  metricsPort = await freePort();
  server = await startServer([...flags, ...store.flags('main'),
    `--metrics_listen=127.0.0.1:${metricsPort}`]);
  gateway = await startGateway(server.address);
});
after(async () => {
  await gateway.stop();
  assert.equal(await server.stop(), 0);
  receiver.server.close();
  await store.close();
  rmSync(dir, { recursive: true, force: true });
});

const submit = (webhook, params = { steps: ['a'], step_ms: 0, ticks: 0 }, via = gateway) =>
  fetch(`${via.url}/v1/jobs`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ type: 'demo.steps', params, webhook }),
  });
const until = async (pred, ms = 15000) => {
  const end = Date.now() + ms;
  while (!(await pred())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
};
const job = async (id, via = gateway) => (await fetch(`${via.url}/v1/jobs/${id}`)).json();
const hookUrl = (p = '/hook') => `http://127.0.0.1:${receiver.port}${p}`;

test('each delivery is signed with HMAC-SHA256 of its body and carries its id and event', async () => {
  receiver.requests.length = 0;
  receiver.answer = () => 200;
  const response = await submit({ url: hookUrl('/hook?src=test'), events: ['started', 'succeeded'] });
  assert.equal(response.status, 202);
  const { id } = await response.json();
  await until(() => receiver.requests.length >= 2);
  const [started, succeeded] = [...receiver.requests].sort(
    (a, b) => JSON.parse(a.body).sequence - JSON.parse(b.body).sequence);
  for (const r of [started, succeeded]) {
    assert.equal(r.method, 'POST');
    assert.equal(r.url, '/hook?src=test');
    assert.equal(r.headers['content-type'], 'application/json');
    const expected = 'sha256=' + createHmac('sha256', SECRET).update(r.body).digest('hex');
    assert.equal(r.headers['x-jobstream-signature'], expected);
    const event = JSON.parse(r.body);
    assert.equal(event.jobId, id);
    assert.equal(r.headers['x-jobstream-delivery'], `${id}-${event.sequence}`);
  }
  assert.equal(JSON.parse(started.body).type, 'STARTED');
  assert.equal(started.headers['x-jobstream-event'], 'started');
  assert.equal(JSON.parse(succeeded.body).type, 'SUCCEEDED');
  // The job shows each delivery.
  await until(async () => (await job(id)).webhookDeliveries?.every((d) => d.state === 'DELIVERED'));
  const shown = (await job(id)).webhookDeliveries;
  assert.equal(shown.length, 2);
  assert.deepEqual(shown.map((d) => d.eventType), ['STARTED', 'SUCCEEDED']);
  assert.ok(shown.every((d) => d.attempts === 1 && d.lastStatus === 200));
});

// The server's count of webhook attempts with `outcome`.
async function webhookAttempts(outcome) {
  const text = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(
    `jobstream_webhook_attempts_total{outcome="${outcome}"} `));
  return Number(line.split(' ')[1]);
}

test('a receiver that fails twice gets the third attempt; every attempt is recorded', async () => {
  receiver.requests.length = 0;
  receiver.answer = (n) => (n <= 2 ? 503 : 204);
  const [delivered, failed] = [await webhookAttempts('delivered'),
    await webhookAttempts('failed_will_retry')];
  const { id } = await (await submit({ url: hookUrl() })).json();
  await until(async () => (await job(id)).webhookDeliveries?.[0]?.state === 'DELIVERED');
  // And the metrics counted each attempt by its outcome.
  assert.equal(await webhookAttempts('delivered'), delivered + 1);
  assert.equal(await webhookAttempts('failed_will_retry'), failed + 2);
  assert.equal(await webhookAttempts('gave_up'), 0);
  const [delivery] = (await job(id)).webhookDeliveries;
  assert.equal(delivery.attempts, 3);
  assert.equal(delivery.lastStatus, 204);
  assert.equal(delivery.eventType, 'SUCCEEDED');  // the default: terminal events
  assert.equal(receiver.requests.length, 3);
  // The same delivery id each time, so the receiver can drop repeats.
  assert.equal(new Set(receiver.requests.map((r) => r.headers['x-jobstream-delivery'])).size, 1);
});

test('a webhook outside the allow-list, or malformed, is refused at Submit', async () => {
  for (const [webhook, message] of [
    [{ url: 'http://127.0.0.1:1/hook' }, /not on this server's --webhook_allow list/],
    [{ url: 'http://169.254.169.254/latest/meta-data' }, /not on this server's --webhook_allow list/],
    [{ url: 'file:///etc/passwd' }, /must be http/],
    [{ url: `http://user:pw@127.0.0.1:${receiver.port}/` }, /user or password/],
    [{ url: 'not a url' }, /not an absolute URL/],
    [{ url: hookUrl(), events: ['progress'] }, /progress is not delivered/],
    [{ url: hookUrl(), events: ['finished'] }, /is not one of/],
  ]) {
    const response = await submit(webhook);
    assert.equal(response.status, 400, JSON.stringify(webhook));
    assert.match((await response.json()).message, message);
  }
});

test('a server without --webhook_allow refuses every webhook', async () => {
  const plain = await startServer((await store.another())('plain'));
  const front = await startGateway(plain.address);
  try {
    const response = await fetch(`${front.url}/v1/jobs`, {
      method: 'POST', headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ type: 'demo.steps', webhook: { url: hookUrl() } }),
    });
    assert.equal(response.status, 400);
    assert.match((await response.json()).message, /started without --webhook_allow/);
  } finally {
    await front.stop();
    await plain.stop();
  }
});

test('a server killed with kill -9 mid-retry delivers after it restarts', async () => {
  receiver.requests.length = 0;
  receiver.answer = () => 500;
  const { id } = await (await submit({ url: hookUrl() })).json();
  await until(() => receiver.requests.length >= 2);
  await server.kill();
  const failed = receiver.requests.length;
  receiver.answer = () => 200;
  server = await startServer([...flags, ...store.flags('main')],
    { port: server.port, dataDir: server.dataDir });
  await until(() => receiver.requests.length > failed);
  const last = receiver.requests.at(-1);
  assert.equal(last.headers['x-jobstream-delivery'], `${id}-${JSON.parse(last.body).sequence}`);
  assert.equal(JSON.parse(last.body).type, 'SUCCEEDED');
  await until(async () => (await job(id)).webhookDeliveries?.[0]?.state === 'DELIVERED');
  assert.ok((await job(id)).webhookDeliveries[0].attempts > failed - 1);
});

// A CA and a certificate for localhost, made now with openssl (no key is committed).
function makeCertificates(where) {
  const run = (...args) => execFileSync('openssl', args, { cwd: where, stdio: 'pipe' });
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];  // cheap to make
  run('req', '-x509', ...key, '-keyout', 'ca.key', '-out', 'ca.pem',
    '-days', '1', '-subj', '/CN=jobstream test CA');
  run('req', ...key, '-keyout', 'host.key', '-out', 'host.csr', '-subj', '/CN=localhost');
  writeFileSync(path.join(where, 'san.ext'), 'subjectAltName=DNS:localhost\n');
  run('x509', '-req', '-in', 'host.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-out', 'host.pem', '-days', '1', '-extfile', 'san.ext');
  return {
    ca: path.join(where, 'ca.pem'),
    key: readFileSync(path.join(where, 'host.key')),
    cert: readFileSync(path.join(where, 'host.pem')),
  };
}

test('https receivers: the certificate is checked against the CA and the host name', async () => {
  const certs = makeCertificates(dir);
  const received = [];
  const secure = https.createServer({ key: certs.key, cert: certs.cert }, (req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => { received.push({ headers: req.headers, body }); res.writeHead(200).end(); });
  });
  await new Promise((resolve) => secure.listen(0, '127.0.0.1', resolve));
  const port = secure.address().port;
  const common = [`--webhook_allow=localhost:${port}`, `--webhook_secret_file=${path.join(dir, 'secret')}`,
    '--webhook_max_attempts=1'];
  const trusting = await startServer([...common, `--webhook_ca_file=${certs.ca}`,
    ...(await store.another())('trusting')]);
  // The system's CAs only.
  const doubting = await startServer([...common, ...(await store.another())('doubting')]);
  try {
    const submitTo = async (srv) => {
      const front = await startGateway(srv.address);
      try {
        const response = await fetch(`${front.url}/v1/jobs`, {
          method: 'POST', headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ type: 'demo.steps', params: { steps: ['a'], step_ms: 0, ticks: 0 },
            webhook: { url: `https://localhost:${port}/secure` } }),
        });
        const { id } = await response.json();
        let delivery;
        await until(async () => {
          delivery = (await (await fetch(`${front.url}/v1/jobs/${id}`)).json()).webhookDeliveries?.[0];
          return delivery && delivery.state !== 'PENDING';
        });
        return delivery;
      } finally {
        await front.stop();
      }
    };
    const ok = await submitTo(trusting);
    assert.equal(ok.state, 'DELIVERED');
    assert.equal(received.length, 1);
    assert.equal(received[0].headers['x-jobstream-signature'],
      'sha256=' + createHmac('sha256', SECRET).update(received[0].body).digest('hex'));
    const refused = await submitTo(doubting);
    assert.equal(refused.state, 'FAILED');
    assert.match(refused.lastError, /TLS handshake failed/);
    assert.equal(received.length, 1, 'nothing reached a receiver the server could not verify');
  } finally {
    await trusting.stop();
    await doubting.stop();
    secure.close();
  }
});

const POSTGRES_ONLY = {
  skip: process.env.JOBSTREAM_TEST_STORE !== 'postgresql' && 'several servers need PostgreSQL',
};

test('two servers on one PostgreSQL send each delivery once, whichever wrote it', POSTGRES_ONLY,
  async () => {
    receiver.requests.length = 0;
    receiver.answer = () => 200;
    const second = await startServer([...flags, ...store.flags('second')]);
    const front = await startGateway(second.address);
    try {
      const ids = [];
      for (let i = 0; i < 20; i++) {
        const response = await submit({ url: hookUrl(), events: ['started', 'succeeded'] },
          undefined, i % 2 ? gateway : front);
        assert.equal(response.status, 202);
        ids.push((await response.json()).id);
      }
      for (const id of ids) {
        await until(async () => {
          const shown = (await job(id)).webhookDeliveries;
          return shown?.length === 2 && shown.every((d) => d.state === 'DELIVERED');
        });
      }
      // Every delivery reached the receiver once: both servers saw each event, one sent it.
      const sent = receiver.requests.map((r) => r.headers['x-jobstream-delivery']);
      assert.equal(sent.length, 40);
      assert.equal(new Set(sent).size, 40);
      for (const id of ids) {
        assert.ok((await job(id, front)).webhookDeliveries.every((d) => d.attempts === 1));
      }
    } finally {
      await front.stop();
      await second.stop();
    }
  });

test('a server killed mid-attempt leaves the delivery to another server once its hold passes',
  POSTGRES_ONLY, async () => {
    const on = await store.another();
    const first = await startServer([...flags, ...on('first')]);
    const secondPort = await freePort();
    const front = await startGateway(`${first.address},127.0.0.1:${secondPort}`);
    let second;
    try {
      receiver.requests.length = 0;
      // Two failures, then no answer: the first server dies holding the third attempt.
      receiver.answer = (n) => (n <= 2 ? 500 : null);
      const { id } = await (await submit({ url: hookUrl() }, undefined, front)).json();
      await until(() => receiver.requests.length >= 3);
      await first.kill();
      receiver.answer = () => 200;
      second = await startServer([...flags, ...on('second')], { port: secondPort });
      await until(async () => (await job(id, front)).webhookDeliveries?.[0]?.state === 'DELIVERED');
      assert.equal(receiver.requests.length, 4);
      const last = JSON.parse(receiver.requests[3].body);
      assert.equal(last.type, 'SUCCEEDED');
      assert.ok(receiver.requests.every(
        (r) => r.headers['x-jobstream-delivery'] === `${id}-${last.sequence}`));
      // Held for twice --webhook_timeout (4 s) from before the third request arrived; no one
      // sends it meanwhile. The 1 s slack is for the time between taking it and sending it.
      const waited = receiver.requests[3].at - receiver.requests[2].at;
      assert.ok(waited >= 3000, `sent again after ${waited} ms`);
      // The unanswered attempt is not on the record: the dead server had nothing to write.
      const [delivery] = (await job(id, front)).webhookDeliveries;
      assert.equal(delivery.attempts, 3, JSON.stringify(delivery));
      assert.equal(delivery.lastStatus, 200);
    } finally {
      await front.stop();
      await second?.stop();
      rmSync(first.dataDir, { recursive: true, force: true });
    }
  });

test('a batch\'s webhook gets its end by default, and each child\'s with "child"', async () => {
  receiver.requests.length = 0;
  receiver.answer = () => 200;
  const child = { type: 'demo.steps', params: { steps: ['a'], step_ms: 0, ticks: 0 } };
  const post = (webhook) => fetch(`${gateway.url}/v1/jobs:batch`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ children: [child, child, child], webhook }),
  });
  const plain = await post({ url: hookUrl('/batch') });
  assert.equal(plain.status, 202);
  const { parent } = await plain.json();
  await until(() => receiver.requests.some((r) => JSON.parse(r.body).jobId === parent.id));
  await until(async () => (await job(parent.id)).webhookDeliveries?.[0]?.state === 'DELIVERED');
  const ended = receiver.requests.filter((r) => JSON.parse(r.body).jobId === parent.id);
  assert.equal(ended.length, 1);
  assert.equal(JSON.parse(ended[0].body).type, 'SUCCEEDED');
  assert.equal(JSON.parse(ended[0].body).status.batch.succeeded, '3');

  const each = await (await post({ url: hookUrl('/each'), events: ['child', 'succeeded'] })).json();
  await until(() => receiver.requests.filter((r) => r.url === '/each').length >= 4);
  const types = receiver.requests.filter((r) => r.url === '/each')
    .map((r) => JSON.parse(r.body)).sort((a, b) => a.sequence - b.sequence).map((e) => e.type);
  assert.deepEqual(types, ['CHILD', 'CHILD', 'CHILD', 'SUCCEEDED']);
  assert.ok(each.parent.id);

  const refused = await post({ url: 'http://127.0.0.2:1/elsewhere' });
  assert.equal(refused.status, 400);
  assert.match((await refused.json()).message, /webhook_allow/);
});
