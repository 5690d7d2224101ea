// The jobstream npm package (clients/js) against the real server: its Client, and its
// Worker as processes (package_worker.mjs) — the lifecycle, a watch across kill -9 and a
// restart, a worker killed mid-job, cancel, SIGTERM drain, artifacts of 0 B and 50 MiB,
// tokens over mutual TLS, and typed errors.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Client, JobFailed, JobstreamError } from '../../clients/js/index.js';
import { startServer } from './server.mjs';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const dir = mkdtempSync(path.join(tmpdir(), 'jobstream-jspkg-'));
const config = path.join(dir, 'config.json');
writeFileSync(config, JSON.stringify({ types: [
  { name: 'py.steps', external: { leaseDuration: '20s' }, maxAttempts: 3 },
  { name: 'py.block', external: { leaseDuration: '2s' }, maxAttempts: 3 },
  { name: 'py.files', external: { leaseDuration: '20s' } },
] }));
const flags = [`--config=${config}`, '--retry_backoff=0s'];

let server;
let client;
const workers = [];
before(async () => {
  server = await startServer(flags);
  client = new Client(server.address);
});
after(async () => {
  await Promise.all(workers.map(stopWorker));
  client.close();
  await server.stop();
  rmSync(dir, { recursive: true, force: true });
});

function startWorker(address, env = {}) {
  const child = spawn(process.execPath, [path.join(HERE, 'package_worker.mjs')], {
    env: { ...process.env, JOBSTREAM_SERVER: address, TASKS_WORKER_ID: `js-${workers.length}`, ...env },
    stdio: ['ignore', 'inherit', 'inherit'] });
  child.exited = new Promise((resolve) => child.once('exit', (code) => resolve(code)));
  workers.push(child);
  return child;
}
const stopWorker = (w) => { if (w.exitCode === null && w.signalCode === null) w.kill('SIGKILL'); return w.exited; };
const until = async (what, check, ms = 60000) => {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 20))) {
    const v = await check();
    if (v) return v;
  }
  throw new Error(`timed out waiting for ${what}`);
};
const collect = async (iterator) => { const out = []; for await (const x of iterator) out.push(x); return out; };
const marks = (file) => (existsSync(file) ? readFileSync(file, 'utf8').split('\n').slice(0, -1) : []);
let markers = 0;
const marker = () => path.join(dir, `marker-${markers++}`);

test('a job runs in the worker and is followed to its result', async () => {
  const w = startWorker(server.address);
  const job = await client.submit('py.steps', { steps: 3 }, { labels: { team: 'web' }, priority: 5 });
  assert.equal(job.state, 'QUEUED');
  assert.match(job.requestId, /^js-/);
  const events = await collect(client.watch(job.id));
  assert.deepEqual(events.map((e) => e.type), ['CREATED', 'STARTED', 'STEP', 'STEP', 'STEP', 'PROGRESS', 'SUCCEEDED']);
  assert.deepEqual(events.map((e) => e.sequence), [1, 2, 3, 4, 5, 6, 7]);
  assert.deepEqual(await client.result(job.id), { steps: 3, attempt: 1, worker: 'js-0' });
  assert.deepEqual((await collect(client.watch(job.id, { after: 5 }))).map((e) => e.sequence), [6, 7]);
  const got = await client.get(job.id);
  assert.equal(got.labels.team, 'web');
  assert.equal(got.workerId, 'js-0');

  const retried = await client.submit('py.steps', { steps: 1, fail: 'retry' });
  assert.equal((await client.result(retried.id, { timeout: 60 })).attempt, 2);
  const fatal = await client.submit('py.steps', { steps: 1, fail: 'fatal' });
  await assert.rejects(client.result(fatal.id, { timeout: 60 }), (e) => e instanceof JobFailed &&
    e.job.state === 'FAILED' && e.job.attempt === 1 && e.job.error.message === 'Fatal: cannot do it');
  const crash = await client.wait((await client.submit('py.steps', { steps: 1, fail: 'crash' })).id, { timeout: 60 });
  assert.equal(crash.attempt, 3);
  assert.equal(crash.error.details.exception, 'TypeError');

  const { parent, childIds } = await client.submitBatch(
    Array.from({ length: 7 }, (_, i) => ({ type: 'py.steps', params: { steps: 1, n: i } })),
    { then: { type: 'py.steps', params: { steps: 1 } } });
  const parentEvents = await collect(client.watch(parent.id));
  assert.equal(parentEvents.filter((e) => e.type === 'CHILD').length, 7);
  assert.equal(parentEvents.at(-1).type, 'SUCCEEDED');
  const children = await collect(client.list({ parent, pageSize: 2 }));
  assert.deepEqual(children.map((j) => j.id).filter((id) => childIds.includes(id)).sort(), [...childIds].sort());
  await stopWorker(w);
});

