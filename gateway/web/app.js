// The jobstream page: a form to submit a job of any declared type (from /v1/types), a
// live table of jobs fed by one stream of every job (watchAll), and a job's event log and
// artifacts (watch). Written on jobstream.js, the module any web app can use.
import * as jobstream from './jobstream.js';

const jobs = new Map();   // id -> { job, sequence }, the newest state seen of each job
const rows = new Map();   // id -> <tr>
const $ = (selector) => document.querySelector(selector);
const finished = (state) => ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(state);


// What the jobs table shows: a state tab, a search (one id, or a type and a label), and
// how far back it has been paged.
const view = { state: '', id: '', type: '', label: '', after: '', before: '', next: '' };
const selected = new Set();  // ids ticked in the table

function matches(job) {
  if (view.id) return job.id === view.id;
  if (view.state && job.state !== view.state) return false;
  if (view.type && job.type !== view.type) return false;
  if (view.label) {
    const [key, ...rest] = view.label.split(':');
    if ((job.labels || {})[key] !== rest.join(':')) return false;
  }
  const created = Date.parse(job.createTime);
  if (view.after && created < Date.parse(view.after)) return false;
  if (view.before && created >= Date.parse(view.before)) return false;
  return true;
}

// Applies a job's state if it is newer than what the page shows (the list and the stream
// may deliver the same job in either order). A job that leaves the view (a failed job
// retried, on the Failed tab) leaves the table.
function apply(job) {
  const sequence = Number(job.lastSequence || 0);
  const known = jobs.get(job.id);
  if (known && known.sequence > sequence) return;
  jobs.set(job.id, { job, sequence });
  if (!matches(job)) {
    if (rows.has(job.id)) dropRow(job.id);
    return;
  }
  render(job);
}

function dropRow(id) {
  rows.get(id)?.remove();
  rows.delete(id);
  selected.delete(id);
  $('#empty').hidden = rows.size > 0;
  showSelection();
}

function elapsed(job) {
  if (!job.startTime) return '';
  const end = job.endTime ? Date.parse(job.endTime) : Date.now();
  const seconds = Math.max(0, (end - Date.parse(job.startTime)) / 1000);
  return seconds < 60 ? `${seconds.toFixed(1)} s` : `${Math.floor(seconds / 60)} min ${Math.round(seconds % 60)} s`;
}

function render(job) {
  let row = rows.get(job.id);
  if (!row) {
    row = document.createElement('tr');
    row.dataset.id = job.id;
    row.innerHTML = `<td><input type="checkbox" class="pick"></td>
      <td class="id"></td><td class="type"></td><td><span class="state"></span></td>
      <td class="attempt"></td>
      <td><span class="bar"><span></span></span><span class="pct"></span></td>
      <td class="step"></td><td class="elapsed"></td>
      <td><button type="button" class="secondary retry">Retry</button>
          <button type="button" class="secondary cancel">Cancel</button>
          <button type="button" class="secondary delete">Delete</button></td>`;
    // The row opens the job's detail by click, or Enter where the keyboard rests on it.
    row.tabIndex = 0;
    row.addEventListener('click', (e) => {
      if (e.target.tagName !== 'BUTTON' && e.target.tagName !== 'INPUT') showDetail(job.id);
    });
    row.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && e.target === row) showDetail(job.id);
    });
    const pick = row.querySelector('.pick');
    pick.setAttribute('aria-label', `select ${job.id}`);
    pick.addEventListener('change', () => {
      if (pick.checked) selected.add(job.id); else selected.delete(job.id);
      showSelection();
    });
    row.querySelector('.retry').addEventListener('click', () =>
      jobstream.retry(job.id).then(apply).catch(report));
    row.querySelector('.cancel').addEventListener('click', () =>
      jobstream.cancel(job.id).then(apply).catch(report));
    row.querySelector('.delete').addEventListener('click', () =>
      jobstream.remove(job.id).then(() => remove(job.id)).catch(report));
    // Newest first, as the list is.
    const body = $('#jobs tbody');
    const after = [...body.children].find((r) => r.dataset.id < job.id);
    body.insertBefore(row, after || null);
    rows.set(job.id, row);
    $('#empty').hidden = true;
  }
  const progress = job.progress || {};
  const pct = Math.round((progress.fraction || 0) * 100);
  row.querySelector('.id').textContent = job.id;
  row.querySelector('.bar').dataset.state = job.state;
  row.querySelector('.bar > span').style.width = `${pct}%`;
  row.querySelector('.pct').textContent = `${pct}%`;
  row.querySelector('.type').textContent = job.type;
  row.querySelector('.attempt').textContent = job.attempt ? `${job.attempt}/${job.maxAttempts}` : '';
  // A job waiting to retry says why and when; one waiting for others, which; a running
  // one, its step.
  const retrying = job.state === 'QUEUED' && job.nextAttemptTime;
  const waitingFor = job.state === 'WAITING' ? job.waitingFor || [] : [];
  row.querySelector('.state').textContent = retrying ? 'RETRYING' : job.state;
  row.querySelector('.state').dataset.state = retrying ? 'RETRYING' : job.state;
  row.querySelector('.step').textContent = retrying
    ? `attempt ${job.attempt + 1} at ${new Date(job.nextAttemptTime).toLocaleTimeString()}: ${job.error ? job.error.message : ''}`
    : waitingFor.length
      ? `waits for ${waitingFor.join(', ')}`
      : progress.stepCount
      ? `${progress.stepIndex}/${progress.stepCount} ${progress.step || ''}${progress.message ? ' · ' + progress.message : ''}`
      : [progress.step, progress.message].filter(Boolean).join(' · ');
  row.querySelector('.elapsed').textContent = elapsed(job);
  row.querySelector('.cancel').disabled = finished(job.state);
  row.querySelector('.delete').disabled = !finished(job.state);
  row.querySelector('.retry').hidden = !retriable(job);
  row.dataset.state = job.state;
  row.title = job.state === 'FAILED' && job.error ? job.error.message : '';
}

