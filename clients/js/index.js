// jobstream for Node: Client (submit, follow, fetch, schedules) and Worker (run the jobs of
// EXTERNAL types), on @grpc/grpc-js with the API's own .proto files.
//
//   import { Client, Worker } from 'jobstream';
//   const client = new Client('127.0.0.1:50051');
//   const job = await client.submit('report.generate', { month: '2026-11' });
//   for await (const event of client.watch(job.id)) console.log(event.type);
//
// Messages are plain objects with the proto's fields in camelCase, enums as names
// ('SUCCEEDED'), 64-bit numbers as numbers; params and results as plain JS values.
import { createHash, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, createReadStream } from 'node:fs';
import { open, rename, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import grpc from '@grpc/grpc-js';
import protoLoader from '@grpc/proto-loader';

const here = path.dirname(fileURLToPath(import.meta.url));
const protoDir = [path.join(here, 'proto'), path.join(here, '..', '..', 'proto')]
  .find((d) => existsSync(path.join(d, 'jobstream', 'v1', 'jobs.proto')));
const definition = protoLoader.loadSync(
  ['jobs.proto', 'workers.proto', 'schedules.proto'].map((f) => path.join(protoDir, 'jobstream', 'v1', f)),
  { includeDirs: [protoDir], longs: Number, enums: String, defaults: true, oneofs: true });
const v1 = grpc.loadPackageDefinition(definition).jobstream.v1;

const CHUNK = 1 << 20; // the server's largest artifact message
const BACKOFF = [50, 100, 200, 500, 1000, 2000];
const TRANSIENT = new Set([grpc.status.UNAVAILABLE, grpc.status.RESOURCE_EXHAUSTED, grpc.status.INTERNAL]);
const FINAL = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const backoff = (attempt) => BACKOFF[Math.min(attempt, BACKOFF.length - 1)];

// Errors ------------------------------------------------------------------------------

/** A call the server (or the connection) refused: `code` is the gRPC status name. */
export class JobstreamError extends Error {
  constructor(message, code = 'UNKNOWN') {
    super(`${code}: ${message}`);
    this.name = 'JobstreamError';
    this.code = code;
    this.details = message;
  }
}
/** result(): the job ended FAILED or CANCELLED; `job` is it. */
export class JobFailed extends JobstreamError {
  constructor(job) {
    super(`job ${job.id} ${job.state}: ${job.error?.message ?? ''}`, job.state === 'FAILED' ? 'ABORTED' : 'CANCELLED');
    this.name = 'JobFailed';
    this.job = job;
  }
}
const codeName = (code) => Object.keys(grpc.status).find((k) => grpc.status[k] === code) ?? 'UNKNOWN';
const fromGrpc = (e) => (e instanceof JobstreamError ? e : new JobstreamError(e.details || e.message, codeName(e.code)));
// A status given by its number, as EndJobs answers each ending.
const fromCode = (code, message) => new JobstreamError(message || codeName(code), codeName(code));

// Values ------------------------------------------------------------------------------

/** A JS value as a google.protobuf.Value. */
export function toValue(v) {
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  if (typeof v === 'object') return { structValue: toStruct(v) };
  throw new TypeError(`${typeof v} is not a JSON value`);
}
/** A plain object as a google.protobuf.Struct. */
export function toStruct(o) {
  if (o === null || o === undefined) return { fields: {} };
  if (typeof o !== 'object' || Array.isArray(o)) throw new TypeError('params must be an object');
  return { fields: Object.fromEntries(Object.entries(o).map(([k, v]) => [k, toValue(v)])) };
}
/** A google.protobuf.Value as a JS value. */
export function fromValue(v) {
  if (!v) return null;
  switch (v.kind) {
    case 'numberValue': return v.numberValue;
    case 'stringValue': return v.stringValue;
    case 'boolValue': return v.boolValue;
    case 'structValue': return fromStruct(v.structValue);
    case 'listValue': return (v.listValue.values ?? []).map(fromValue);
    default: return null;
  }
}
/** A google.protobuf.Struct as a plain object. */
export function fromStruct(s) {
  return Object.fromEntries(Object.entries(s?.fields ?? {}).map(([k, v]) => [k, fromValue(v)]));
}
const timestamp = (t) => {
  const ms = t instanceof Date ? t.getTime() : Number(t) * 1000;
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1e6 };
};
const duration = (seconds) => ({ seconds: Math.floor(seconds), nanos: Math.round((seconds % 1) * 1e9) });
/** A Timestamp as a Date (null if unset). */
export const toDate = (t) => (t && (t.seconds || t.nanos) ? new Date(Number(t.seconds) * 1000 + t.nanos / 1e6) : null);