test('the package carries the API\'s protos and the page\'s module as jobstream/browser', async () => {
  const pkg = JSON.parse(readFileSync(path.join(HERE, '../../clients/js/package.json'), 'utf8'));
  assert.equal(pkg.exports['./browser'], './browser/jobstream.js');
  assert.equal(readFileSync(path.join(HERE, '../../clients/js/browser/jobstream.js'), 'utf8'),
    readFileSync(path.join(HERE, '../../gateway/web/jobstream.js'), 'utf8'), 'npm ci copied the current module');
  assert.equal(readFileSync(path.join(HERE, '../../clients/js/proto/jobstream/v1/jobs.proto'), 'utf8'),
    readFileSync(path.join(HERE, '../../proto/jobstream/v1/jobs.proto'), 'utf8'));
});

test('bad input is refused with typed errors that say why', async () => {
  await assert.rejects(client.submit('no.such.type'), (e) => e instanceof JobstreamError &&
    e.code === 'INVALID_ARGUMENT' && /no\.such\.type/.test(e.message) && /py\.steps/.test(e.message));
  await assert.rejects(client.submit('py.steps', {}, { priority: 5000 }), (e) => e.code === 'INVALID_ARGUMENT' && /priority/.test(e.message));
  await assert.rejects(client.get('not an id'), (e) => e.code === 'INVALID_ARGUMENT');
  await assert.rejects(client.get('0'.repeat(26)), (e) => e.code === 'NOT_FOUND');
  await assert.rejects(client.submit('py.steps', ['a']), TypeError);
  const blocked = await client.submit('py.block', {});
  await assert.rejects(client.wait(blocked.id, { timeout: 0.2 }), (e) => e.code === 'DEADLINE_EXCEEDED');
  await client.cancel(blocked.id);  // not left for the next test's worker
  await assert.rejects(client.createSchedule({ id: 'bad', cron: '61 * * * *', job: { type: 'py.steps' } }),
    (e) => e.code === 'INVALID_ARGUMENT' && /schedule\.cron/.test(e.message));
  const made = await client.createSchedule({ id: 'js-nightly', cron: '30 2 * * *', timeZone: 'Asia/Tokyo',
    job: { type: 'py.steps', params: { steps: 1 }, concurrencyKey: 'acme' } }, { paused: true });
  assert.equal(made.paused, true);
  const fired = await client.triggerSchedule('js-nightly');
  assert.equal(fired.labels['jobstream/schedule'], 'js-nightly');
  assert.deepEqual(fired.params, { steps: 1 });
  assert.ok((await collect(client.listSchedules())).some((s) => s.id === 'js-nightly'));
  await client.deleteSchedule('js-nightly');
  await assert.rejects(client.getSchedule('js-nightly'), (e) => e.code === 'NOT_FOUND');
});

test('a cancel reaches the running function; a worker killed mid-job leaves it to be retried', async () => {
  const w = startWorker(server.address, { TASKS_CONCURRENCY: 1 });
  const m = marker();
  const job = await client.submit('py.block', { marker: m });
  await until('the function to start', () => marks(m).length === 1);
  await client.cancel(job.id, 'not needed');
  assert.equal((await client.wait(job.id, { timeout: 60 })).state, 'CANCELLED');
  assert.deepEqual(marks(m), ['started 1', 'cancelled 1']);

  const m2 = marker();
  const gate = `${m2}.gate`;  // opened once the first attempt's worker is dead
  const killed = await client.submit('py.block', { marker: m2, gate });
  await until('the first attempt to start', () => marks(m2).length === 1);
  await stopWorker(w);  // kill -9: its 2 s lease runs out
  writeFileSync(gate, '');
  startWorker(server.address);
  assert.deepEqual(await client.result(killed.id, { timeout: 60 }), { attempt: 2 });
  assert.deepEqual(marks(m2), ['started 1', 'started 2', 'finished 2']);
  await Promise.all(workers.map(stopWorker));
});

