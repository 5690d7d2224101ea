// Debian's prometheus scraping a live server every second, with deploy/'s alert rules
// loaded: PromQL answers what ListJobTypes and ListJobs say, every rule loads and evaluates
// healthy, the no-workers alert goes pending for the one type that has queued jobs and no
// worker, and every query of deploy/'s Grafana dashboard runs and draws.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';
import { ROOT, freePort, startServer } from './server.mjs';

const definition = protoLoader.loadSync(
  ['jobstream/v1/jobs.proto', 'jobstream/v1/workers.proto'].map((f) => path.join(ROOT, 'proto', f)),
  { includeDirs: [path.join(ROOT, 'proto')], longs: Number, enums: String, defaults: false });
const { JobService, WorkerService } = grpc.loadPackageDefinition(definition).jobstream.v1;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let dir;
let server;
let prometheus;
let promUrl;
let jobs;
let workers;

before(async () => {
  assert.ok(existsSync('/usr/bin/prometheus'),
    "Debian's prometheus is missing (scripts/test.sh installs it)");
  dir = mkdtempSync(path.join(tmpdir(), 'jobstream-js-prom-'));
  writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ types: [
    { name: 'report', external: { leaseDuration: '30s' } },
    { name: 'held', external: {} },
  ] }));
  const metricsPort = await freePort();
  server = await startServer([`--config=${path.join(dir, 'config.json')}`,
    `--metrics_listen=127.0.0.1:${metricsPort}`]);
  server.metricsPort = metricsPort;
  jobs = new JobService(server.address, grpc.credentials.createInsecure());
  workers = new WorkerService(server.address, grpc.credentials.createInsecure());

  writeFileSync(path.join(dir, 'prometheus.yml'), `
global: {scrape_interval: 1s, evaluation_interval: 1s}
rule_files: ['${path.join(ROOT, 'deploy/prometheus/alerts.yml')}']
scrape_configs:
  - job_name: jobstream
    static_configs: [{targets: ['127.0.0.1:${metricsPort}']}]
`);
  const promPort = await freePort();
  promUrl = `http://127.0.0.1:${promPort}`;
  prometheus = spawn('/usr/bin/prometheus', [
    `--config.file=${path.join(dir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${path.join(dir, 'tsdb')}`,
    `--web.listen-address=127.0.0.1:${promPort}`,
  ], { stdio: 'ignore' });
  for (let i = 0; ; i++) {
    const ready = await fetch(`${promUrl}/-/ready`).then((r) => r.ok, () => false);
    if (ready) break;
    assert.ok(i < 300, 'prometheus did not become ready in 30 s');
    await sleep(100);
  }
});

after(async () => {
  jobs?.close();
  workers?.close();
  if (prometheus && prometheus.exitCode === null) {
    const exited = new Promise((resolve) => prometheus.once('exit', resolve));
    prometheus.kill('SIGTERM');
    await exited;
  }
  const code = await server?.stop();
  rmSync(dir, { recursive: true, force: true });
  assert.equal(code, 0, 'the server stops cleanly');
});

const unary = (stub, method, request) => new Promise((resolve, reject) => {
  stub[method](request, { deadline: Date.now() + 30000 },
    (err, reply) => (err ? reject(err) : resolve(reply)));
});

async function api(pathAndQuery) {
  const reply = await fetch(`${promUrl}${pathAndQuery}`);
  const body = await reply.json();
  assert.equal(body.status, 'success', JSON.stringify(body));
  return body.data;
}
const query = async (expr) => (await api(`/api/v1/query?query=${encodeURIComponent(expr)}`)).result;
// The single value of `expr`, or null when it has no series.
async function value(expr) {
  const result = await query(expr);
  return result.length === 1 ? Number(result[0].value[1]) : null;
}
// Polls until `check` passes (Prometheus scrapes and evaluates each second).
async function eventually(check, what) {
  const deadline = Date.now() + 30000;
  for (;;) {
    try {
      return await check();
    } catch (error) {
      if (Date.now() > deadline) throw new Error(`${what}: ${error.message}`);
      await sleep(250);
    }
  }
}

test('PromQL says what ListJobTypes and ListJobs say', async () => {
  for (let i = 0; i < 3; i++) await unary(jobs, 'Submit', { type: 'held' });
  for (let i = 0; i < 3; i++) await unary(jobs, 'Submit', { type: 'report' });
  // A worker takes two reports: it finishes one and keeps the other running.
  const { jobs: [first] } = await unary(workers, 'LeaseJob',
    { types: ['report'], workerId: 'node-1', wait: { seconds: 5 } });
  await unary(workers, 'CompleteJob', { leaseId: first.leaseId });
  await unary(workers, 'LeaseJob', { types: ['report'], workerId: 'node-1', wait: { seconds: 5 } });

  const { types } = await unary(jobs, 'ListJobTypes', {});
  const info = Object.fromEntries(types.map((t) => [t.name, t]));
  const queued = async (type) => (await unary(jobs, 'ListJobs',
    { type, states: ['QUEUED'], pageSize: 100 })).jobs?.length ?? 0;
  assert.equal(await queued('held'), 3);
  assert.equal(await queued('report'), 1);

  await eventually(async () => {
    for (const type of ['held', 'report']) {
      assert.equal(await value(`max(jobstream_jobs_queued{type="${type}"})`),
        Number(info[type].queued ?? 0), `queued ${type}`);
      assert.equal(await value(`max(jobstream_jobs_queued{type="${type}"})`), await queued(type));
      assert.equal(await value(`max(jobstream_jobs_running{type="${type}"})`),
        Number(info[type].running ?? 0), `running ${type}`);
    }
    assert.equal(await value('sum(jobstream_jobs_submitted_total)'), 6);
    assert.equal(await value('sum(jobstream_jobs_started_total{type="report"})'), 2);
    assert.equal(await value('sum(jobstream_jobs_succeeded_total)'), 1);
    assert.equal(await value('sum(jobstream_workers_seen{type="report"})'), 1);
    assert.equal(await value('sum(jobstream_job_run_seconds_count{type="report"})'), 1);
    assert.ok(await value('max(jobstream_queue_latency_seconds{type="held"})') > 0);
    assert.equal(await value('up{job="jobstream"}'), 1);
  }, 'PromQL never agreed with the server');
});