// A job as the API sends it, with params, result and error details as plain JS.
function plainJob(job) {
  if (!job) return job;
  return { ...job, params: fromStruct(job.params), result: job.result ? fromValue(job.result) : null,
    error: job.error ? { ...job.error, details: fromStruct(job.error.details) } : job.error };
}
const plainEvent = (e) => ({ ...e, status: plainJob(e.status) });

function submitRequest(type, params, o = {}) {
  const r = { type, params: toStruct(params), labels: o.labels ?? {}, priority: o.priority ?? 0,
    maxAttempts: o.maxAttempts ?? 0, requestId: o.requestId ?? '',
    uniqueKey: o.uniqueKey ?? '', concurrencyKey: o.concurrencyKey ?? '', traceparent: o.traceparent ?? '',
    dependsOn: (o.dependsOn ?? []).map((d) => (typeof d === 'string' ? d : d.id)) };
  if (o.runAt !== undefined && o.delay !== undefined) throw new TypeError('give runAt or delay, not both');
  if (o.delay !== undefined) r.runAt = timestamp(Date.now() / 1000 + o.delay);
  if (o.runAt !== undefined) r.runAt = timestamp(o.runAt);
  if (o.onDependencyFailure !== undefined) {
    const policy = String(o.onDependencyFailure).toUpperCase();
    if (!['CANCEL', 'FAIL', 'RUN'].includes(policy)) throw new TypeError(`onDependencyFailure must be cancel, fail or run, not ${o.onDependencyFailure}`);
    r.onDependencyFailure = policy;
  }
  if (o.uniqueFor === 'active') r.uniqueWhile = 'ACTIVE';
  else if (o.uniqueFor !== undefined) r.uniqueFor = duration(o.uniqueFor);
  if (o.webhook !== undefined) r.webhook = typeof o.webhook === 'string' ? { url: o.webhook } : o.webhook;
  return r;
}
const childRequest = (c) => submitRequest(c.type, c.params, c);

// Connections ---------------------------------------------------------------------------

function credentials(tls) {
  if (!tls) return grpc.credentials.createInsecure();
  const read = (p) => (p ? readFileSync(p) : null);
  if ((tls.cert === undefined) !== (tls.key === undefined)) throw new TypeError('tls: cert and key go together');
  return grpc.credentials.createSsl(read(tls.ca), read(tls.key), read(tls.cert));
}
function connect(address, o) {
  const target = address ?? process.env.JOBSTREAM_SERVER ?? '127.0.0.1:50051';
  const token = o.token ?? (process.env.JOBSTREAM_TOKEN ?? '').trim();
  // Reconnects to a server that went away are tried at least every 2 s (gRPC's default
  // backoff grows to 2 min): a call made once it is back finds it soon, and the retry loops
  // here, which bound how long they try, do the waiting.
  const options = { 'grpc.max_receive_message_length': 64 << 20, 'grpc.max_send_message_length': 64 << 20,
    'grpc.initial_reconnect_backoff_ms': 100, 'grpc.max_reconnect_backoff_ms': 2000 };
  if (o.tls?.serverName) options['grpc.ssl_target_name_override'] = o.tls.serverName;
  const metadata = () => {
    const m = new grpc.Metadata();
    if (token) m.set('authorization', `Bearer ${token}`);
    return m;
  };
  return { target, creds: credentials(o.tls), options, metadata };
}
const deadline = (seconds) => new Date(Date.now() + seconds * 1000);
function unary(stub, method, request, metadata, timeout, extra = {}) {
  return new Promise((resolve, reject) => {
    stub[method](request, metadata, { deadline: deadline(timeout), ...extra },
      (err, reply) => (err ? reject(err) : resolve(reply)));
  });
}

// Client --------------------------------------------------------------------------------

/**
 * A connection to a jobstream server. options: token (default $JOBSTREAM_TOKEN), tls
 * ({ca, cert, key, serverName} file paths; true for the system's CAs), timeout (seconds a
 * call may take, 30), retryFor (seconds submit, wait and watch keep trying an unreachable
 * server, 60).
 */