const retriable = (job) => (job.state === 'FAILED' || job.state === 'CANCELLED') && !job.batch;

function remove(id) {
  dropRow(id);
  jobs.delete(id);
  if ($('#detail-id').textContent === id) closeDetail();
}

function report(error) {
  const out = $('#submit-result');
  out.textContent = error.message;
  out.className = 'error';
}

// The view's query for ListJobs.
function listQuery(token) {
  const query = new URLSearchParams({ pageSize: '50' });
  if (view.state) query.append('state', view.state);
  if (view.type) query.append('type', view.type);
  if (view.label) query.append('label', view.label);
  if (view.after) query.append('createdAfter', view.after);
  if (view.before) query.append('createdBefore', view.before);
  if (token) query.append('pageToken', token);
  return query.toString();
}

// The view's first page, drawn afresh; `older` pages follow it. Until it comes, the rows
// shown are the last view's: the table says so (aria-busy) and dims them.
let listsAsked = 0;
async function refreshList() {
  const asked = ++listsAsked;
  const table = $('#jobs');
  table.setAttribute('aria-busy', 'true');
  let found;
  try {
    found = view.id ? { jobs: [await jobstream.get(view.id)] } : await jobstream.list(listQuery(''));
  } catch (error) {
    if (asked === listsAsked) throw error;  // a stale view's failure is nobody's
  } finally {
    if (asked === listsAsked) table.setAttribute('aria-busy', 'false');
  }
  if (asked !== listsAsked) return;  // a newer view was asked for meanwhile
  for (const id of [...rows.keys()]) dropRow(id);
  for (const job of found.jobs || []) {
    jobs.delete(job.id);  // drawn as listed, whatever was seen of it before
    apply(job);
  }
  view.next = found.nextPageToken || '';
  $('#older').hidden = !view.next;
}

async function older() {
  const asked = listsAsked;
  const found = await jobstream.list(listQuery(view.next));
  if (asked !== listsAsked) return;
  for (const job of found.jobs || []) apply(job);
  view.next = found.nextPageToken || '';
  $('#older').hidden = !view.next;
}

function setView(changes) {
  Object.assign(view, changes, { next: '' });
  for (const tab of document.querySelectorAll('#state-tabs [role=tab]')) {
    tab.setAttribute('aria-selected', String(tab.dataset.state === view.state && !view.id));
  }
  selected.clear();
  $('#select-page').checked = false;
  $('#all-matching').checked = false;
  showSelection();
  const described = describeView();
  $('#search-result').textContent = described ? `showing ${described}` : '';
  return refreshList().catch((error) => {
    for (const id of [...rows.keys()]) dropRow(id);
    $('#search-result').textContent = error.message;
  });
}

function describeView() {
  if (view.id) return `job ${view.id}`;
  const when = (iso) => new Date(iso).toLocaleString();
  return [view.state && view.state.toLowerCase(), view.type && `type ${view.type}`,
    view.label && `label ${view.label}`, view.after && `created from ${when(view.after)}`,
    view.before && `created before ${when(view.before)}`].filter(Boolean).join(', ');
}

