// Traces: a server with --otlp_endpoint exports each job's spans to an OTLP/gRPC receiver
// built here on the OpenTelemetry JS packages' own protobuf definitions (so the server's
// hand-written .proto is checked against upstream's wire format). A caller's traceparent —
// gRPC metadata, the gateway's HTTP header, or the request's field — makes the job a span of
// its trace; each attempt and its queue wait are child spans; the attempt's traceparent
// reaches an exec program and a `jobstream work` command as $TRACEPARENT.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { BIN_DIR, ROOT, freePort, startGateway, startServer } from './server.mjs';

// The OpenTelemetry packages' generated protobuf root: upstream's messages, not ours.
const otel = createRequire(import.meta.url)(
  '@opentelemetry/otlp-transformer/build/src/generated/root.js').opentelemetry.proto;
const { ExportTraceServiceRequest, ExportTraceServiceResponse } = otel.collector.trace.v1;

const definition = protoLoader.loadSync(
  ['jobstream/v1/jobs.proto'].map((f) => path.join(ROOT, 'proto', f)),
  { includeDirs: [path.join(ROOT, 'proto')], longs: String, enums: String, defaults: false });
const { JobService } = grpc.loadPackageDefinition(definition).jobstream.v1;

const CALLER_TRACE = '4bf92f3577b34da6a3ce929d0e0e4736';
const CALLER_SPAN = '00f067aa0ba902b7';
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const hex = (bytes) => Buffer.from(bytes).toString('hex');

let dir;
let receiver;
let receiverPort;
let server;
let gateway;
let jobs;
const spans = [];  // every span received: {traceId, spanId, parentSpanId, name, attributes}

before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'jobstream-js-traces-'));
  // An OTLP/gRPC receiver: TraceService/Export, decoded with upstream's definitions.
  receiver = new grpc.Server();
  receiver.addService({
    Export: {
      path: '/opentelemetry.proto.collector.trace.v1.TraceService/Export',
      requestStream: false,
      responseStream: false,
      requestDeserialize: (buffer) => ExportTraceServiceRequest.decode(buffer),
      responseSerialize: (message) => Buffer.from(ExportTraceServiceResponse.encode(message).finish()),
    },
  }, {
    Export: (call, callback) => {
      for (const rs of call.request.resourceSpans) {
        const resource = Object.fromEntries(rs.resource.attributes.map((a) => [a.key, a.value.stringValue]));
        for (const ss of rs.scopeSpans) {
          for (const s of ss.spans) {
            spans.push({
              traceId: hex(s.traceId),
              spanId: hex(s.spanId),
              parentSpanId: hex(s.parentSpanId ?? []),
              name: s.name,
              start: Number(s.startTimeUnixNano),
              end: Number(s.endTimeUnixNano),
              error: s.status?.code === 2,
              service: resource['service.name'],
              attributes: Object.fromEntries(s.attributes.map((a) => [a.key,
                a.value.stringValue ?? Number(a.value.intValue)])),
            });
          }
        }
      }
      callback(null, ExportTraceServiceResponse.create({}));
    },
  });
  receiverPort = await new Promise((resolve, reject) => receiver.bindAsync(
    '127.0.0.1:0', grpc.ServerCredentials.createInsecure(),
    (err, port) => (err ? reject(err) : resolve(port))));

  // "traced": an exec program that fails its first attempt and, each time, tells what
  // $TRACEPARENT it was given. "handed": jobs for a `jobstream work` command.
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ types: [
    { name: 'traced', maxAttempts: 2, exec: { argv: ['/bin/sh', '-c',
      'printf \'{"result": {"traceparent": "%s"}}\\n\' "$TRACEPARENT"; ' +
      '[ "$JOBSTREAM_ATTEMPT" -ge 2 ] || exit 3'] } },
    { name: 'handed', external: { leaseDuration: '30s' } },
  ] }));
  server = await startServer([`--config=${path.join(dir, 'config.json')}`, '--retry_backoff=0s',
    `--otlp_endpoint=127.0.0.1:${receiverPort}`, '--metrics_listen=off']);
  gateway = await startGateway(server.address);
  jobs = new JobService(server.address, grpc.credentials.createInsecure());
});

after(async () => {
  jobs?.close();
  await gateway?.stop();
  const code = await server?.stop();
  receiver?.forceShutdown();  // before asserting: an open receiver would keep Node running
  rmSync(dir, { recursive: true, force: true });
  assert.equal(code, 0, 'the server stops cleanly (and, under ASan, leaks nothing)');
});