export class Client {
  constructor(address, options = {}) {
    const c = connect(address, { ...options, tls: options.tls === true ? {} : options.tls });
    this.address = c.target;
    this.metadata = c.metadata;
    this.timeout = options.timeout ?? 30;
    this.retryFor = options.retryFor ?? 60;
    this.jobs = new v1.JobService(c.target, c.creds, c.options);
    this.schedules = new v1.ScheduleService(this.address, c.creds, { ...c.options, channelOverride: this.jobs.getChannel() });
  }

  close() { this.jobs.close(); }

  // One call; with `retry` (a call safe to repeat), tried again while the server is
  // unreachable, for up to retryFor seconds.
  async call(stub, method, request, { retry = false, metadata = this.metadata() } = {}) {
    const giveUp = Date.now() + this.retryFor * 1000;
    for (let attempt = 0; ; attempt++) {
      try {
        return await unary(stub, method, request, metadata, this.timeout);
      } catch (e) {
        if (!retry || e.code !== grpc.status.UNAVAILABLE || Date.now() > giveUp) throw fromGrpc(e);
      }
      await sleep(backoff(attempt));
    }
  }

  /** Creates a job; resolves once it is durable. See index.d.ts for the options. */
  async submit(type, params, options = {}) {
    const metadata = this.metadata();
    if (options.traceparent) metadata.set('traceparent', options.traceparent);
    // A request id made up when none is given: the retries below never make two jobs.
    const request = submitRequest(type, params, { requestId: `js-${randomUUID()}`, ...options });
    return plainJob(await this.call(this.jobs, 'Submit', request, { retry: true, metadata }));
  }

  /** Up to 10,000 children (and an optional `then`) under one parent, all or none. */
  async submitBatch(children, options = {}) {
    const request = { children: children.map(childRequest), labels: options.labels ?? {},
      requestId: options.requestId ?? `js-${randomUUID()}` };
    if (options.then) request.then = childRequest(options.then);
    if (options.webhook) request.webhook = typeof options.webhook === 'string' ? { url: options.webhook } : options.webhook;
    const r = await this.call(this.jobs, 'SubmitBatch', request, { retry: true });
    return { parent: plainJob(r.parent), childIds: r.childIds };
  }

  async get(jobId) { return plainJob(await this.call(this.jobs, 'GetStatus', { jobId })); }

  /** Resolves with the job once it has ended; rejects DEADLINE_EXCEEDED after `timeout` s. */
  async wait(jobId, { timeout } = {}) {
    const end = timeout === undefined ? null : Date.now() + timeout * 1000;
    for (let attempt = 0; ;) {
      const left = end === null ? 300 : Math.max(0, Math.min(300, (end - Date.now()) / 1000));
      let job;
      try {
        job = await unary(this.jobs, 'WaitJob', { jobId, timeout: duration(left) }, this.metadata(), left + this.timeout);
        attempt = 0;
      } catch (e) {
        if (!TRANSIENT.has(e.code) && e.code !== grpc.status.DEADLINE_EXCEEDED) throw fromGrpc(e);
        if (end !== null && Date.now() >= end) throw new JobstreamError(`job ${jobId}: no answer from ${this.address} within ${timeout}s`, 'DEADLINE_EXCEEDED');
        await sleep(backoff(attempt++));
        continue;
      }
      if (FINAL.has(job.state)) return plainJob(job);
      if (end !== null && Date.now() >= end) throw new JobstreamError(`job ${jobId} is still ${job.state} after ${timeout}s`, 'DEADLINE_EXCEEDED');
    }
  }

  /** The job's result once it SUCCEEDED; rejects with JobFailed otherwise. */
  async result(jobId, options) {
    const job = await this.wait(jobId, options);
    if (job.state !== 'SUCCEEDED') throw new JobFailed(job);
    return job.result;
  }

  /**
   * The job's events after sequence `after`, until its end: an async iterator that resumes
   * after the last event received when the stream drops or the server restarts.
   */
  async* watch(jobId, { after = 0 } = {}) {
    let last = after;
    let failingSince = null;
    for (let attempt = 0; ;) {
      const call = this.jobs.WatchJob({ jobId, afterSequence: last }, this.metadata());
      try {
        for await (const event of call) {
          if (event.sequence <= last) continue;
          last = event.sequence;
          failingSince = null;
          attempt = 0;
          yield plainEvent(event);
        }
        return;
      } catch (e) {
        if (!TRANSIENT.has(e.code)) throw fromGrpc(e);
        failingSince ??= Date.now();
        if (Date.now() - failingSince > this.retryFor * 1000) throw fromGrpc(e);
      } finally {
        call.cancel();
      }
      await sleep(backoff(attempt++));
    }
  }