// The tabs: a click, or the arrow keys between them (as a tablist goes).
for (const tab of document.querySelectorAll('#state-tabs [role=tab]')) {
  tab.addEventListener('click', () => setView({ state: tab.dataset.state, id: '' }));
  tab.addEventListener('keydown', (e) => {
    if (e.key !== 'ArrowRight' && e.key !== 'ArrowLeft') return;
    const tabs = [...document.querySelectorAll('#state-tabs [role=tab]')];
    const next = tabs[(tabs.indexOf(tab) + (e.key === 'ArrowRight' ? 1 : tabs.length - 1)) % tabs.length];
    next.focus();
    next.click();
  });
}
$('#job-search').addEventListener('submit', (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  // datetime-local is the browser's local time: sent as UTC.
  const instant = (value) => (value ? new Date(String(value)).toISOString() : '');
  setView({ id: String(form.get('id')).trim(), type: String(form.get('type')),
    label: String(form.get('label')).trim(), after: instant(form.get('after')),
    before: instant(form.get('before')) });
});
$('#search-clear').addEventListener('click', () => {
  $('#job-search').reset();
  setView({ id: '', type: '', label: '', state: '', after: '', before: '' });
});
$('#older').addEventListener('click', () => older().catch(report));

// Selection: ticked rows, or every job matching the view (a bulk call with its filter).
function showSelection() {
  const all = $('#all-matching').checked;
  $('#selected-count').textContent = all ? `every job matching ${describeView() || 'any state'}`
    : selected.size ? `${selected.size} selected` : 'none selected';
}
$('#select-page').addEventListener('change', (e) => {
  for (const [id, row] of rows) {
    row.querySelector('.pick').checked = e.target.checked;
    if (e.target.checked) selected.add(id); else selected.delete(id);
  }
  showSelection();
});
$('#all-matching').addEventListener('change', showSelection);

function viewFilter() {
  const filter = {};
  if (view.state) filter.states = [view.state];
  if (view.type) filter.type = view.type;
  if (view.label) {
    const [key, ...rest] = view.label.split(':');
    filter.labels = { [key]: rest.join(':') };
  }
  if (view.after) filter.createdAfter = view.after;
  if (view.before) filter.createdBefore = view.before;
  return filter;
}

// Asks before acting, saying how many jobs it will change; resolves to the reason, or
// null if the operator backed out.
function confirmAction(text) {
  const dialog = $('#confirm');
  $('#confirm-text').textContent = text;
  $('#confirm-reason').value = '';
  dialog.showModal();
  return new Promise((resolve) => {
    dialog.addEventListener('close', () => {
      resolve(dialog.returnValue === 'ok' ? $('#confirm-reason').value : null);
    }, { once: true });
  });
}

for (const button of document.querySelectorAll('[data-bulk]')) {
  button.addEventListener('click', async () => {
    const op = button.dataset.bulk;
    const out = $('#bulk-result');
    out.className = '';
    try {
      if ($('#all-matching').checked) {
        if (view.id) throw new Error('a search by id is one job: select it instead');
        const filter = viewFilter();
        const count = await jobstream.bulk(op, filter, { dryRun: true });
        const reason = await confirmAction(
          `${op[0].toUpperCase()}${op.slice(1)} ${count.changed} job${count.changed === 1 ? '' : 's'} ` +
          `matching ${describeView() || 'any state'}?` +
          (count.skipped ? ` (${count.skipped} more match but cannot be ${op === 'retry' ? 'retried' : op + 'ed'})` : ''));
        if (reason === null) return;
        const done = await jobstream.bulk(op, filter, { reason });
        out.textContent = `${op}: ${done.changed} changed, ${done.skipped} skipped`;
      } else {
        const ids = [...selected];
        if (ids.length === 0) throw new Error('select jobs first, or tick "All matching this view"');
        const reason = await confirmAction(`${op[0].toUpperCase()}${op.slice(1)} ${ids.length} selected job${ids.length === 1 ? '' : 's'}?`);
        if (reason === null) return;
        const call = { retry: (id) => jobstream.retry(id, { reason }), cancel: (id) => jobstream.cancel(id, reason),
          delete: (id) => jobstream.remove(id).then(() => remove(id)) }[op];
        const results = await Promise.allSettled(ids.map(call));
        const failed = results.filter((r) => r.status === 'rejected');
        out.textContent = `${op}: ${ids.length - failed.length} changed` +
          (failed.length ? `, ${failed.length} refused (${failed[0].reason.message})` : '');
      }
      selected.clear();
      $('#select-page').checked = false;
      await refreshList();
      showSelection();
    } catch (error) {
      out.textContent = error.message;
      out.className = 'error';
    }
  });
}

// One stream for every job. After a reconnect (gateway or server restart) the stream
// starts with fresh snapshots of live jobs; the list catches up jobs that ended meanwhile.
function connect() {
  const status = $('#connection');
  const stream = jobstream.watchAll({
    onEvent: (event) => apply(event.status),
    onConnection: (state) => {
      status.dataset.state = state === 'closed' ? 'reconnecting' : state;
      status.textContent = state === 'live' ? 'live' : 'reconnecting…';
      if (state === 'live') refreshList().catch(() => {});
      if (state !== 'closed') return;
      // Refused: signed out (the token was revoked or the cookie expired), or a passing
      // error; ask which.
      stream.close();
      jobstream.whoami().then(() => setTimeout(connect, 1000), (error) => {
        if (error.httpStatus === 401) return showSignIn('Your session ended; sign in again.');
        setTimeout(connect, 1000);
      });
    },
  });
}

