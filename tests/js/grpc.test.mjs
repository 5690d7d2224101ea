// jobstream from another language: a Node client built only from the .proto files (and
// one built from server reflection alone) submits, watches and resumes jobs.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { GrpcReflection } from 'grpc-js-reflection-client';
import { ROOT, startServer } from './server.mjs';

const definition = protoLoader.loadSync(path.join(ROOT, 'proto/jobstream/v1/jobs.proto'), {
  includeDirs: [path.join(ROOT, 'proto')],
  longs: String,
  enums: String,
  defaults: false,
});
const { JobService } = grpc.loadPackageDefinition(definition).jobstream.v1;

let server;
let client;
before(async () => {
  server = await startServer();
  client = new JobService(server.address, grpc.credentials.createInsecure());
});
after(async () => {
  client.close();
  assert.equal(await server.stop(), 0, 'the server exits 0 on SIGTERM');
});

const call = (method, request) => new Promise((resolve, reject) => {
  client[method](request, (err, reply) => (err ? reject(err) : resolve(reply)));
});

// Every event of one WatchJob call, and how it ended.
const watch = (jobId, afterSequence = 0) => new Promise((resolve) => {
  const events = [];
  const stream = client.WatchJob({ jobId, afterSequence });
  stream.on('data', (e) => events.push(e));
  stream.on('error', (error) => resolve({ events, error }));
  stream.on('end', () => resolve({ events, error: null }));
});

const demo = { type: 'demo.steps', params: { fields: {
  steps: { listValue: { values: [{ stringValue: 'fetch' }, { stringValue: 'render' }] } },
  step_ms: { numberValue: 60 },
  ticks: { numberValue: 2 },
} } };

test('submits a job and watches it to its end', async () => {
  const job = await call('Submit', demo);
  assert.match(job.id, /^[0-9a-hjkmnp-tv-z]{26}$/);
  assert.equal(job.state, 'QUEUED');
  const { events, error } = await watch(job.id);
  assert.equal(error, null);
  assert.deepEqual(events.map((e) => e.type), ['CREATED', 'STARTED', 'STEP', 'PROGRESS',
    'PROGRESS', 'STEP', 'PROGRESS', 'PROGRESS', 'SUCCEEDED']);
  assert.deepEqual(events.map((e) => Number(e.sequence)), [1, 2, 3, 4, 5, 6, 7, 8, 9]);
  const done = events.at(-1).status;
  assert.equal(done.state, 'SUCCEEDED');
  assert.equal(done.result.structValue.fields.steps.numberValue, 2);
  assert.equal(done.progress.fraction, 1);
  const status = await call('GetStatus', { jobId: job.id });
  assert.equal(status.state, 'SUCCEEDED');
  assert.equal(status.lastSequence, '9');
});

test('resumes from any sequence with the same events', async () => {
  const job = await call('Submit', demo);
  const full = await watch(job.id);
  for (const afterSequence of [1, 4, 8]) {
    const part = await watch(job.id, afterSequence);
    assert.equal(part.error, null);
    assert.deepEqual(part.events, full.events.slice(afterSequence));
  }
  const ended = await watch(job.id, 9);
  assert.equal(ended.error, null, 'past the terminal event the stream just ends');
  assert.deepEqual(ended.events, []);
  const beyond = await watch(job.id, 10);
  assert.equal(beyond.error.code, grpc.status.OUT_OF_RANGE);
});

test('bad input gets a precise status', async () => {
  await assert.rejects(call('Submit', { type: 'nope' }), (err) => {
    assert.equal(err.code, grpc.status.INVALID_ARGUMENT);
    assert.equal(err.details, 'unknown job type "nope"; known types: demo.steps');
    return true;
  });
  await assert.rejects(call('Submit', { type: 'demo.steps', params: { fields: {
    ticks: { stringValue: 'many' } } } }), { code: grpc.status.INVALID_ARGUMENT });
  await assert.rejects(call('GetStatus', { jobId: 'x'.repeat(30) }),
    { code: grpc.status.INVALID_ARGUMENT });
  await assert.rejects(call('GetStatus', { jobId: '01m81rd5kq5g91qm659eqts4bn' }),
    { code: grpc.status.NOT_FOUND });
  const negative = await watch('01m81rd5kq5g91qm659eqts4bn', -1);
  assert.equal(negative.error.code, grpc.status.INVALID_ARGUMENT);
});

