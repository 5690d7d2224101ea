// The web page in a real browser: Debian's chromium driven by playwright-core.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { BIN_DIR, startServer, startGateway } from './server.mjs';

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
  const config = path.join(scripts, 'config.json');
  writeFileSync(config, JSON.stringify({ types: [
    { name: 'shell.echo', description: 'Echoes its params', exec: { argv: [echo] } },
    { name: 'shell.flaky', exec: { argv: [flaky] }, retry: { initialBackoff: '3s' } },
  ] }));
  return config;
}
before(async () => {
  server = await startServer([`--config=${writeConfig()}`]);
  gateway = await startGateway(server.address);
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic',
      '--disable-component-update', '--disable-sync', '--no-first-run'],
  });
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
  await page.click('button[type=submit]');
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
  const id = await submitThroughForm(page, { steps: 'fetch, render', stepMs: 400, ticks: 4 });
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
  const log = await page.$$eval('#detail-log li', (items) => items.map((li) => li.value));
  assert.deepEqual(log, Array.from({ length: 13 }, (_, i) => i + 1));
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
  await page.click('button[type=submit]');
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

test('a job waiting to retry shows RETRYING, its attempt and why', async () => {
  const { page, errors } = await open();
  await page.waitForSelector('#types tr[data-type="shell.flaky"]');
  await page.selectOption('#type', 'shell.flaky');
  await page.click('button[type=submit]');
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