// A job's files: a download link each, images and videos shown in place.
function renderArtifacts(job) {
  const box = $('#detail-artifacts');
  box.replaceChildren(...(job.artifacts || []).map((a) => {
    const item = document.createElement('figure');
    item.className = 'artifact';
    item.dataset.name = a.name;
    const href = jobstream.artifactUrl(job.id, a.name);
    if (/^image\//.test(a.contentType)) {
      const img = document.createElement('img');
      img.src = `${href}?v=${a.sha256.slice(0, 12)}`;  // a replaced artifact reloads
      img.alt = a.name;
      item.appendChild(img);
    } else if (/^(video|audio)\//.test(a.contentType)) {
      const media = document.createElement(a.contentType.startsWith('video/') ? 'video' : 'audio');
      media.src = `${href}?v=${a.sha256.slice(0, 12)}`;
      media.controls = true;
      media.preload = 'metadata';
      item.appendChild(media);
    }
    const caption = document.createElement('figcaption');
    const link = document.createElement('a');
    link.href = `${href}?download=1`;
    link.textContent = a.name;
    link.setAttribute('download', a.name);
    caption.append(link, ` ${a.contentType}, ${formatBytes(Number(a.size))}`);
    item.appendChild(caption);
    return item;
  }));
}

function formatBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

let detailWatch = null;
function closeDetail() {
  detailWatch?.close();
  detailWatch = null;
  $('#detail').hidden = true;
}

// A job's fields as GetStatus gives them: what an operator looks at first.
function renderFields(job) {
  const fields = [
    ['Type', job.type], ['State', job.state],
    ['Attempt', job.attempt ? `${job.attempt} of ${job.maxAttempts}${Number(job.series) > 1 ? ` (series ${job.series})` : ''}` : ''],
    ['Worker', job.workerId], ['Tenant', job.tenant],
    ['Created', job.createTime], ['Started', job.startTime], ['Ended', job.endTime],
    ['Labels', Object.entries(job.labels || {}).map(([k, v]) => `${k}=${v}`).join(', ')],
    ['Replay of', job.replayOf], ['Trace id', job.trace ? job.trace.traceId : ''],
    ['Last action', job.lastAction ? `${job.lastAction.action} by ${job.lastAction.by || 'anyone'}` +
      ` at ${job.lastAction.time}${job.lastAction.reason ? `: ${job.lastAction.reason}` : ''}` : ''],
    ['Error', job.error ? `${job.error.message}` : ''],
    ['Error details', job.error && job.error.details ? JSON.stringify(job.error.details, null, 2) : ''],
    ['Params', JSON.stringify(job.params || {}, null, 2)],
  ];
  $('#detail-fields').replaceChildren(...fields.filter(([, v]) => v).flatMap(([k, v]) => {
    const dt = document.createElement('dt');
    dt.textContent = k;
    const dd = document.createElement('dd');
    if (k === 'Params' || k === 'Error details') {
      const pre = document.createElement('pre');
      pre.textContent = v;
      dd.appendChild(pre);
    } else {
      dd.textContent = v;
    }
    dd.dataset.field = k.toLowerCase().replace(/ /g, '-');
    return [dt, dd];
  }));
  $('#detail-retry').hidden = !retriable(job);
  $('#detail-replay').hidden = !finished(job.state) || Boolean(job.batch);
  // The fields are drawn again at each of the job's events: what an operator is typing
  // into an open replay form stays; another job's detail starts from its own params.
  const replay = $('#replay-params');
  if (replay.dataset.job !== job.id) {
    $('#replay-form').hidden = true;
    replay.dataset.job = job.id;
  }
  if ($('#replay-form').hidden) replay.value = JSON.stringify(job.params || {}, null, 2);
  const deliveries = job.webhookDeliveries || [];
  $('#detail-webhooks').hidden = deliveries.length === 0;
  $('#detail-webhooks tbody').replaceChildren(...deliveries.map((d) => {
    const row = document.createElement('tr');
    for (const text of [d.eventType, d.state, d.attempts || 0,
      d.lastStatus ? `HTTP ${d.lastStatus}` : d.lastError || '']) {
      const cell = document.createElement('td');
      cell.textContent = String(text);
      row.appendChild(cell);
    }
    return row;
  }));
}

let detailJob = null;
async function loadFields(id) {
  const job = await jobstream.get(id);
  if ($('#detail-id').textContent !== id) return;
  detailJob = job;
  renderFields(job);
}