test('server reflection lists the services and describes JobService', async () => {
  const reflection = new GrpcReflection(server.address, grpc.credentials.createInsecure(),
    {}, 'v1alpha');
  const services = await reflection.listServices();
  for (const name of ['jobstream.v1.JobService', 'jobstream.v1.ScheduleService',
    'grpc.health.v1.Health']) {
    assert.ok(services.includes(name), `${name} in ${services}`);
  }
  // A client made from reflection alone, with no .proto file, can call the API.
  const descriptor = await reflection.getDescriptorBySymbol('jobstream.v1.JobService');
  // Built from descriptors, it keeps the proto's own field names.
  const pkg = descriptor.getPackageObject({ keepCase: true, longs: String, enums: String });
  const reflected = new pkg.jobstream.v1.JobService(server.address,
    grpc.credentials.createInsecure());
  const unary = (method, request) => new Promise((resolve, reject) => {
    reflected[method](request, (err, reply) => (err ? reject(err) : resolve(reply)));
  });
  const job = await unary('Submit', { type: 'demo.steps', request_id: 'reflected-1' });
  assert.equal((await unary('Submit', { type: 'demo.steps', request_id: 'reflected-1' })).id, job.id);
  await unary('Submit', { type: 'demo.steps' });
  const listed = await unary('ListJobs', { page_size: 1 });
  assert.equal(listed.jobs.length, 1);
  assert.ok(listed.next_page_token.length > 0, 'more than one job: a next page');
  reflected.close();

  // Schedules too (their file imports jobs.proto: reflection sends both).
  const scheduleDescriptor = await reflection.getDescriptorBySymbol('jobstream.v1.ScheduleService');
  const schedulePkg = scheduleDescriptor.getPackageObject({ keepCase: true, longs: String, enums: String });
  const schedules = new schedulePkg.jobstream.v1.ScheduleService(server.address,
    grpc.credentials.createInsecure());
  const created = await new Promise((resolve, reject) => schedules.CreateSchedule(
    { schedule: { id: 'reflected', cron: '0 9 * * MON-FRI', time_zone: 'Asia/Tokyo',
      job: { type: 'demo.steps' } }, paused: true },
    (err, reply) => (err ? reject(err) : resolve(reply))));
  assert.equal(created.id, 'reflected');
  assert.equal((created.next_fire_times ?? []).length, 0, 'paused: no fire times');
  assert.equal(created.paused, true);
  assert.equal(created.overlap, 'SKIP');
  schedules.close();
});

test('grpcurl can call the health service: reflection describes it', async () => {
  const reflection = new GrpcReflection(server.address, grpc.credentials.createInsecure(),
    {}, 'v1alpha');
  // What grpcurl does for `grpcurl … grpc.health.v1.Health/Check`.
  const descriptor = await reflection.getDescriptorBySymbol('grpc.health.v1.Health');
  const pkg = descriptor.getPackageObject({ keepCase: true, enums: String });
  const health = new pkg.grpc.health.v1.Health(server.address, grpc.credentials.createInsecure());
  const check = (service) => new Promise((resolve, reject) => {
    health.Check({ service }, (err, reply) => (err ? reject(err) : resolve(reply)));
  });
  assert.equal((await check('')).status, 'SERVING');
  assert.equal((await check('jobstream.v1.JobService')).status, 'SERVING');
  await assert.rejects(check('no.such.Service'), { code: grpc.status.NOT_FOUND });
  health.close();
});
