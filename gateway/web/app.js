// The jobstream page: a form to submit demo jobs, a live table of jobs fed by one
// EventSource on /v1/events, and a job's event log from /v1/jobs/{id}/events.
'use strict';

const jobs = new Map();   // id -> { job, sequence }, the newest state seen of each job
const rows = new Map();   // id -> <tr>
const $ = (selector) => document.querySelector(selector);
const finished = (state) => ['SUCCEEDED', 'FAILED', 'CANCELLED'].includes(state);

async function api(method, path, body) {
  const response = await fetch(path, {
    method,
    headers: body ? { 'Content-Type': 'application/json' } : {},
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw new Error(data && data.message ? data.message : `HTTP ${response.status}`);
  return data;
}

// Applies a job's state if it is newer than what the page shows (the list and the stream
// may deliver the same job in either order).
function apply(job) {
  const sequence = Number(job.lastSequence || 0);
  const known = jobs.get(job.id);
  if (known && known.sequence > sequence) return;
  jobs.set(job.id, { job, sequence });
  render(job);
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
    row.innerHTML = `<td class="id"></td><td><span class="state"></span></td>
      <td><span class="bar"><span></span></span><span class="pct"></span></td>
      <td class="step"></td><td class="elapsed"></td>
      <td><button type="button" class="secondary cancel">Cancel</button>
          <button type="button" class="secondary delete">Delete</button></td>`;
    row.addEventListener('click', (e) => { if (e.target.tagName !== 'BUTTON') showDetail(job.id); });
    row.querySelector('.cancel').addEventListener('click', () =>
      api('POST', `/v1/jobs/${job.id}:cancel`).then(apply).catch(report));
    row.querySelector('.delete').addEventListener('click', () =>
      api('DELETE', `/v1/jobs/${job.id}`).then(() => remove(job.id)).catch(report));
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
  row.querySelector('.state').textContent = job.state;
  row.querySelector('.state').dataset.state = job.state;
  row.querySelector('.bar').dataset.state = job.state;
  row.querySelector('.bar > span').style.width = `${pct}%`;
  row.querySelector('.pct').textContent = `${pct}%`;
  row.querySelector('.step').textContent = progress.stepCount
    ? `${progress.stepIndex}/${progress.stepCount} ${progress.step || ''}${progress.message ? ' · ' + progress.message : ''}`
    : (progress.step || '');
  row.querySelector('.elapsed').textContent = elapsed(job);
  row.querySelector('.cancel').disabled = finished(job.state);
  row.querySelector('.delete').disabled = !finished(job.state);
  row.dataset.state = job.state;
}

function remove(id) {
  rows.get(id)?.remove();
  rows.delete(id);
  jobs.delete(id);
  $('#empty').hidden = rows.size > 0;
  if ($('#detail-id').textContent === id) closeDetail();
}

function report(error) {
  const out = $('#submit-result');
  out.textContent = error.message;
  out.className = 'error';
}

async function refreshList() {
  const page = await api('GET', '/v1/jobs?pageSize=50');
  for (const job of page.jobs || []) apply(job);
}

// One stream for every job. After a reconnect (gateway or server restart) the stream
// starts with fresh snapshots of live jobs; the list catches up jobs that ended meanwhile.
function connect() {
  const source = new EventSource('/v1/events');
  const status = $('#connection');
  source.onopen = () => {
    status.dataset.state = 'live';
    status.textContent = 'live';
    refreshList().catch(() => {});
  };
  source.onerror = () => {
    status.dataset.state = 'reconnecting';
    status.textContent = 'reconnecting…';
  };
  for (const type of ['snapshot', 'created', 'started', 'step', 'progress', 'retrying',
                      'succeeded', 'failed', 'cancelled']) {
    source.addEventListener(type, (e) => apply(JSON.parse(e.data).status));
  }
}

let detailSource = null;
function closeDetail() {
  detailSource?.close();
  detailSource = null;
  $('#detail').hidden = true;
}

// A job's whole history, replayed then live, from its own event stream.
function showDetail(id) {
  closeDetail();
  $('#detail').hidden = false;
  $('#detail-id').textContent = id;
  $('#detail-log').replaceChildren();
  $('#detail-outcome').replaceChildren();
  detailSource = new EventSource(`/v1/jobs/${id}/events`);
  const log = $('#detail-log');
  for (const type of ['created', 'started', 'step', 'progress', 'retrying', 'succeeded',
                      'failed', 'cancelled']) {
    detailSource.addEventListener(type, (e) => {
      const event = JSON.parse(e.data);
      const p = event.status.progress || {};
      const item = document.createElement('li');
      item.value = Number(event.sequence);
      item.textContent = `${event.time.slice(11, 23)}  ${type.padEnd(9)} ` +
        `${p.step ? `${p.step} ` : ''}${p.fraction !== undefined ? Math.round(p.fraction * 100) + '% ' : ''}${p.message || ''}`;
      log.appendChild(item);
      log.scrollTop = log.scrollHeight;
      const job = event.status;
      if (finished(job.state)) {
        const outcome = $('#detail-outcome');
        outcome.textContent = job.state === 'SUCCEEDED'
          ? `Result: ${JSON.stringify(job.result)}`
          : `Error: ${job.error ? job.error.message : job.state}`;
        outcome.className = job.state === 'SUCCEEDED' ? '' : 'outcome-error';
      }
    });
  }
}

$('#detail-close').addEventListener('click', closeDetail);

$('#submit-form').addEventListener('submit', async (e) => {
  e.preventDefault();
  const form = new FormData(e.target);
  const params = {
    steps: String(form.get('steps')).split(',').map((s) => s.trim()).filter(Boolean),
    step_ms: Number(form.get('step_ms')),
    ticks: Number(form.get('ticks')),
  };
  const failAt = String(form.get('fail_at')).trim();
  if (failAt) params.fail_at = failAt;
  const out = $('#submit-result');
  try {
    const job = await api('POST', '/v1/jobs', { type: 'demo.steps', params });
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
    if (job.state === 'RUNNING') rows.get(job.id).querySelector('.elapsed').textContent = elapsed(job);
  }
}, 500);

refreshList().catch(report);
connect();