$('#detail-retry').addEventListener('click', async () => {
  const out = $('#detail-result');
  try {
    const job = await jobstream.retry(detailJob.id);
    apply(job);
    out.textContent = `retried: series ${job.series}`;
    showDetail(job.id);
  } catch (error) {
    out.textContent = error.message;
  }
});
$('#detail-replay').addEventListener('click', () => {
  $('#replay-form').hidden = !$('#replay-form').hidden;
  if (!$('#replay-form').hidden) $('#replay-params').focus();
});
$('#replay-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const out = $('#detail-result');
  let params;
  try {
    params = JSON.parse($('#replay-params').value || '{}');
  } catch (error) {
    out.textContent = `params: ${error.message}`;
    return;
  }
  try {
    const form = new FormData(e.target);
    const job = await jobstream.retry(detailJob.id, { asNew: true, params, reason: String(form.get('reason')) });
    apply(job);
    showDetail(job.id);
    $('#detail-result').textContent = `replayed as ${job.id}`;
  } catch (error) {
    out.textContent = error.message;
  }
});

// A job's whole history, replayed then live, from its own event stream.
function showDetail(id) {
  closeDetail();
  $('#detail').hidden = false;
  $('#detail-id').textContent = id;
  $('#detail-log').replaceChildren();
  $('#detail-outcome').replaceChildren();
  $('#detail-artifacts').replaceChildren();
  $('#detail-fields').replaceChildren();
  $('#detail-result').textContent = '';
  $('#replay-form').hidden = true;
  loadFields(id).catch(report);
  const log = $('#detail-log');
  detailWatch = jobstream.watch(id, {
    onEvent: (event) => {
      const type = event.type.toLowerCase();
      const p = event.status.progress || {};
      const item = document.createElement('li');
      item.value = Number(event.sequence);
      const job = event.status;
      item.textContent = `${event.time.slice(11, 23)}  ${type.padEnd(9)} ` + (type === 'retrying'
        ? `attempt ${job.attempt} failed: ${job.error ? job.error.message : ''}; next at ${job.nextAttemptTime ? new Date(job.nextAttemptTime).toLocaleTimeString() : 'once'}`
        : type === 'waiting' && (job.waitingFor || []).length
          ? `for ${job.waitingFor.join(', ')}`
          : type === 'child'
          ? `${event.child.jobId} ${event.child.state}${event.child.summary ? ' · ' + event.child.summary : ''} (${p.message || ''})`
          : type === 'artifact'
          ? `${event.artifact.name} (${event.artifact.contentType}, ${formatBytes(Number(event.artifact.size))})`
          : `${type === 'started' ? `attempt ${job.attempt}${job.workerId ? ' on ' + job.workerId : ''} ` : ''}` +
            `${p.step ? `${p.step} ` : ''}${p.fraction !== undefined ? Math.round(p.fraction * 100) + '% ' : ''}${p.message || ''}`);
      if (event.action) {
        const a = event.action;
        item.textContent += ` (${a.action} by ${a.by || 'anyone'}${a.reason ? `: ${a.reason}` : ''})`;
      }
      log.appendChild(item);
      log.scrollTop = log.scrollHeight;
      if (type !== 'progress' && type !== 'step') loadFields(id).catch(() => {});
      if (type === 'artifact' || finished(job.state)) renderArtifacts(job);
      if (finished(job.state)) {
        const outcome = $('#detail-outcome');
        outcome.textContent = job.state === 'SUCCEEDED'
          ? `Result: ${JSON.stringify(job.result)}`
          : `Error: ${job.error ? job.error.message : job.state}`;
        outcome.className = job.state === 'SUCCEEDED' ? '' : 'outcome-error';
      }
    },
  });
  detailWatch.catch(report);
}

$('#detail-close').addEventListener('click', closeDetail);

// The params of the form as it stands, or an error saying what is wrong with them.
function formParams() {
  const form = new FormData($('#submit-form'));
  if (form.get('type') === 'demo.steps') {
    const params = {
      steps: String(form.get('steps')).split(',').map((s) => s.trim()).filter(Boolean),
      step_ms: Number(form.get('step_ms')),
      ticks: Number(form.get('ticks')),
    };
    const failAt = String(form.get('fail_at')).trim();
    if (failAt) params.fail_at = failAt;
    return { params };
  }
  let params;
  try {
    params = JSON.parse(String(form.get('params')) || '{}');
  } catch (error) {
    return { error: `not JSON: ${error.message}` };
  }
  if (params === null || typeof params !== 'object' || Array.isArray(params)) {
    return { error: 'params must be a JSON object, e.g. {"key": "value"}' };
  }
  return { params };
}

// Checked as the user types, so nothing malformed is sent.
function checkParams() {
  const { error } = formParams();
  $('#params-error').textContent = error || '';
  $('#params').setAttribute('aria-invalid', error ? 'true' : 'false');
  $('#submit-form button[type=submit]').disabled = Boolean(error);
  return !error;
}

