// A worker in Node, built only from the .proto files: WorkerService's whole lifecycle
// against the real server — lease, progress, complete; expiry and fencing; cancel;
// retryable and final failures; long-poll; batches.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { ROOT, startServer } from './server.mjs';

const definition = protoLoader.loadSync(
  ['jobstream/v1/jobs.proto', 'jobstream/v1/workers.proto'].map((f) => path.join(ROOT, 'proto', f)),
  { includeDirs: [path.join(ROOT, 'proto')], longs: String, enums: String, defaults: false });
const { JobService, WorkerService } = grpc.loadPackageDefinition(definition).jobstream.v1;

let server;
let jobs;
let workers;
let configDir;
before(async () => {
  configDir = mkdtempSync(path.join(tmpdir(), 'jobstream-js-config-'));
  const config = path.join(configDir, 'config.json');
  writeFileSync(config, JSON.stringify({ types: [
    { name: 'email.send', external: { leaseDuration: '1s' }, maxAttempts: 2 },
    { name: 'email.batch', external: {} },
  ] }));
  server = await startServer([`--config=${config}`, '--retry_backoff=0s']);
  jobs = new JobService(server.address, grpc.credentials.createInsecure());
  workers = new WorkerService(server.address, grpc.credentials.createInsecure());
});
after(async () => {
  jobs.close();
  workers.close();
  assert.equal(await server.stop(), 0);
  rmSync(configDir, { recursive: true, force: true });
});

const unary = (stub, method, request) => new Promise((resolve, reject) => {
  stub[method](request, { deadline: Date.now() + 30000 },
    (err, reply) => (err ? reject(err) : resolve(reply)));
});
const submit = (type, params = {}) => unary(jobs, 'Submit', { type, params: { fields: params } });
const lease = (types, extra = {}) => unary(workers, 'LeaseJob', { types, workerId: 'node-1', ...extra });
const status = (jobId) => unary(jobs, 'GetStatus', { jobId });
const events = (jobId) => new Promise((resolve, reject) => {
  const out = [];
  const stream = jobs.WatchJob({ jobId });
  stream.on('data', (e) => out.push(e.type));
  stream.on('error', reject);
  stream.on('end', () => resolve(out));
});
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

test('lease, report progress, complete', async () => {
  const job = await submit('email.batch', { to: { stringValue: 'a@example.com' } });
  const { jobs: [leased] } = await lease(['email.batch'], { wait: { seconds: 5 } });
  assert.equal(leased.job.id, job.id);
  assert.equal(leased.job.params.fields.to.stringValue, 'a@example.com');
  assert.equal(leased.job.state, 'RUNNING');
  const reply = await unary(workers, 'ReportProgress', {
    leaseId: leased.leaseId, progress: { step: 'render', stepCount: 2 } });
  assert.ok(!reply.cancelRequested, 'not cancelled');
  assert.ok(Number(reply.leaseExpireTime.seconds) > Date.now() / 1000, 'the lease was extended');
  await unary(workers, 'ReportProgress', { leaseId: leased.leaseId,
    progress: { fraction: 0.5, message: 'half' } });
  const done = await unary(workers, 'CompleteJob', { leaseId: leased.leaseId,
    result: { stringValue: 'sent' } });
  assert.equal(done.state, 'SUCCEEDED');
  assert.deepEqual(await events(job.id),
    ['CREATED', 'STARTED', 'STEP', 'PROGRESS', 'SUCCEEDED']);
});

test('an expired lease retries the job and fences off its holder', async () => {
  const job = await submit('email.send');
  const { jobs: [first] } = await lease(['email.send']);
  await sleep(1300);  // the 1 s lease runs out
  const { jobs: [second] } = await lease(['email.send'], { wait: { seconds: 5 } });
  assert.equal(second.job.id, job.id);
  assert.equal(second.job.attempt, 2);
  await assert.rejects(unary(workers, 'CompleteJob', { leaseId: first.leaseId }),
    { code: grpc.status.FAILED_PRECONDITION });
  assert.equal((await status(job.id)).state, 'RUNNING', 'the stale call changed nothing');
  await unary(workers, 'CompleteJob', { leaseId: second.leaseId });
  assert.deepEqual(await events(job.id),
    ['CREATED', 'STARTED', 'RETRYING', 'STARTED', 'SUCCEEDED']);
});

test('cancel of a queued and of a running job', async () => {
  const queued = await submit('email.batch');
  assert.equal((await unary(jobs, 'CancelJob', { jobId: queued.id })).state, 'CANCELLED');
  const running = await submit('email.batch');
  const { jobs: [leased] } = await lease(['email.batch']);
  await unary(jobs, 'CancelJob', { jobId: running.id });
  const reply = await unary(workers, 'ReportProgress', { leaseId: leased.leaseId });
  assert.equal(reply.cancelRequested, true);
  const ended = await unary(workers, 'FailJob', { leaseId: leased.leaseId,
    error: { code: 1, message: 'stopped' } });
  assert.equal(ended.state, 'CANCELLED');
});

test('FailJob: retryable goes again, final does not', async () => {
  const job = await submit('email.send');
  const { jobs: [a] } = await lease(['email.send']);
  const retried = await unary(workers, 'FailJob', { leaseId: a.leaseId, retryable: true,
    error: { code: 14, message: 'smtp busy' } });
  assert.equal(retried.state, 'QUEUED');
  const { jobs: [b] } = await lease(['email.send'], { wait: { seconds: 5 } });
  const failed = await unary(workers, 'FailJob', { leaseId: b.leaseId, retryable: false,
    error: { code: 3, message: 'no such mailbox' } });
  assert.equal(failed.state, 'FAILED');
  assert.equal(failed.error.message, 'no such mailbox');
  assert.equal((await status(job.id)).attempt, 2);
});

test('a long poll returns when a job arrives, or empty when the wait ends', async () => {
  const started = Date.now();
  const empty = await lease(['email.batch'], { wait: { nanos: 300e6 } });
  assert.deepEqual(empty.jobs ?? [], []);
  assert.ok(Date.now() - started >= 290);
  const waiting = lease(['email.batch'], { wait: { seconds: 20 } });
  await sleep(200);
  const job = await submit('email.batch');
  const t0 = Date.now();
  const { jobs: [got] } = await waiting;
  assert.equal(got.job.id, job.id);
  assert.ok(Date.now() - t0 < 5000, 'answered at once, not when the wait ended');
  await unary(workers, 'CompleteJob', { leaseId: got.leaseId });
});

test('max_jobs leases a batch, each job with its own lease', async () => {
  for (let i = 0; i < 4; i++) await submit('email.batch');
  const { jobs: batch } = await lease(['email.batch'], { maxJobs: 3 });
  assert.equal(batch.length, 3);
  assert.equal(new Set(batch.map((j) => j.leaseId)).size, 3);
  const { jobs: rest } = await lease(['email.batch'], { maxJobs: 3 });
  assert.equal(rest.length, 1);
  for (const j of [...batch, ...rest]) await unary(workers, 'CompleteJob', { leaseId: j.leaseId });
  await assert.rejects(lease(['email.batch'], { maxJobs: 10000 }),
    { code: grpc.status.INVALID_ARGUMENT });
  await assert.rejects(lease(['demo.steps']), (err) => {
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    assert.match(err.details, /runs in the server, not on workers/);
    return true;
  });
});
