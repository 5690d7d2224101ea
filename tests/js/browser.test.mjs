// The web page in a real browser: Debian's chromium driven by playwright-core.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BIN_DIR, launchChromium, startGateway, startServer } from './server.mjs';

const ARTIFACTS = path.join(BIN_DIR, 'artifacts');
let server;
let gateway;
let browser;
let scripts;
// Two exec types besides the demo: one echoes its params, one fails its first attempt.
function writeConfig() {
  scripts = mkdtempSync(path.join(tmpdir(), 'jobstream-js-page-'));
  const script = (name, body) => {
    const file = path.join(scripts, name);
    writeFileSync(file, `#!/bin/sh\n${body}`);
    chmodSync(file, 0o755);
    return file;
  };
  const echo = script('echo.sh', 'read p\necho \'{"step": "echo"}\'\necho "{\\"result\\": $p}"\n');
  const flaky = script('flaky.sh', 'if [ "$JOBSTREAM_ATTEMPT" = 1 ]; then echo "first try breaks" >&2; exit 1; fi\n' +
    'echo \'{"result": "second try"}\'\n');
  // A 1x1 PNG, and 30 s of a 440 Hz tone as WAV (2.6 MB: seeking into it takes a Range).
  const plot = script('plot.sh', 'echo iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg== ' +
    '| base64 -d > "$JOBSTREAM_OUTPUT_DIR/plot.png"\necho \'{"result": {"artifact": "plot.png"}}\'\n');
  writeFileSync(path.join(scripts, 'tone.wav'), toneWav(30));
  const media = script('media.sh', `cp ${path.join(scripts, 'tone.wav')} "$JOBSTREAM_OUTPUT_DIR/tone.wav"\n`);
  const config = path.join(scripts, 'config.json');
  writeFileSync(config, JSON.stringify({ types: [
    { name: 'shell.echo', description: 'Echoes its params', exec: { argv: [echo] } },
    { name: 'shell.flaky', exec: { argv: [flaky] }, retry: { initialBackoff: '3s' } },
    { name: 'shell.plot', exec: { argv: [plot] } },
    { name: 'shell.media', exec: { argv: [media] } },
    { name: 'shell.slow', exec: { argv: [script('slow.sh', 'sleep 30\n')] }, keyConcurrency: 1 },
  ] }));
  return config;
}
// 16-bit mono PCM at 44.1 kHz: a header and samples, nothing a browser cannot play.
function toneWav(seconds) {
  const rate = 44100;
  const samples = rate * seconds;
  const wav = Buffer.alloc(44 + samples * 2);
  wav.write('RIFF', 0);
  wav.writeUInt32LE(36 + samples * 2, 4);
  wav.write('WAVEfmt ', 8);
  wav.writeUInt32LE(16, 16);
  wav.writeUInt16LE(1, 20);   // PCM
  wav.writeUInt16LE(1, 22);   // mono
  wav.writeUInt32LE(rate, 24);
  wav.writeUInt32LE(rate * 2, 28);
  wav.writeUInt16LE(2, 32);
  wav.writeUInt16LE(16, 34);
  wav.write('data', 36);
  wav.writeUInt32LE(samples * 2, 40);
  for (let i = 0; i < samples; i++) {
    wav.writeInt16LE(Math.round(8000 * Math.sin((2 * Math.PI * 440 * i) / rate)), 44 + i * 2);
  }
  return wav;
}

before(async () => {
  server = await startServer([`--config=${writeConfig()}`]);
  gateway = await startGateway(server.address);
  browser = await launchChromium(['--autoplay-policy=no-user-gesture-required']);
  mkdirSync(ARTIFACTS, { recursive: true });
});
after(async () => {
  await browser?.close();
  await gateway?.stop();
  await server?.stop();
  rmSync(scripts, { recursive: true, force: true });
});

// Opens the page and records uncaught errors in it.
async function open() {
  const page = await browser.newPage({ viewport: { width: 1200, height: 900 } });
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(gateway.url);
  await page.waitForSelector('#connection[data-state="live"]');
  return { page, errors };
}