  async cancel(jobId, reason = '') { return plainJob(await this.call(this.jobs, 'CancelJob', { jobId, reason })); }

  async retry(jobId, { reason = '', asNew = false, params } = {}) {
    const request = { jobId, reason, asNew };
    if (params !== undefined) request.params = toStruct(params);
    return plainJob(await this.call(this.jobs, 'RetryJob', request));
  }

  async delete(jobId) { await this.call(this.jobs, 'DeleteJob', { jobId }); }

  /** Every matching job, newest first, a page at a time as you iterate. */
  async* list({ states = [], type = '', labels = {}, parent, pageSize = 500 } = {}) {
    const filter = { states, type, labels: { ...labels } };
    if (parent) filter.labels['jobstream/batch'] = typeof parent === 'string' ? parent : parent.id;
    let pageToken = '';
    do {
      const page = await this.call(this.jobs, 'ListJobs', { ...filter, pageSize, pageToken });
      for (const job of page.jobs) yield plainJob(job);
      pageToken = page.nextPageToken;
    } while (pageToken);
  }

  async types() { return (await this.call(this.jobs, 'ListJobTypes', {})).types; }

  async whoami() { return this.call(this.jobs, 'WhoAmI', {}); }

  /**
   * Writes the job's artifact to `file`, through `file`.part: a fetch cut off goes on from
   * where it stopped, and the file is renamed only once its sha256 matches.
   */
  async fetchArtifact(jobId, name, file) {
    const part = `${file}.part`;
    let failingSince = null;
    for (let attempt = 0; ; attempt++) {
      const offset = await stat(part).then((s) => s.size, () => 0);
      const call = this.jobs.GetArtifact({ jobId, name, offset }, this.metadata());
      const out = await open(part, 'a');
      let artifact = null;
      try {
        for await (const m of call) {
          if (m.artifact) artifact = m.artifact;
          if (m.data?.length) await out.write(m.data);
        }
        await out.close();
        if (!artifact) throw new JobstreamError(`artifact ${name} of job ${jobId}: the server sent no description`, 'INTERNAL');
        if (await sha256(part) !== artifact.sha256) {
          await rm(part, { force: true });
          throw new JobstreamError(`artifact ${name} of job ${jobId}: the bytes fetched do not match its sha256`, 'DATA_LOSS');
        }
        await rename(part, file);
        return artifact;
      } catch (e) {
        await out.close().catch(() => {});
        if (e instanceof JobstreamError) throw e;
        const restart = e.code === grpc.status.ABORTED || e.code === grpc.status.OUT_OF_RANGE;
        if (restart) await rm(part, { force: true });
        else if (!TRANSIENT.has(e.code)) throw fromGrpc(e);
        failingSince ??= Date.now();
        if (Date.now() - failingSince > this.retryFor * 1000) throw fromGrpc(e);
      } finally {
        call.cancel();
      }
      await sleep(backoff(attempt));
    }
  }

  // Schedules: a schedule is the Schedule message as a plain object (camelCase fields;
  // job.params a plain object).
  async createSchedule(schedule, { paused = false } = {}) {
    return this.call(this.schedules, 'CreateSchedule', { schedule: scheduleMessage(schedule), paused });
  }
  async getSchedule(id) { return this.call(this.schedules, 'GetSchedule', { id }); }
  async* listSchedules({ pageSize = 500 } = {}) {
    let pageToken = '';
    do {
      const page = await this.call(this.schedules, 'ListSchedules', { pageSize, pageToken });
      yield* page.schedules;
      pageToken = page.nextPageToken;
    } while (pageToken);
  }
  async updateSchedule(schedule) { return this.call(this.schedules, 'UpdateSchedule', { schedule: scheduleMessage(schedule) }); }
  async pauseSchedule(id) { return this.call(this.schedules, 'PauseSchedule', { id }); }
  async resumeSchedule(id) { return this.call(this.schedules, 'ResumeSchedule', { id }); }
  async triggerSchedule(id) { return plainJob(await this.call(this.schedules, 'TriggerSchedule', { id })); }
  async deleteSchedule(id) { await this.call(this.schedules, 'DeleteSchedule', { id }); }
}