const unary = (method, request, metadata = new grpc.Metadata()) => new Promise((resolve, reject) => {
  jobs[method](request, metadata, { deadline: Date.now() + 30000 },
    (err, reply) => (err ? reject(err) : resolve(reply)));
});
const finished = (jobId) => unary('WaitJob', { jobId, timeout: { seconds: 30 } });
// The spans of `traceId` once `count` have come (the exporter sends a batch each second).
async function spansOf(traceId, count) {
  const deadline = Date.now() + 15000;
  for (;;) {
    const mine = spans.filter((s) => s.traceId === traceId);
    if (mine.length >= count) return mine;
    if (Date.now() > deadline) {
      throw new Error(`${mine.length} spans of ${traceId} came, not ${count}: ${JSON.stringify(mine)}`);
    }
    await sleep(100);
  }
}

test('a job is a span of its caller\'s trace, with a queue wait and an attempt span each try', async () => {
  const metadata = new grpc.Metadata();
  metadata.set('traceparent', `00-${CALLER_TRACE}-${CALLER_SPAN}-01`);
  const job = await unary('Submit', { type: 'traced' }, metadata);
  assert.equal(job.trace.traceId, CALLER_TRACE);
  assert.equal(job.trace.parentSpanId, CALLER_SPAN);
  assert.match(job.trace.spanId, /^[0-9a-f]{16}$/);
  const done = await finished(job.id);
  assert.equal(done.state, 'SUCCEEDED');
  assert.equal(done.attempt, 2);

  const got = await spansOf(CALLER_TRACE, 5);
  assert.equal(got.length, 5, JSON.stringify(got));
  const jobSpan = got.find((s) => s.name === 'job traced');
  assert.ok(jobSpan, 'the job span');
  assert.equal(jobSpan.spanId, job.trace.spanId);
  assert.equal(jobSpan.parentSpanId, CALLER_SPAN);
  assert.equal(jobSpan.service, 'jobstream');
  assert.deepEqual([jobSpan.attributes['jobstream.job.id'], jobSpan.attributes['jobstream.outcome'],
    jobSpan.attributes['jobstream.attempts']], [job.id, 'succeeded', 2]);
  assert.equal(jobSpan.error, false);
  const children = got.filter((s) => s !== jobSpan);
  for (const s of children) {
    assert.equal(s.parentSpanId, jobSpan.spanId, `${s.name} is a child of the job's span`);
    assert.ok(s.start >= jobSpan.start && s.end <= jobSpan.end, `${s.name} lies within the job`);
  }
  assert.deepEqual(children.map((s) => s.name).sort(),
    ['attempt 1', 'attempt 2', 'queue wait', 'queue wait']);
  const [first, second] = ['attempt 1', 'attempt 2'].map((n) => children.find((s) => s.name === n));
  assert.equal(first.attributes['jobstream.outcome'], 'retrying');
  assert.equal(first.error, true);
  assert.equal(second.attributes['jobstream.outcome'], 'succeeded');
  assert.ok(first.end <= second.start, 'the attempts follow each other');
  // The program was handed its own attempt's span.
  assert.equal(done.result.structValue.fields.traceparent.stringValue,
    `00-${CALLER_TRACE}-${second.spanId}-01`);
  assert.equal(new Set(got.map((s) => s.spanId)).size, 5, 'every span id differs');
});

test('through the gateway the traceparent header does the same; a body field too', async () => {
  const trace = 'aaaabbbbccccddddeeeeffff00001111';
  const reply = await fetch(`${gateway.url}/v1/jobs`, {
    method: 'POST',
    headers: { 'Content-Type': 'application/json', traceparent: `00-${trace}-1111222233334444-01` },
    body: JSON.stringify({ type: 'handed' }),
  });
  assert.equal(reply.status, 202);
  const viaHeader = await reply.json();
  assert.equal(viaHeader.trace.traceId, trace);
  assert.equal(viaHeader.trace.parentSpanId, '1111222233334444');

  const viaField = await unary('Submit',
    { type: 'handed', traceparent: `00-${trace}-5555666677778888-00` });
  assert.equal(viaField.trace.traceId, trace);
  assert.equal(viaField.trace.parentSpanId, '5555666677778888');
  assert.ok(!viaField.trace.sampled, 'the caller sampled it out');
  await unary('CancelJob', { jobId: viaHeader.id });
  await unary('CancelJob', { jobId: viaField.id });
  // Sampled out: no span of it is sent; the sampled one's job span is.
  const got = await spansOf(trace, 1);
  await sleep(1500);
  assert.deepEqual(spans.filter((s) => s.traceId === trace).map((s) => s.spanId),
    [viaHeader.trace.spanId]);
  assert.equal(got[0].attributes['jobstream.outcome'], 'cancelled');
});