test('SIGTERM lets running jobs finish, then gives back the rest', async () => {
  const m = marker();
  // The job runs until the test opens its gate, so it is running when SIGTERM comes.
  let w = startWorker(server.address, { TASKS_CONCURRENCY: 1, TASKS_DRAIN_TIMEOUT: 60 });
  const gate = `${m}.gate`;
  const done = await client.submit('py.block', { marker: m, gate });
  await until('the job to start', () => marks(m).length === 1);
  w.kill('SIGTERM');
  const early = await Promise.race([w.exited, new Promise((r) => setTimeout(() => r('draining'), 1000))]);
  assert.equal(early, 'draining', 'the worker waits for its running job');
  writeFileSync(gate, '');
  assert.equal(await w.exited, 0);
  assert.deepEqual(marks(m), ['started 1', 'finished 1']);
  assert.equal((await client.get(done.id)).state, 'SUCCEEDED');

  const m2 = marker();
  w = startWorker(server.address, { TASKS_CONCURRENCY: 1, TASKS_DRAIN_TIMEOUT: 0.3 });
  const given = await client.submit('py.block', { marker: m2 });
  await until('the job to start', () => marks(m2).length === 1);
  w.kill('SIGTERM');
  assert.equal(await w.exited, 0);
  assert.equal((await client.get(given.id)).state, 'QUEUED');
  await until('the function to be told', () => marks(m2).at(-1) === 'cancelled 1');
  await client.cancel(given.id);
});

test('artifacts of 0 bytes and 50 MiB arrive whole and checked', async () => {
  const w = startWorker(server.address);
  const small = await client.submit('py.files', { size: 0, name: 'empty.bin' });
  const big = await client.submit('py.files', { size: 50 << 20, name: 'big.bin' });
  await client.result(small.id, { timeout: 60 });
  await client.result(big.id, { timeout: 120 });
  const empty = await client.fetchArtifact(small.id, 'empty.bin', path.join(dir, 'empty.out'));
  assert.equal(empty.size, 0);
  assert.equal(empty.sha256, createHash('sha256').digest('hex'));
  const block = Buffer.concat(Array(32768).fill(createHash('sha256').update('jobstream').digest()));
  const want = createHash('sha256');
  for (let i = 0; i < 50; i++) want.update(block);
  const digest = want.digest('hex');
  const out = path.join(dir, 'big.out');
  const artifact = await client.fetchArtifact(big.id, 'big.bin', out);
  assert.equal(artifact.size, 50 << 20);
  assert.equal(artifact.sha256, digest);
  assert.equal(createHash('sha256').update(readFileSync(out)).digest('hex'), digest);
  // Cut off earlier: goes on from there; bytes that do not match are refused and dropped.
  writeFileSync(path.join(dir, 'again.part'), block);
  await client.fetchArtifact(big.id, 'big.bin', path.join(dir, 'again'));
  assert.equal(createHash('sha256').update(readFileSync(path.join(dir, 'again'))).digest('hex'), digest);
  writeFileSync(path.join(dir, 'bad.part'), 'x'.repeat(1000));
  await assert.rejects(client.fetchArtifact(big.id, 'big.bin', path.join(dir, 'bad')), (e) => e.code === 'DATA_LOSS');
  assert.equal(existsSync(path.join(dir, 'bad.part')), false);
  await assert.rejects(client.fetchArtifact(small.id, 'nothing', path.join(dir, 'x')), (e) => e.code === 'NOT_FOUND');
  await stopWorker(w);
});

test('a watch across a kill -9 and restart of the server has no gap and no repeat', async () => {
  const own = await startServer(flags);
  const c = new Client(own.address, { retryFor: 120 });
  const w = startWorker(own.address);
  const job = await c.submit('py.steps', { steps: 30, sleep: 0.1 });
  const events = [];
  let third;
  const seenThree = new Promise((r) => { third = r; });
  const following = (async () => {
    for await (const e of c.watch(job.id)) {
      events.push(e);
      if (events.length === 3) third();
    }
  })();
  await seenThree;
  await own.kill();
  await new Promise((r) => setTimeout(r, 500));
  const again = await startServer(flags, { port: own.port, dataDir: own.dataDir });
  await following;
  assert.deepEqual(events.map((e) => e.sequence), events.map((_, i) => i + 1));
  assert.equal(events.at(-1).type, 'SUCCEEDED');
  assert.equal(events.filter((e) => e.type === 'STEP').length, 30);
  await stopWorker(w);
  c.close();
  await again.stop();
  // A server that stays down: the calls give up after retryFor, saying UNAVAILABLE.
  const patient = new Client(again.address, { retryFor: 1.5 });
  await assert.rejects(collect(patient.watch(job.id)), (e) => e.code === 'UNAVAILABLE');
  await assert.rejects(patient.submit('py.steps'), (e) => e.code === 'UNAVAILABLE');
  patient.close();
});