function scheduleMessage(s) {
  const out = { ...s, job: { ...s.job, params: toStruct(s.job?.params) } };
  if (typeof s.interval === 'number') out.interval = duration(s.interval);
  if (typeof s.jitter === 'number') out.jitter = duration(s.jitter);
  return out;
}

function sha256(file) {
  return new Promise((resolve, reject) => {
    const h = createHash('sha256');
    createReadStream(file).on('data', (d) => h.update(d)).on('error', reject)
      .on('end', () => resolve(h.digest('hex')));
  });
}

// Worker --------------------------------------------------------------------------------

/** Raise to fail the attempt; the job runs again while its type's attempts remain. */
export class Retryable extends Error { constructor(m) { super(m); this.name = 'Retryable'; } }
/** Raise to fail the job for good. */
export class Fatal extends Error { constructor(m) { super(m); this.name = 'Fatal'; } }
/** ctx.check() throws it once the job was cancelled; throw it to stop. */
export class Cancelled extends Error { constructor(m = 'cancelled') { super(m); this.name = 'Cancelled'; } }
/** The lease expired or was taken over: another worker may run the job now. */
export class LeaseLost extends Error { constructor(m) { super(m); this.name = 'LeaseLost'; } }

class Lease {
  constructor(leased) {
    this.leased = leased;
    this.id = leased.leaseId;
    const expires = toDate(leased.leaseExpireTime)?.getTime() ?? Date.now() + 30000;
    this.seconds = Math.max(1, (expires - Date.now()) / 1000);
    this.lastReport = Date.now();
    this.cancelled = false;
    this.lost = false;
    this.released = false;
    this.busy = Promise.resolve(); // one call about the lease at a time
  }
  serial(fn) {
    const run = this.busy.then(fn, fn);
    this.busy = run.catch(() => {});
    return run;
  }
}

/** What a function sees of its job. */
class Context {
  constructor(worker, lease) {
    this.worker = worker;
    this.lease = lease;
    this.job = plainJob(lease.leased.job);
    this.id = this.job.id;
    this.attempt = this.job.attempt;
    this.traceparent = lease.leased.traceparent;
  }
  get cancelled() { return this.lease.cancelled || this.lease.released; }
  check() {
    if (this.lease.lost) throw new LeaseLost(this.id);
    if (this.cancelled) throw new Cancelled(this.id);
  }
  /** Starts a step (a STEP event every watcher sees). */
  step(step, { index = 0, count = 0, fraction, message = '' } = {}) {
    return this.report({ step, stepIndex: index, stepCount: count, fraction: fraction ?? 0, message });
  }
  /** Progress within the step; fraction is overall, 0..1. */
  progress(fraction, message = '') {
    if (!(fraction >= 0 && fraction <= 1)) throw new RangeError(`fraction must be within 0..1, not ${fraction}`);
    return this.report({ fraction, message });
  }
  // Sent again while the server is unreachable for as long as the lease lasts.
  report(progress) {
    return this.lease.serial(async () => {
      for (let attempt = 0; ; attempt++) {
        try {
          this.worker.noted(this.lease, await this.worker.unary('ReportProgress', { leaseId: this.lease.id, progress }));
          return;
        } catch (e) {
          if (e.code === grpc.status.UNAVAILABLE && Date.now() < this.lease.lastReport + this.lease.seconds * 1000) {
            await sleep(backoff(attempt));
            continue;
          }
          throw this.failedReport(e);
        }
      }
    });
  }
  failedReport(e) {
    if (e.code === grpc.status.FAILED_PRECONDITION) {
      this.lease.lost = true;
      return new LeaseLost(`${this.id}: ${e.details}`);
    }
    return fromGrpc(e);
  }
  /** Attaches the file at `file` as `name` (default its base name); resolves with the Artifact. */
  async upload(file, { name = path.basename(file), contentType = '' } = {}) {
    const sum = await sha256(file);
    const { size } = await stat(file);
    return new Promise((resolve, reject) => {
      const call = this.worker.workers.UploadArtifact(this.worker.metadata(), { deadline: deadline(this.worker.timeout + size / CHUNK) },
        (err, artifact) => (err ? reject(this.failedReport(err)) : resolve(artifact)));
      call.write({ header: { leaseId: this.lease.id, name, contentType, size, sha256: sum } });
      const stream = createReadStream(file, { highWaterMark: CHUNK });
      stream.on('data', (data) => { if (!call.write({ data })) { stream.pause(); call.once('drain', () => stream.resume()); } });
      stream.on('error', (e) => { call.cancel(); reject(e); });
      stream.on('end', () => { call.write({ finishWrite: true }); call.end(); });
    });
  }
}