test('a malformed traceparent: a field is refused, metadata is ignored (W3C)', async () => {
  await assert.rejects(unary('Submit', { type: 'handed', traceparent: '00-xyz-1-01' }),
    (e) => e.code === grpc.status.INVALID_ARGUMENT && /is not a W3C traceparent/.test(e.details));
  await assert.rejects(unary('Submit',
    { type: 'handed', traceparent: `00-${'0'.repeat(32)}-${CALLER_SPAN}-01` }),
  (e) => e.code === grpc.status.INVALID_ARGUMENT);
  const metadata = new grpc.Metadata();
  metadata.set('traceparent', 'garbage');
  const job = await unary('Submit', { type: 'handed' }, metadata);
  assert.match(job.trace.traceId, /^[0-9a-f]{32}$/, 'a trace of its own');
  assert.equal(job.trace.parentSpanId, undefined);
  await unary('CancelJob', { jobId: job.id });
});

test('a `jobstream work` command gets its attempt\'s span as $TRACEPARENT', async () => {
  const metadata = new grpc.Metadata();
  const trace = '99998888777766665555444433332222';
  metadata.set('traceparent', `00-${trace}-${CALLER_SPAN}-01`);
  const job = await unary('Submit', { type: 'handed' }, metadata);
  const worker = spawn(path.join(BIN_DIR, 'client/jobstream'), [`--server=${server.address}`,
    'work', '--type=handed', '--', '/bin/sh', '-c',
    'printf \'{"result": {"traceparent": "%s"}}\\n\' "$TRACEPARENT"'], { stdio: 'ignore' });
  try {
    const done = await finished(job.id);
    assert.equal(done.state, 'SUCCEEDED');
    const attempt = (await spansOf(trace, 3)).find((s) => s.name === 'attempt 1');
    assert.equal(done.result.structValue.fields.traceparent.stringValue,
      `00-${trace}-${attempt.spanId}-01`);
    assert.equal(attempt.attributes['jobstream.worker'], done.workerId);
  } finally {
    const exited = new Promise((resolve) => worker.once('exit', resolve));
    worker.kill('SIGTERM');
    await exited;
  }
});

test('--otlp_sample_ratio=0: a job with no caller trace exports nothing; a sampled caller\'s does', async () => {
  const sampling = await startServer([`--config=${path.join(dir, 'config.json')}`,
    '--retry_backoff=0s', `--otlp_endpoint=127.0.0.1:${receiverPort}`, '--otlp_sample_ratio=0',
    '--metrics_listen=off']);
  const client = new JobService(sampling.address, grpc.credentials.createInsecure());
  const call = (method, request, metadata = new grpc.Metadata()) => new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + 30000 },
      (err, reply) => (err ? reject(err) : resolve(reply)));
  });
  try {
    const alone = await call('Submit', { type: 'traced' });
    assert.notEqual(alone.trace.sampled, true, 'a root job is not sampled at ratio 0');
    const aloneDone = await call('WaitJob', { jobId: alone.id, timeout: { seconds: 30 } });
    assert.equal(aloneDone.state, 'SUCCEEDED');
    // Its program still gets the trace, flagged not sampled, so it can log the id.
    assert.match(aloneDone.result.structValue.fields.traceparent.stringValue,
      new RegExp(`^00-${alone.trace.traceId}-[0-9a-f]{16}-00$`));

    const trace = '0123456789abcdef0123456789abcdef';
    const metadata = new grpc.Metadata();
    metadata.set('traceparent', `00-${trace}-${CALLER_SPAN}-01`);
    const child = await call('Submit', { type: 'traced' }, metadata);
    assert.equal(child.trace.sampled, true, 'a caller\'s sampled flag wins over the ratio');
    await call('WaitJob', { jobId: child.id, timeout: { seconds: 30 } });
    assert.equal((await spansOf(trace, 5)).length, 5);
    // The exporter sends in order: the later job's spans came, so the earlier one's would have.
    assert.deepEqual(spans.filter((s) => s.traceId === alone.trace.traceId), []);
  } finally {
    client.close();
    assert.equal(await sampling.stop(), 0);
  }
  for (const bad of ['2', '-0.1', 'nan', 'half']) {
    const run = spawnSync(path.join(BIN_DIR, 'server/jobstream-server'),
      [`--otlp_sample_ratio=${bad}`, '--listen=127.0.0.1:0', `--data_dir=${dir}/never`],
      { encoding: 'utf8', timeout: 10000 });
    assert.notEqual(run.status, 0, `--otlp_sample_ratio=${bad} is refused`);
    assert.match(run.stderr, /otlp_sample_ratio/, run.stderr);
  }
});