let types = [];
function chooseType() {
  const name = $('#type').value;
  const demo = name === 'demo.steps';
  $('#demo-fields').hidden = demo ? false : true;
  $('#demo-fields').disabled = !demo;
  $('#params-field').hidden = demo;
  const info = types.find((t) => t.name === name);
  $('#type-info').textContent = info
    ? `${info.description || name} — runs ${info.runner.toLowerCase()}, ` +
      `${info.maxAttempts} attempt${info.maxAttempts === 1 ? '' : 's'}` +
      (info.runner === 'EXTERNAL' ? `, ${info.workers || 0} worker(s) polling` : '')
    : '';
  checkParams();
}

// A type's limits per concurrency key, and the keys holding jobs back at them now.
function perKey(t) {
  const limits = [];
  if (t.keyConcurrency) limits.push(`≤${t.keyConcurrency} running`);
  if (t.keyRate) limits.push(`≤${t.keyRate}/s`);
  if (limits.length === 0) return '–';
  const held = (t.keysAtLimit || []).slice(0, 3).map((k) =>
    `${k.key || '(none)'}: ${k.running || 0} running, ${k.queued || 0} queued`);
  const more = (t.keysAtLimitCount || 0) - held.length;
  if (more > 0) held.push(`${more} more`);
  return limits.join(', ') + (held.length ? `; at limit: ${held.join('; ')}` : '');
}

// Draws `items` into `tbody` keeping each item's row (found by row.dataset[keyName]) and
// updating it in place; the rows are only put in again when the list or its order changed.
// The lists are read again every few seconds, and a row rebuilt under the pointer or the
// keyboard's focus would lose a click or the focus.
function keepRows(tbody, items, keyName, keyOf, makeRow, updateRow) {
  const existing = new Map([...tbody.children].map((row) => [row.dataset[keyName], row]));
  const rows = items.map((item) => {
    const row = existing.get(keyOf(item)) ?? makeRow(keyOf(item));
    updateRow(row, item);
    return row;
  });
  const same = rows.length === tbody.children.length &&
    rows.every((row, i) => row === tbody.children[i]);
  if (!same) tbody.replaceChildren(...rows);
}

// The types table's rows (keepRows): each with its Pause/Resume button.
function typeRow(name) {
  const row = document.createElement('tr');
  row.dataset.type = name;
  for (const cls of ['name', 'runs', 'queued', 'running', 'workers', 'attempts', 'per-key',
                     'paused', 'description']) {
    const cell = document.createElement('td');
    cell.className = cls;
    row.appendChild(cell);
  }
  const actions = document.createElement('td');
  const pause = document.createElement('button');
  pause.type = 'button';
  pause.className = 'secondary pause';
  pause.addEventListener('click', () => (row.dataset.paused === 'true'
    ? jobstream.resumeType(name) : jobstream.pauseType(name, 'paused from the page'))
    .then(loadTypes).catch(report));
  actions.appendChild(pause);
  row.appendChild(actions);
  return row;
}

function pausedText(t) {
  if (!t.pause) return '';
  const by = t.pause.by ? ` by ${t.pause.by}` : '';
  return `paused${by}${t.pause.reason ? `: ${t.pause.reason}` : ''}`;
}

function renderTypes() {
  keepRows($('#types tbody'), types, 'type', (t) => t.name, typeRow, (row, t) => {
    row.dataset.paused = String(Boolean(t.pause));
    const cells = {
      name: t.name, runs: t.runner.toLowerCase(), queued: t.queued || 0, running: t.running || 0,
      workers: t.runner === 'EXTERNAL' ? (t.workers || 0) : '–', attempts: t.maxAttempts,
      'per-key': perKey(t), paused: pausedText(t), description: t.description || '',
    };
    for (const [cls, value] of Object.entries(cells)) {
      const cell = row.querySelector(`.${cls}`);
      if (cell.textContent !== String(value)) cell.textContent = String(value);
    }
    const button = row.querySelector('button.pause');
    const label = t.pause ? 'Resume' : 'Pause';
    if (button.textContent !== label) button.textContent = label;
  });
}

async function loadTypes() {
  types = (await jobstream.types()).types || [];
  const select = $('#type');
  const chosen = select.value;
  select.replaceChildren(...types.map((t) => {
    const option = document.createElement('option');
    option.value = t.name;
    option.textContent = `${t.name} (${t.runner.toLowerCase()})`;
    return option;
  }));
  if (types.some((t) => t.name === chosen)) select.value = chosen;
  const scheduleType = $('#schedule-type');
  const scheduleChosen = scheduleType.value;
  scheduleType.replaceChildren(...types.map((t) => new Option(t.name, t.name)));
  if (types.some((t) => t.name === scheduleChosen)) scheduleType.value = scheduleChosen;
  const searchType = $('#search-type');
  const searchChosen = searchType.value;
  searchType.replaceChildren(new Option('any', ''), ...types.map((t) => new Option(t.name, t.name)));
  searchType.value = types.some((t) => t.name === searchChosen) ? searchChosen : '';
  // The live states' counts, as the server keeps them (every type's, or the view's type).
  for (const state of ['QUEUED', 'RUNNING']) {
    const counted = types.filter((t) => !view.type || t.name === view.type)
      .reduce((sum, t) => sum + Number(state === 'QUEUED' ? t.queued || 0 : t.running || 0), 0);
    $(`#state-tabs [data-state=${state}] .count`).textContent = `(${counted})`;
  }
  renderTypes();
  chooseType();
}