/**
 * Leases the jobs of the types it has functions for and runs them. options: as Client's,
 * plus concurrency (jobs at once, 4), workerId, leaseDuration (s), heartbeat (s, 5),
 * drainTimeout (s, 30), poll (s a lease waits, 2), linger (s a busy worker waits for a few
 * slots to free before it leases, 0.005).
 */
export class Worker {
  constructor(address, options = {}) {
    const c = connect(address, { ...options, tls: options.tls === true ? {} : options.tls });
    this.metadata = c.metadata;
    this.workers = new v1.WorkerService(c.target, c.creds, c.options);
    this.concurrency = options.concurrency ?? 4;
    this.workerId = options.workerId ?? `${os.hostname()}:${process.pid}`;
    this.leaseDuration = options.leaseDuration;
    this.heartbeat = options.heartbeat ?? 5;
    this.drainTimeout = options.drainTimeout ?? 30;
    this.poll = options.poll ?? 2;
    this.linger = options.linger ?? 0.005;
    this.timeout = options.timeout ?? 30;
    this.functions = new Map();
    this.running = new Map(); // lease id -> Lease, until its ending is answered
    this.active = 0; // functions running: the slots in use
    this.outbox = []; // endings for the next EndJobs call
    this.done = 0;
    this.stopping = false;
  }

  /** fn(ctx, params) runs the jobs of `type` (an EXTERNAL type); its value is the result. */
  task(type, fn) {
    this.functions.set(type, fn);
    return this;
  }

  /** Begins a drain (what SIGTERM does); run() resolves once it is done. */
  stop() { this.stopping = true; this.wake?.(); }

  unary(method, request) {
    return unary(this.workers, method, request, this.metadata(), this.timeout);
  }

  noted(lease, reply) {
    lease.lastReport = Date.now();
    lease.cancelled ||= reply.cancelRequested;
  }

  /** Leases and runs jobs until stop() or SIGTERM/SIGINT (with signals: true), then drains. */
  async run({ signals = true } = {}) {
    if (this.functions.size === 0) throw new Error('no functions: register one with worker.task(type, fn)');
    const onSignal = () => this.stop();
    if (signals) { process.on('SIGTERM', onSignal); process.on('SIGINT', onSignal); }
    const beat = setInterval(() => this.heartbeats(), 250);
    try {
      await this.leaseLoop();
    } finally {
      await this.drain();
      clearInterval(beat);
      if (signals) { process.off('SIGTERM', onSignal); process.off('SIGINT', onSignal); }
      this.workers.close();
    }
  }

  async leaseLoop() {
    const types = [...this.functions.keys()].sort();
    for (let attempt = 0; !this.stopping;) {
      if (this.active >= this.concurrency) {
        await new Promise((r) => { this.wake = r; });
        continue;
      }
      // A busy worker frees one slot at a time: waiting a moment for a few more turns many
      // one-job leases into fewer larger ones (a call saved per job).
      const enough = Math.min(4, this.concurrency);
      for (const until = Date.now() + this.linger * 1000;
        this.concurrency - this.active < enough && Date.now() < until && !this.stopping;) {
        await new Promise((r) => { this.wake = r; setTimeout(r, until - Date.now()); });
      }
      const free = this.concurrency - this.active;
      const request = { types, workerId: this.workerId, maxJobs: free, wait: duration(this.poll) };
      if (this.leaseDuration) request.leaseDuration = duration(this.leaseDuration);
      let jobs;
      try {
        ({ jobs } = await unary(this.workers, 'LeaseJob', request, this.metadata(), this.poll + this.timeout));
        attempt = 0;
      } catch (e) {
        if (e.code !== grpc.status.UNAVAILABLE && e.code !== grpc.status.DEADLINE_EXCEEDED) throw fromGrpc(e);
        await sleep(backoff(attempt++));
        continue;
      }
      for (const leased of jobs) {
        if (this.stopping) { await this.release(leased.leaseId); continue; }
        const lease = new Lease(leased);
        this.running.set(lease.id, lease);
        this.active += 1;
        this.runJob(lease).finally(() => {
          this.active -= 1;
          if (!lease.ending) this.running.delete(lease.id); // lost or given back
          this.wake?.();
        });
      }
    }
  }