test('the alert rules load healthy, and a type with queued jobs and no worker goes pending', async () => {
  const { groups } = await api('/api/v1/rules');
  const rules = groups.flatMap((g) => g.rules);
  assert.deepEqual(rules.map((r) => r.name).sort(), [
    'JobstreamDiskFloorNear', 'JobstreamDiskFloorReached', 'JobstreamDown',
    'JobstreamFailureRatioHigh', 'JobstreamLeaseExpiriesSpiking', 'JobstreamNoWorkers',
    'JobstreamPostgresUnreachable', 'JobstreamQueueLatencyHigh', 'JobstreamStoreFailed']);
  await eventually(async () => {
    const { groups: now } = await api('/api/v1/rules');
    for (const rule of now.flatMap((g) => g.rules)) {
      assert.equal(rule.health, 'ok', `${rule.name}: ${rule.lastError ?? ''}`);
      assert.ok(rule.lastEvaluation && !rule.lastEvaluation.startsWith('0001'), `${rule.name} ran`);
    }
    // "held" has jobs queued and no worker ever asked for it: pending (its `for` is 5m);
    // "report" has a worker. The store and the disk are fine: nothing else.
    const { alerts } = await api('/api/v1/alerts');
    assert.deepEqual(alerts.map((a) => [a.labels.alertname, a.labels.type, a.state]),
      [['JobstreamNoWorkers', 'held', 'pending']]);
    assert.equal(Number(alerts[0].value), 3);
  }, 'the rules never settled');
});

// Every metric the dashboard and the alerts name, as the server declares it (a typo there
// would draw an empty panel or an alert that never fires).
test('the dashboard and the alert rules name only metrics the server serves', async () => {
  const scrape = await (await fetch(`http://127.0.0.1:${server.metricsPort}/metrics`)).text();
  const families = new Set([...scrape.matchAll(/^# TYPE (\S+) /gm)].map((m) => m[1]));
  for (const file of ['deploy/grafana/jobstream.json', 'deploy/prometheus/alerts.yml']) {
    const text = readFileSync(path.join(ROOT, file), 'utf8');
    const named = new Set([...text.matchAll(/\bjobstream_[a-z0-9_]+/g)]
      .map((m) => m[0].replace(/_(bucket|sum|count)$/, ''))
      .filter((name) => !name.endsWith('.json')));
    assert.ok(named.size > 5, file);
    for (const name of named) assert.ok(families.has(name), `${file} names ${name}, which is not served`);
  }
});

// Each panel's every query, as Grafana would send it: valid PromQL, and the panels of a
// server with jobs in show data.
test('every dashboard query runs, and the main panels have data', async () => {
  const dashboard = JSON.parse(readFileSync(path.join(ROOT, 'deploy/grafana/jobstream.json'), 'utf8'));
  const panels = dashboard.panels.filter((p) => p.type !== 'row');
  assert.ok(panels.length >= 12);
  const grafana = (expr) => expr.replaceAll('$type', '.*').replaceAll('$__rate_interval', '30s');
  // Fresh work for the rates over the last 30 s: a job that waits and runs a while.
  await unary(jobs, 'Submit', { type: 'report' });
  const { jobs: [leased] } = await unary(workers, 'LeaseJob',
    { types: ['report'], workerId: 'node-1', wait: { seconds: 5 } });
  await sleep(200);
  await unary(workers, 'CompleteJob', { leaseId: leased.leaseId });
  const withData = ['Jobs queued', 'Oldest wait (queue latency)', 'Jobs running',
    'Jobs ended, by outcome', 'Queue wait (could run → started)',
    'Run time (started → ended, per attempt)', 'Workers seen in the last minute',
    'Write + fsync per group (RocksDB)', 'Disk free vs floor (RocksDB)', 'Watch streams open'];
  await eventually(async () => {
    for (const panel of panels) {
      let series = 0;
      for (const target of panel.targets) {
        const result = await query(grafana(target.expr));  // api() fails on a bad query
        series += result.filter((r) => r.value[1] !== 'NaN').length;
      }
      if (withData.includes(panel.title)) assert.ok(series > 0, `"${panel.title}" has no data`);
    }
  }, 'the dashboard never drew');
});