test('tokens over mutual TLS: a worker with its certificate runs a client\'s job; the rest is refused', async () => {
  const tls = mkdtempSync(path.join(dir, 'tls-'));
  const openssl = (...args) => execFileSync('openssl', args, { cwd: tls, stdio: 'ignore' });
  const key = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...key, '-keyout', 'ca.key', '-out', 'ca.pem', '-days', '1', '-subj', '/CN=js-ca');
  openssl('req', '-x509', ...key, '-keyout', 'clients.key', '-out', 'clients.pem', '-days', '1', '-subj', '/CN=js-clients');
  writeFileSync(path.join(tls, 'server.ext'), 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl('req', ...key, '-keyout', 'server.key', '-out', 'server.csr', '-subj', '/CN=localhost');
  openssl('x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial', '-days', '1',
    '-out', 'server.pem', '-extfile', 'server.ext');
  openssl('req', ...key, '-keyout', 'worker.key', '-out', 'worker.csr', '-subj', '/CN=worker-1');
  openssl('x509', '-req', '-in', 'worker.csr', '-CA', 'clients.pem', '-CAkey', 'clients.key', '-CAcreateserial',
    '-days', '1', '-out', 'worker.pem');
  const pem = (f) => path.join(tls, f);
  const sha = (t) => createHash('sha256').update(t).digest('hex');
  const [app, work, reader] = ['js-app-token-0123456789', 'js-work-token-0123456789', 'js-read-token-0123456789'];
  writeFileSync(pem('tokens.json'), JSON.stringify({ tokens: [
    { sha256: sha(app), name: 'app', tenant: 'acme', roles: ['submit', 'read'] },
    { sha256: sha(work), name: 'worker', tenant: 'acme', roles: ['work'] },
    { sha256: sha(reader), name: 'dashboard', tenant: 'acme', roles: ['read'] }] }));
  const secure = await startServer([...flags, `--tls_cert=${pem('server.pem')}`, `--tls_key=${pem('server.key')}`,
    `--tls_client_ca=${pem('clients.pem')}`, `--auth_tokens=${pem('tokens.json')}`]);
  const mtls = { ca: pem('ca.pem'), cert: pem('worker.pem'), key: pem('worker.key') };
  const w = startWorker(secure.address, { JOBSTREAM_TOKEN: work, TASKS_TLS_CA: mtls.ca, TASKS_TLS_CERT: mtls.cert, TASKS_TLS_KEY: mtls.key });
  const c = new Client(secure.address, { token: app, tls: mtls, retryFor: 0 });
  assert.deepEqual(await c.whoami().then((me) => [me.name, me.tenant]), ['app', 'acme']);
  const job = await c.submit('py.steps', { steps: 2 });
  assert.equal(job.tenant, 'acme');
  assert.equal((await c.result(job.id, { timeout: 60 })).steps, 2);
  const refused = async (options, code) => {
    const other = new Client(secure.address, { retryFor: 0, timeout: 30, ...options });
    await assert.rejects(other.submit('py.steps'), (e) => e.code === code);
    other.close();
  };
  await refused({ token: 'not-a-known-token-000000', tls: mtls }, 'UNAUTHENTICATED');
  await refused({ token: reader, tls: mtls }, 'PERMISSION_DENIED');
  await refused({ token: app, tls: { ca: mtls.ca } }, 'UNAVAILABLE');  // no client certificate
  await refused({ token: app }, 'UNAVAILABLE');  // plaintext
  assert.throws(() => new Client(secure.address, { tls: { ca: mtls.ca, cert: mtls.cert } }), TypeError);
  c.close();
  await stopWorker(w);
  await secure.stop();
});