$('#type').addEventListener('change', chooseType);
$('#params').addEventListener('input', checkParams);

$('#submit-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  if (!checkParams()) return;
  const form = new FormData(e.target);
  const request = { type: form.get('type'), params: formParams().params };
  const priority = Number(form.get('priority'));
  if (priority) request.priority = priority;
  const out = $('#submit-result');
  try {
    const { type, params, ...options } = request;
    const job = await jobstream.submit(type, params, options);
    apply(job);
    out.textContent = `submitted ${job.id}`;
    out.className = '';
  } catch (error) {
    report(error);
  }
});

// Elapsed time of running jobs keeps counting between events.
setInterval(() => {
  for (const { job } of jobs.values()) {
    // (A job out of the view has no row.)
    const row = rows.get(job.id);
    if (row && job.state === 'RUNNING') row.querySelector('.elapsed').textContent = elapsed(job);
  }
}, 500);

// Schedules: a table of every schedule (read again every 2 s: there is no stream of
// schedules), with pause/resume, trigger and delete, and a form to make one.
function when(schedule) {
  if (schedule.cron) return `${schedule.cron}${schedule.timeZone ? ` (${schedule.timeZone})` : ''}`;
  return `every ${schedule.interval}`;
}

// The schedules table's rows (keepRows).
function scheduleRow(id) {
  const row = document.createElement('tr');
  row.dataset.id = id;
  for (const cls of ['id', 'when', 'next', 'last', 'counts']) {
    const cell = document.createElement('td');
    cell.className = cls;
    row.appendChild(cell);
  }
  const actions = document.createElement('td');
  const button = (cls, action) => {
    const b = document.createElement('button');
    b.type = 'button';
    b.className = `secondary ${cls}`;
    b.addEventListener('click', () => action().then(loadSchedules).catch(report));
    actions.appendChild(b);
    return b;
  };
  button('pause', () => (row.dataset.paused === 'true'
    ? jobstream.resumeSchedule(id) : jobstream.pauseSchedule(id)));
  button('trigger', () => jobstream.triggerSchedule(id).then(apply)).textContent = 'Trigger';
  button('delete', () => jobstream.deleteSchedule(id)).textContent = 'Delete';
  row.appendChild(actions);
  row.addEventListener('click', (e) => {
    if (e.target.tagName !== 'BUTTON' && row.dataset.lastJob) showDetail(row.dataset.lastJob);
  });
  return row;
}

function updateScheduleRow(row, s) {
  const set = (cls, text) => {
    const cell = row.querySelector(`.${cls}`);
    if (cell.textContent !== text) cell.textContent = text;
  };
  row.dataset.paused = String(Boolean(s.paused));
  row.dataset.lastJob = s.lastJobId || '';
  set('id', s.id);
  set('when', when(s));
  set('next', s.paused ? 'paused' : (s.nextFireTimes?.[0] ?? '–'));
  set('last', s.lastJobId ? `${s.lastJobState || ''} ${s.lastJobId}` : '–');
  set('counts', `${s.firedCount || 0} / ${s.skippedCount || 0}`);
  row.querySelector('.last').title = s.lastError || '';
  const pause = row.querySelector('button.pause');
  const label = s.paused ? 'Resume' : 'Pause';
  if (pause.textContent !== label) pause.textContent = label;
}

function renderSchedules(schedules) {
  $('#schedules-empty').hidden = schedules.length > 0;
  keepRows($('#schedules tbody'), schedules, 'id', (s) => s.id, scheduleRow, updateScheduleRow);
}

// Lists asked for one after another may be answered out of order: an older answer (from
// before a delete, say) is not drawn over a newer one.
let schedulesAsked = 0;
let schedulesDrawn = 0;
async function loadSchedules() {
  const asked = ++schedulesAsked;
  const list = await jobstream.listSchedules('pageSize=1000');
  if (asked < schedulesDrawn) return;
  schedulesDrawn = asked;
  renderSchedules(list.schedules || []);
}

$('#schedule-form').kind.addEventListener('change', (e) => {
  const cron = e.target.value === 'cron';
  $('#schedule-every').hidden = cron;
  $('#schedule-cron').hidden = !cron;
  $('#schedule-zone').hidden = !cron;
});