  async runJob(lease) {
    const ctx = new Context(this, lease);
    let result;
    let error = null;
    try {
      result = await this.functions.get(ctx.job.type)(ctx, ctx.job.params);
    } catch (e) {
      error = e;
    }
    if (lease.lost || lease.released || error instanceof LeaseLost) return;
    if (error === null) {
      let value;
      try {
        value = toValue(result === undefined ? null : result);
      } catch (e) {
        error = new Fatal(`the result is not a JSON value: ${e.message}`);
      }
      if (error === null) return this.finish(lease, { complete: { leaseId: lease.id, result: value } });
    }
    let failure;
    let retryable = false;
    if (error instanceof Cancelled || (lease.cancelled && !(error instanceof Fatal))) {
      failure = { code: 1, message: 'cancelled' };
    } else {
      const name = error?.name ?? 'Error';
      failure = { code: 2, message: `${name}: ${error?.message ?? error}`,
        details: toStruct({ exception: name, stack: String(error?.stack ?? '').slice(-4000) }) };
      retryable = !(error instanceof Fatal);
    }
    return this.finish(lease, { fail: { leaseId: lease.id, error: failure, retryable } });
  }

  // Queues the job's ending: its slot is free at once, its lease held until the ending is
  // answered. Endings that queue while an EndJobs call is on its way go in the next one.
  finish(lease, ending) {
    lease.ending = true;
    this.outbox.push({ lease, ending, giveUp: Date.now() + Math.max(60, lease.seconds) * 1000 });
    this.sendEndings();
  }

  // One EndJobs call at a time, up to 1000 endings each; tried again while the server
  // restarts, each ending within its lease's own time.
  async sendEndings() {
    if (this.sending) return;
    this.sending = true;
    try {
      for (let attempt = 0; this.outbox.length > 0;) {
        const batch = this.outbox.splice(0, 1000);
        let results;
        try {
          ({ results } = await this.unary('EndJobs', { endings: batch.map((b) => b.ending) }));
          attempt = 0;
        } catch (e) {
          const again = batch.filter((b) => e.code === grpc.status.UNAVAILABLE && Date.now() <= b.giveUp);
          for (const b of batch) if (!again.includes(b)) this.ended(b.lease, fromGrpc(e));
          if (again.length > 0) {
            await sleep(backoff(attempt++));
            this.outbox.unshift(...again);
          }
          continue;
        }
        batch.forEach((b, i) => {
          const error = results[i].error;
          this.ended(b.lease, error?.code ? fromCode(error.code, error.message) : null);
        });
      }
    } finally {
      this.sending = false;
    }
  }

  ended(lease, refused) {
    if (refused) console.error(`jobstream worker: job ${lease.leased.job.id}: ${refused.message}`);
    else this.done += 1;
    this.running.delete(lease.id);
  }

  async release(leaseId) {
    try {
      await this.unary('ReleaseJob', { leaseId });
    } catch (e) {
      console.error(`jobstream worker: release ${leaseId}: ${fromGrpc(e).message}`);
    }
  }

  heartbeats() {
    const now = Date.now();
    for (const lease of this.running.values()) {
      const every = Math.min(this.heartbeat, lease.seconds / 3) * 1000;
      if (lease.released || lease.ending || lease.beating || now - lease.lastReport < every) continue;
      lease.beating = true;
      lease.serial(async () => {
        try {
          this.noted(lease, await this.unary('ReportProgress', { leaseId: lease.id }));
        } catch (e) {
          if (e.code === grpc.status.FAILED_PRECONDITION) lease.lost = true;
        } finally {
          lease.beating = false;
        }
      });
    }
  }

  async drain() {
    const end = Date.now() + this.drainTimeout * 1000;
    while (this.running.size > 0 && Date.now() < end) await sleep(50);
    await Promise.all([...this.running.values()].map((lease) => lease.serial(async () => {
      if (lease.lost || lease.ending) return;
      lease.released = true;
      await this.release(lease.id);
    })));
  }
}