async function submitThroughForm(page, { steps, stepMs, ticks }) {
  await page.fill('input[name=steps]', steps);
  await page.fill('input[name=step_ms]', String(stepMs));
  await page.fill('input[name=ticks]', String(ticks));
  await page.click('#submit-form button[type=submit]');
  await page.waitForSelector('#submit-result:has-text("submitted")');
  return (await page.textContent('#submit-result')).replace('submitted ', '').trim();
}

// Waits until the job's row is in `state` (and, for SUCCEEDED, at 100%).
const waitForRow = (page, id, state, timeout = 30000) => page.waitForFunction(([jobId, want]) => {
  const row = document.querySelector(`#jobs tr[data-id="${jobId}"]`);
  return row && row.dataset.state === want &&
    (want !== 'SUCCEEDED' || row.querySelector('.pct').textContent === '100%');
}, [id, state], { timeout });

const rowState = (page, id) => page.evaluate((jobId) => {
  const row = document.querySelector(`#jobs tr[data-id="${jobId}"]`);
  return row && { state: row.dataset.state, pct: row.querySelector('.pct').textContent };
}, id);

test('submit through the form and watch the row reach succeeded at 100%', async () => {
  const { page, errors } = await open();
  // Long enough to be seen RUNNING by a page the loaded suite may stall for a second.
  const id = await submitThroughForm(page, { steps: 'fetch, render', stepMs: 1500, ticks: 4 });
  await waitForRow(page, id, 'RUNNING');
  await waitForRow(page, id, 'SUCCEEDED');
  // The bar is drawn full, not just labelled 100% (it animates there).
  await page.waitForFunction((jobId) => {
    const bar = document.querySelector(`#jobs tr[data-id="${jobId}"] .bar`);
    const width = bar.getBoundingClientRect().width;
    return width > 50 && Math.abs(bar.firstElementChild.getBoundingClientRect().width - width) < 1;
  }, id, { timeout: 5000 });
  // The job's detail: its whole event log and its result.
  await page.click(`#jobs tr[data-id="${id}"] td.id`);
  await page.waitForSelector('#detail-outcome:has-text("Result")');
  const log = await page.$$eval('#detail-log li',
    (items) => items.map((li) => ({ sequence: li.value, type: li.textContent.split(/\s+/)[1] })));
  // The whole history, in order with no gap. 13 events if each of the 8 PROGRESS reports got
  // its own write; the server merges one into the next while its write is pending (a slow
  // disk), so fewer PROGRESS events are allowed, never fewer state changes or steps.
  assert.deepEqual(log.map((e) => e.sequence), Array.from({ length: log.length }, (_, i) => i + 1));
  assert.deepEqual(log.filter((e) => e.type !== 'progress').map((e) => e.type),
    ['created', 'started', 'step', 'step', 'succeeded']);
  assert.ok(log.length <= 13, `${log.length} events`);
  assert.equal(await page.textContent('#detail-outcome'), 'Result: {"steps":2}');
  await page.screenshot({ path: path.join(ARTIFACTS, 'gateway-page.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});

test('the page stays correct across a gateway restart mid-job', async () => {
  const { page, errors } = await open();
  const id = await submitThroughForm(page, { steps: 'a, b, c', stepMs: 700, ticks: 5 });
  await waitForRow(page, id, 'RUNNING');
  const port = gateway.port;
  await gateway.kill();
  await page.waitForSelector('#connection[data-state="reconnecting"]');
  gateway = await startGateway(server.address, { port });
  await waitForRow(page, id, 'SUCCEEDED');
  assert.deepEqual(await rowState(page, id), { state: 'SUCCEEDED', pct: '100%' });
  await page.screenshot({ path: path.join(ARTIFACTS, 'gateway-page-after-restart.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});

test('any declared type: picked from the list, params checked before sending', async () => {
  const { page, errors } = await open();
  await page.waitForSelector('#types tr[data-type="shell.echo"]');
  await page.selectOption('#type', 'shell.echo');
  assert.equal(await page.isVisible('#demo-fields'), false, 'the demo fields are for demo.steps');
  assert.match(await page.textContent('#type-info'), /Echoes its params — runs exec/);
  await page.fill('#params', '{"frames": 24,');
  assert.match(await page.textContent('#params-error'), /not JSON/);
  assert.equal(await page.isDisabled('#submit-form button[type=submit]'), true);
  await page.fill('#params', '[1, 2]');
  assert.match(await page.textContent('#params-error'), /must be a JSON object/);
  await page.fill('#params', '{"frames": 24, "name": "intro"}');
  assert.equal(await page.textContent('#params-error'), '');
  await page.click('#submit-form button[type=submit]');
  await page.waitForSelector('#submit-result:has-text("submitted")');
  const id = (await page.textContent('#submit-result')).replace('submitted ', '').trim();
  await waitForRow(page, id, 'SUCCEEDED');
  assert.equal(await page.textContent(`#jobs tr[data-id="${id}"] .type`), 'shell.echo');
  await page.click(`#jobs tr[data-id="${id}"] td.id`);
  await page.waitForSelector('#detail-outcome:has-text("Result")');
  const outcome = await page.textContent('#detail-outcome');
  assert.deepEqual(JSON.parse(outcome.replace(/^Result: /, '')), { frames: 24, name: 'intro' });
  assert.deepEqual(errors, []);
  await page.close();
});

test('the types table shows a type\'s limits per key and the keys held back at them', async () => {
  const { page, errors } = await open();
  await page.waitForSelector('#types tr[data-type="shell.slow"]');
  assert.equal(await page.textContent('#types tr[data-type="shell.slow"] .per-key'), '≤1 running');
  const ids = [];
  for (let i = 0; i < 3; i++) {
    const res = await fetch(`${gateway.url}/v1/jobs`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ type: 'shell.slow', concurrencyKey: 'customer-7' }),
    });
    assert.equal(res.status, 202);
    ids.push((await res.json()).id);
  }
  // The table is read every few seconds: it may show the key at its limit with one queued
  // before the third submit is in.
  await page.waitForSelector('#types tr[data-type="shell.slow"] .per-key:has-text("2 queued")',
    { timeout: 15000 });
  assert.equal(await page.textContent('#types tr[data-type="shell.slow"] .per-key'),
    '≤1 running; at limit: customer-7: 1 running, 2 queued');
  for (const id of ids) await fetch(`${gateway.url}/v1/jobs/${id}:cancel`, { method: 'POST' });
  assert.deepEqual(errors, []);
  await page.close();
});

test('a job waiting to retry shows RETRYING, its attempt and why', async () => {
  const { page, errors } = await open();
  await page.waitForSelector('#types tr[data-type="shell.flaky"]');
  await page.selectOption('#type', 'shell.flaky');
  await page.click('#submit-form button[type=submit]');
  await page.waitForSelector('#submit-result:has-text("submitted")');
  const id = (await page.textContent('#submit-result')).replace('submitted ', '').trim();
  await page.waitForFunction((jobId) => {
    const row = document.querySelector(`#jobs tr[data-id="${jobId}"]`);
    return row && row.querySelector('.state').textContent === 'RETRYING';
  }, id, { timeout: 10000 });
  const step = await page.textContent(`#jobs tr[data-id="${id}"] .step`);
  assert.match(step, /attempt 2 at .*: .*exited with status 1; stderr: first try breaks/);
  assert.equal(await page.textContent(`#jobs tr[data-id="${id}"] .attempt`), '1/3');
  await page.screenshot({ path: path.join(ARTIFACTS, 'gateway-page-retrying.png'), fullPage: true });
  await waitForRow(page, id, 'SUCCEEDED');
  assert.equal(await page.textContent(`#jobs tr[data-id="${id}"] .attempt`), '2/3');
  await page.click(`#jobs tr[data-id="${id}"] td.id`);
  await page.waitForSelector('#detail-log li:has-text("retrying")');
  assert.match(await page.textContent('#detail-log'), /attempt 1 failed: .*first try breaks/);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a type paused from the page holds its jobs until it is resumed', async () => {
  const { page, errors } = await open();
  const row = '#types tr[data-type="shell.echo"]';
  await page.waitForSelector(row);
  await page.click(`${row} button.pause`);
  await page.waitForSelector(`${row}[data-paused="true"]`);
  assert.equal(await page.textContent(`${row} .paused`), 'paused: paused from the page');
  assert.equal(await page.textContent(`${row} button.pause`), 'Resume');
  await page.selectOption('#type', 'shell.echo');
  await page.click('#submit-form button[type=submit]');
  await page.waitForSelector('#submit-result:has-text("submitted")');
  const id = (await page.textContent('#submit-result')).replace('submitted ', '').trim();
  await waitForRow(page, id, 'QUEUED');
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(await page.textContent(`#jobs tr[data-id="${id}"] .state`), 'QUEUED', 'it waits');
  await page.screenshot({ path: path.join(ARTIFACTS, 'gateway-page-paused-type.png'), fullPage: true });
  await page.click(`${row} button.pause`);
  await page.waitForSelector(`${row}[data-paused="false"]`);
  await waitForRow(page, id, 'SUCCEEDED');
  assert.equal(await page.textContent(`${row} .paused`), '');
  assert.deepEqual(errors, []);
  await page.close();
});

test('a job\'s image artifact shows in the page, with a download link', async () => {
  const { page, errors } = await open();
  await page.waitForSelector('#types tr[data-type="shell.plot"]');
  await page.selectOption('#type', 'shell.plot');
  await page.click('#submit-form button[type=submit]');
  await page.waitForSelector('#submit-result:has-text("submitted")');
  const id = (await page.textContent('#submit-result')).replace('submitted ', '').trim();
  await waitForRow(page, id, 'SUCCEEDED');
  await page.click(`#jobs tr[data-id="${id}"] td.id`);
  await page.waitForSelector('#detail-artifacts figure[data-name="plot.png"] img');
  // The image is loaded and decoded, not just an element with a src.
  await page.waitForFunction(() => {
    const img = document.querySelector('#detail-artifacts img');
    return img.complete && img.naturalWidth === 1 && img.naturalHeight === 1;
  }, null, { timeout: 10000 });
  const link = await page.getAttribute('#detail-artifacts figcaption a', 'href');
  assert.match(link, new RegExp(`/v1/jobs/${id}/artifacts/plot.png\\?download=1$`));
  assert.match(await page.textContent('#detail-log'), /artifact\s+plot.png \(image\/png, \d+ B\)/);
  await page.screenshot({ path: path.join(ARTIFACTS, 'gateway-page-artifact.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});

test('a <video> element plays an artifact and seeks into it with Range requests', async () => {
  const { page, errors } = await open();
  const ranges = [];
  page.on('request', (request) => {
    if (request.url().includes('/artifacts/tone.wav') && request.headers().range) {
      ranges.push(request.headers().range);
    }
  });
  const id = await page.evaluate(async () => {
    const js = await import('/static/jobstream.js');
    const job = await js.submit('shell.media');
    await js.wait(job.id);
    return job.id;
  });
  // The page offers it as audio; a <video> element plays it all the same.
  await page.click(`#jobs tr[data-id="${id}"] td.id`);
  await page.waitForSelector('#detail-artifacts audio');
  const played = await page.evaluate(async (jobId) => {
    const js = await import('/static/jobstream.js');
    const video = document.createElement('video');
    // Metadata only, then a seek before playing: the browser has not buffered that far,
    // so the seek needs a Range request into the middle.
    video.preload = 'metadata';
    video.src = js.artifactUrl(jobId, 'tone.wav');
    document.body.appendChild(video);
    video.muted = true;
    // Each wait ends: with the event, the element's error, or a minute's bound saying
    // where it stood (one once hung the file to ctest's timeout with nothing said).
    const next = (event) => new Promise((resolve, reject) => {
      video.addEventListener(event, resolve, { once: true });
      video.addEventListener('error', () => reject(new Error(`${event}: ${video.error?.message}`)), { once: true });
      setTimeout(() => reject(new Error(`no ${event} within 60 s: readyState ${video.readyState}, ` +
        `networkState ${video.networkState}`)), 60000);
    });
    if (video.readyState < 1) await next('loadedmetadata');
    const duration = video.duration;
    const seeked = next('seeked');
    video.currentTime = 20;
    await seeked;
    const at = video.currentTime;
    await video.play();
    await new Promise((r) => setTimeout(r, 600));
    return { duration, at, later: video.currentTime, paused: video.paused, error: video.error?.message };
  }, id);
  assert.equal(played.error, undefined);
  assert.ok(Math.abs(played.duration - 30) < 0.1, `duration ${played.duration}`);
  assert.ok(Math.abs(played.at - 20) < 0.5, `seeked to ${played.at}`);
  assert.ok(played.later > played.at, 'it plays on from there');
  // The seek was served by a Range request into the middle of the file.
  assert.ok(ranges.some((r) => Number(/bytes=(\d+)-/.exec(r)?.[1]) > 1_000_000), ranges.join(' '));
  assert.deepEqual(errors, []);
  await page.close();
});

test('jobstream.js: watch keeps every event once across a gateway restart; result and watchAll', async () => {
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(`${gateway.url}/static/style.css`);  // any page of the gateway's origin
  await page.evaluate(async () => {
    const js = await import('/static/jobstream.js');
    window.seen = [];
    window.all = [];
    window.states = [];
    window.dashboard = js.watchAll({ type: 'demo.steps', onEvent: (e) => window.all.push(e) });
    const job = await js.submit('demo.steps', { steps: ['a', 'b', 'c'], step_ms: 700, ticks: 5 },
      { idempotencyKey: `module-${Date.now()}` });
    window.jobId = job.id;
    window.done = js.watch(job.id, {
      onEvent: (e) => window.seen.push(Number(e.sequence)),
      onConnection: (state) => window.states.push(state),
    }).then((end) => { window.end = end; });
  });
  await page.waitForFunction(() => window.seen.length >= 4);
  const port = gateway.port;
  await gateway.kill();
  await page.waitForFunction(() => window.states.includes('reconnecting'));
  gateway = await startGateway(server.address, { port });
  await page.waitForFunction(() => window.end !== undefined, null, { timeout: 30000 });
  const { seen, end, all, jobId } = await page.evaluate(() => ({
    seen: window.seen, end: window.end, all: window.all, jobId: window.jobId,
  }));
  assert.equal(end.state, 'SUCCEEDED');
  assert.deepEqual(seen, Array.from({ length: Number(end.lastSequence) }, (_, i) => i + 1));
  // The dashboard saw the job; it may have ended while the gateway was away (a
  // reconnect snapshots only live jobs), so its end is checked on a job after that.
  assert.ok(all.some((e) => e.jobId === jobId), 'the dashboard saw the job');
  // result(): the value; a result naming an artifact is that artifact.
  const results = await page.evaluate(async (id) => {
    const js = await import('/static/jobstream.js');
    const value = await js.result(id);
    const later = await js.submit('demo.steps', { steps: ['z'], step_ms: 100, ticks: 1 });
    await js.wait(later.id);
    await new Promise((r) => setTimeout(r, 200));
    const dashboardSawEnd = window.all.some((e) => e.jobId === later.id && e.type === 'SUCCEEDED');
    const plot = await js.submit('shell.plot');
    const response = await js.result(plot.id);
    const bytes = (await response.arrayBuffer()).byteLength;
    let failure = null;
    const failing = await js.submit('demo.steps', { steps: ['x'], step_ms: 0, fail_at: 'x' });
    try { await js.result(failing.id); } catch (e) { failure = { name: e.name, message: e.message }; }
    window.dashboard.close();
    return { value, type: response.headers.get('content-type'), bytes, failure, dashboardSawEnd };
  }, jobId);
  assert.deepEqual(results.value, { steps: 3 });
  assert.equal(results.type, 'image/png');
  assert.ok(results.bytes > 60);
  assert.equal(results.dashboardSawEnd, true);
  assert.equal(results.failure.name, 'JobstreamError');
  assert.match(results.failure.message, /fail_at/);
  assert.deepEqual(errors, []);
  await page.close();
});

test('a job that waits for another says which, then runs once it has succeeded', async () => {
  const { page, errors } = await open();
  const post = async (body) => {
    const response = await fetch(`${gateway.url}/v1/jobs`, {
      method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body),
    });
    assert.equal(response.status, 202);
    return response.json();
  };
  // The dependency runs until cancelled below (the dependent runs anyway): the page has all
  // the time it needs to show WAITING.
  const first = await post({ type: 'demo.steps', params: { steps: ['a'], ticks: 0, step_ms: 600000 } });
  const then = await post({ type: 'demo.steps', params: { steps: ['b'], ticks: 0, step_ms: 10 },
    dependsOn: [first.id], onDependencyFailure: 'RUN' });
  assert.equal(then.state, 'WAITING');
  assert.deepEqual(then.waitingFor, [first.id]);
  await page.waitForFunction((jobId) => {
    const row = document.querySelector(`#jobs tr[data-id="${jobId}"]`);
    return row && row.querySelector('.state').textContent === 'WAITING';
  }, then.id, { timeout: 10000 });
  assert.equal(await page.textContent(`#jobs tr[data-id="${then.id}"] .step`), `waits for ${first.id}`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'gateway-page-waiting.png'), fullPage: true });
  await page.evaluate(async (id) => (await import('/static/jobstream.js')).cancel(id), first.id);
  await waitForRow(page, then.id, 'SUCCEEDED');
  await page.click(`#jobs tr[data-id="${then.id}"] td.id`);
  await page.waitForSelector('#detail-log li:has-text("queued")');
  assert.match(await page.textContent('#detail-log'), new RegExp(`waiting\\s+for ${first.id}`));
  assert.deepEqual(errors, []);
  await page.close();
});

test('a batch from jobstream.js: its parent\'s row shows the children\'s progress, its log each child', async () => {
  const { page, errors } = await open();
  const batch = await page.evaluate(async () => {
    const js = await import('/static/jobstream.js');
    const children = Array.from({ length: 6 }, (_, i) => ({
      type: 'demo.steps', params: { steps: ['part'], ticks: 0, step_ms: 400 + 150 * i } }));
    return js.submitBatch(children, {
      then: { type: 'demo.steps', params: { steps: ['stitch'], ticks: 0, step_ms: 10 } },
      labels: { video: 'holiday' } });
  });
  assert.equal(batch.parent.type, 'jobstream.batch');
  assert.equal(batch.parent.state, 'WAITING');
  assert.equal(batch.childIds.length, 6);
  const parent = batch.parent.id;
  await page.waitForFunction((id) => {
    const row = document.querySelector(`#jobs tr[data-id="${id}"]`);
    return row && /[1-5] of 6 children ended/.test(row.querySelector('.step').textContent) &&
      row.querySelector('.pct').textContent !== '0%';
  }, parent, { timeout: 10000 });
  await page.screenshot({ path: path.join(ARTIFACTS, 'gateway-page-batch.png'), fullPage: true });
  await waitForRow(page, parent, 'SUCCEEDED');
  await page.click(`#jobs tr[data-id="${parent}"] td.id`);
  await page.waitForSelector('#detail-log li:has-text("succeeded")');
  const log = await page.$$eval('#detail-log li', (items) => items.map((li) => li.textContent));
  const children = log.filter((line) => /\bchild\b/.test(line));
  assert.equal(children.length, 6, log.join('\n'));
  for (const id of batch.childIds) assert.ok(children.some((line) => line.includes(id)), id);
  assert.deepEqual(errors, []);
  await page.close();
});
