// jobstream.js: the browser client of jobstream-gateway, as one ES module — no build step,
// no dependency. Served at /static/jobstream.js; calls go to the gateway it was loaded from.
//
//   import { submit, watch } from 'http://GATEWAY/static/jobstream.js';
//   const job = await submit('demo.steps', { steps: ['fetch', 'render'] });
//   const done = await watch(job.id, { onEvent: (e) => console.log(e.type, e.status.progress) });
//
// watch() follows one job over Server-Sent Events: the browser reconnects by itself and
// resumes after the last event (Last-Event-ID), across gateway and server restarts; it
// ends after the job's terminal event, or at once when there is nothing left (204).

const BASE = new URL('..', import.meta.url);  // the gateway: this file is at /static/
const url = (path) => new URL(path.replace(/^\//, ''), BASE).toString();

// The event types of a job's stream, as SSE event names.
export const EVENT_TYPES = ['created', 'waiting', 'queued', 'started', 'step', 'progress',
  'artifact', 'child', 'retrying', 'retried', 'succeeded', 'failed', 'cancelled'];
const TERMINAL = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);
export const isFinished = (job) => TERMINAL.has(job.state);

// An error the gateway answered with: code and status as in google.rpc.Status.
export class JobstreamError extends Error {
  constructor(httpStatus, body) {
    super(body?.message ?? `HTTP ${httpStatus}`);
    this.name = 'JobstreamError';
    this.httpStatus = httpStatus;
    this.code = body?.code;
    this.status = body?.status;
    this.details = body?.details;
  }
}

async function call(method, path, body, headers = {}) {
  const response = await fetch(url(path), {
    method,
    headers: body === undefined ? headers : { 'Content-Type': 'application/json', ...headers },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = { message: text }; }
  if (!response.ok) throw new JobstreamError(response.status, data);
  return data;
}

// Submits a job; resolves to it (QUEUED, or WAITING with dependsOn). options: any
// SubmitRequest field in its JSON form (labels, priority, maxAttempts, runAt, webhook,
// dependsOn, uniqueKey with uniqueFor or uniqueWhile: 'ACTIVE' — the job holding the key
// comes back with deduplicated: true — concurrencyKey, what the type's keyConcurrency and
// keyRate count it under) and idempotencyKey, which makes a retry return the same job.
export function submit(type, params = {}, options = {}) {
  const { idempotencyKey, ...rest } = options;
  return call('POST', '/v1/jobs', { type, params, ...rest },
    idempotencyKey ? { 'Idempotency-Key': idempotencyKey } : {});
}

// Submits a batch: children is an array of {type, params, labels, …} (SubmitRequest JSON),
// at most 10,000. options: then ({type, params}: runs once every child has ended), labels
// and webhook (the parent's), idempotencyKey. Resolves to {parent, childIds}; watch the parent for the
// batch's progress (a 'child' event as each child ends).
export function submitBatch(children, options = {}) {
  const { idempotencyKey, ...rest } = options;
  return call('POST', '/v1/jobs:batch', { children, ...rest },
    idempotencyKey ? { 'Idempotency-Key': idempotencyKey } : {});
}

export const get = (id) => call('GET', `/v1/jobs/${encodeURIComponent(id)}`);
export const cancel = (id, reason = '') =>
  call('POST', `/v1/jobs/${encodeURIComponent(id)}:cancel`, reason ? { reason } : undefined);
// Runs a FAILED or CANCELLED job again under its id; with asNew, replays any ended job as a
// new one (params: instead of its own). Resolves to the job (the new one for a replay).
export const retry = (id, { reason = '', asNew = false, params } = {}) =>
  call('POST', `/v1/jobs/${encodeURIComponent(id)}:retry`,
    { reason, asNew, ...(params === undefined ? {} : { params }) });
// An operator's call on every job matching filter ({states, type, labels, tenant,
// createdAfter, createdBefore}): op is 'retry', 'cancel' or 'delete'. dryRun counts
// without changing. Resolves to {matched, changed, skipped} (numbers).
export async function bulk(op, filter, { reason = '', dryRun = false, limit } = {}) {
  const path = { retry: 'bulkRetry', cancel: 'bulkCancel', delete: 'bulkDelete' }[op];
  if (!path) throw new Error(`no bulk operation "${op}"`);
  const counts = await call('POST', `/v1/jobs:${path}`,
    { filter, reason, dryRun, ...(limit ? { limit } : {}) });
  return { matched: Number(counts.matched || 0), changed: Number(counts.changed || 0),
    skipped: Number(counts.skipped || 0) };
}
export const remove = (id) => call('DELETE', `/v1/jobs/${encodeURIComponent(id)}`);
// ListJobs; query: state, type, label (key:value), createdAfter, createdBefore (RFC 3339),
// pageSize, pageToken.
export const list = (query = '') => call('GET', `/v1/jobs${query ? `?${query}` : ''}`);
export const types = () => call('GET', '/v1/types');
// The last hour of job counts ({samples: [{time, submitted, succeeded, failed, cancelled,
// queued, running}], interval}); role admin (others get 403).
export const stats = () => call('GET', '/v1/stats');
// Pausing a type (admin): its queued jobs wait until it is resumed.
const typePath = (type) => `/v1/types/${encodeURIComponent(type)}`;
export const pauseType = (type, reason = '') => call('POST', `${typePath(type)}:pause`, { reason });
export const resumeType = (type) => call('POST', `${typePath(type)}:resume`);

// Schedules (a Schedule as proto3 JSON: {id, cron, timeZone} or {id, interval: '60s'},
// job: {type, params, labels}, overlap, catchUp, jitter).
const schedulePath = (id) => `/v1/schedules/${encodeURIComponent(id)}`;
export const createSchedule = (schedule) => call('POST', '/v1/schedules', schedule);
export const getSchedule = (id) => call('GET', schedulePath(id));
export const listSchedules = (query = '') => call('GET', `/v1/schedules${query ? `?${query}` : ''}`);
export const updateSchedule = (id, schedule) => call('PUT', schedulePath(id), schedule);
export const pauseSchedule = (id) => call('POST', `${schedulePath(id)}:pause`);
export const resumeSchedule = (id) => call('POST', `${schedulePath(id)}:resume`);
export const triggerSchedule = (id) => call('POST', `${schedulePath(id)}:trigger`);
export const deleteSchedule = (id) => call('DELETE', schedulePath(id));
// The session: on a server with tokens, signIn(token) has the gateway check the token and
// keep it in an HttpOnly cookie, which every later call and stream presents (EventSource
// cannot send headers). whoami() resolves to { name, tenant, roles, authRequired } and
// rejects with httpStatus 401 when there is no valid session.
export const signIn = (token) => call('POST', '/v1/session', { token });
export const signOut = () => call('DELETE', '/v1/session');
export const whoami = () => call('GET', '/v1/session');

export const artifactUrl = (id, name) =>
  url(`/v1/jobs/${encodeURIComponent(id)}/artifacts/${encodeURIComponent(name)}`);

// Follows a job: onEvent(event) for every event after `after` (0: from CREATED), once
// each and in order, even across reconnects. Resolves to the job as it ended; rejects if
// the job does not exist or the stream is refused. The promise has close(), which stops
// following (it then resolves to null). onConnection(state) hears 'live' and
// 'reconnecting'.
export function watch(id, { after = 0, onEvent = () => {}, onConnection = () => {} } = {}) {
  let source = null;
  let settle;
  const promise = new Promise((resolve, reject) => {
    let last = Number(after);
    let ended = false;
    let endedAs = null;  // the job as the newest event delivered ended it
    settle = (job, error) => {
      if (ended) return;
      ended = true;
      source?.close();
      if (error) reject(error); else resolve(job);
    };
    const open = () => {
      source = new EventSource(url(`/v1/jobs/${encodeURIComponent(id)}/events?after=${last}`));
      source.onopen = () => onConnection('live');
      for (const type of EVENT_TYPES) {
        source.addEventListener(type, (e) => {
          const event = JSON.parse(e.data);
          const sequence = Number(event.sequence);
          if (sequence <= last) return;  // never twice
          last = sequence;
          onEvent(event);
          // Its end, unless a retry follows: the gateway's 'end' says the job is done.
          endedAs = TERMINAL.has(event.status.state) ? event.status : null;
        });
      }
      source.addEventListener('end', () => {
        if (endedAs) return settle(endedAs);
        source.close();
        get(id).then((job) => settle(job), (error) => settle(null, error));
      });
      source.onerror = () => {
        if (source.readyState !== EventSource.CLOSED) {
          onConnection('reconnecting');  // the browser retries, after Last-Event-ID
          return;
        }
        // Refused, or nothing more to send (204): ask how the job stands.
        source.close();
        get(id).then((job) => {
          if (isFinished(job) && Number(job.lastSequence) <= last) return settle(job);
          onConnection('reconnecting');
          setTimeout(() => { if (!ended) open(); }, 1000);  // e.g. a 503: follow again
        }, (error) => {
          if (error instanceof JobstreamError && error.httpStatus < 500) return settle(null, error);
          onConnection('reconnecting');
          setTimeout(() => { if (!ended) open(); }, 1000);  // the gateway is away
        });
      };
    };
    open();
  });
  promise.close = () => settle(null);
  return promise;
}

// Long-polls until the job is finished; resolves to it.
export async function wait(id, { timeoutSeconds = 30 } = {}) {
  for (;;) {
    const job = await call('GET', `/v1/jobs/${encodeURIComponent(id)}:wait?timeout=${timeoutSeconds}s`);
    if (isFinished(job)) return job;
  }
}

// The job's result once it is finished: its JSON value; or, when the result names an
// artifact, the Response for that artifact (read it with .blob() or .json()). A failed
// or cancelled job rejects with its error. Polls as the gateway's Retry-After says.
export async function result(id) {
  for (;;) {
    const response = await fetch(url(`/v1/jobs/${encodeURIComponent(id)}/result`));
    if (response.status === 202) {
      await response.body?.cancel();
      const seconds = Number(response.headers.get('Retry-After')) || 1;
      await new Promise((r) => setTimeout(r, seconds * 1000));
      continue;
    }
    if (!response.ok) {
      let body = null;
      try { body = await response.json(); } catch { /* not JSON */ }
      throw new JobstreamError(response.status, body);
    }
    if (response.redirected || !/^application\/json/.test(response.headers.get('Content-Type') ?? '')) {
      return response;  // an artifact
    }
    return response.json();
  }
}

// Follows every job matching the filter ({type, label: 'key:value'}) — what a dashboard
// shows. onEvent gets each event (first a 'SNAPSHOT' of each live job, again after every
// reconnect). Returns { close() }.
export function watchAll({ type, label, onEvent = () => {}, onConnection = () => {} } = {}) {
  const query = new URLSearchParams();
  if (type) query.append('type', type);
  if (label) query.append('label', label);
  const qs = query.toString();
  const source = new EventSource(url(`/v1/events${qs ? `?${qs}` : ''}`));
  source.onopen = () => onConnection('live');
  // A refused stream (say, the session ended: 401) is closed for good; anything else is
  // retried by the browser.
  source.onerror = () => onConnection(source.readyState === EventSource.CLOSED ? 'closed' : 'reconnecting');
  for (const name of ['snapshot', ...EVENT_TYPES]) {
    source.addEventListener(name, (e) => onEvent(JSON.parse(e.data)));
  }
  return { close: () => source.close() };
}