$('#schedule-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  const out = $('#schedule-result');
  let params;
  try {
    params = JSON.parse(form.get('params') || '{}');
  } catch (error) {
    out.textContent = `params: ${error.message}`;
    out.className = 'error';
    return;
  }
  const schedule = { job: { type: form.get('type'), params }, overlap: form.get('overlap') };
  if (form.get('id')) schedule.id = form.get('id');
  if (form.get('kind') === 'cron') {
    schedule.cron = form.get('cron');
    if (form.get('timeZone')) schedule.timeZone = form.get('timeZone');
  } else {
    schedule.interval = form.get('every');
  }
  try {
    const made = await jobstream.createSchedule(schedule);
    out.textContent = `created ${made.id}`;
    out.className = '';
    await loadSchedules();
  } catch (error) {
    out.textContent = error.message;
    out.className = 'error';
  }
});

// The charts: polylines over the last hour, scaled to their largest value.
function drawChart(svg, series) {
  const width = 360, height = 100, top = 4;
  const most = Math.max(1, ...series.flatMap((s) => s.values));
  const count = Math.max(2, ...series.map((s) => s.values.length));
  const x = (i) => (i * width) / (count - 1);
  const y = (v) => height - ((height - top) * v) / most;
  svg.replaceChildren(...series.map((s) => {
    const line = document.createElementNS('http://www.w3.org/2000/svg', 'polyline');
    line.setAttribute('points', s.values.map((v, i) => `${x(i).toFixed(1)},${y(v).toFixed(1)}`).join(' '));
    line.setAttribute('class', s.name);
    line.dataset.last = String(s.values.at(-1) ?? 0);
    return line;
  }));
  const scale = document.createElementNS('http://www.w3.org/2000/svg', 'text');
  scale.setAttribute('x', '2');
  scale.setAttribute('y', '12');
  scale.textContent = String(Math.round(most));
  svg.appendChild(scale);
}

// Counts a minute from cumulative samples (a server restart starts them at 0 again).
function perMinute(samples, field, seconds) {
  return samples.slice(1).map((s, i) => {
    const before = Number(samples[i][field] || 0), now = Number(s[field] || 0);
    return ((now >= before ? now - before : now) * 60) / seconds;
  });
}

async function loadStats() {
  let stats;
  try {
    stats = await jobstream.stats();
  } catch (error) {
    if (error.httpStatus === 403) $('#activity').hidden = true;  // not an admin's token
    return;
  }
  $('#activity').hidden = false;
  const samples = stats.samples || [];
  const seconds = parseFloat(stats.interval || '10s') || 10;
  const succeeded = perMinute(samples, 'succeeded', seconds);
  const failed = perMinute(samples, 'failed', seconds);
  drawChart($('#chart-throughput'), [{ name: 'ok', values: succeeded }, { name: 'bad', values: failed }]);
  $('#throughput-caption .now').textContent = succeeded.length
    ? `(now ${Math.round(succeeded.at(-1))} and ${Math.round(failed.at(-1))})` : '(gathering)';
  const queued = samples.map((s) => Number(s.queued || 0));
  const running = samples.map((s) => Number(s.running || 0));
  drawChart($('#chart-depth'), [{ name: 'queued', values: queued }, { name: 'running', values: running }]);
  $('#depth-caption .now').textContent = samples.length
    ? `(now ${queued.at(-1)} and ${running.at(-1)})` : '';
}

// On a server with tokens the page starts with a sign-in form; the token goes to the
// gateway once and lives on in an HttpOnly cookie.
function showSignIn(message = '') {
  $('#workspace').hidden = true;
  $('#sign-in').hidden = false;
  $('#sign-in-result').textContent = message;
  $('#connection').dataset.state = 'signed-out';
  $('#connection').textContent = 'signed out';
}

let started = false;
function start(identity) {
  $('#sign-in').hidden = true;
  $('#workspace').hidden = false;
  if (identity.authRequired) {
    $('#identity').textContent = `${identity.name} · ${identity.tenant}`;
    $('#sign-out').hidden = false;
  }
  if (started) return;
  started = true;
  refreshList().catch(report);
  loadTypes().catch(report);
  setInterval(() => loadTypes().catch(() => {}), 5000);  // queued, running, workers
  loadSchedules().catch(report);
  setInterval(() => loadSchedules().catch(() => {}), 2000);
  loadStats();
  setInterval(loadStats, 5000);
  connect();
}

$('#sign-in-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  try {
    const identity = await jobstream.signIn($('#token').value.trim());
    $('#token').value = '';
    start(identity);
  } catch (error) {
    $('#sign-in-result').textContent = error.message;
    $('#sign-in-result').className = 'error';
  }
});
$('#sign-out').addEventListener('click', () => jobstream.signOut().finally(() => location.reload()));

jobstream.whoami().then(start, (error) => {
  if (error.httpStatus === 401) return showSignIn();
  report(error);
  start({});  // the gateway or server is away: the page reconnects like any other time
});
