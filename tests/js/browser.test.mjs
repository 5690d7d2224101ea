// The web page in a real browser: Debian's chromium driven by playwright-core.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';
import { BIN_DIR, startServer, startGateway } from './server.mjs';

const ARTIFACTS = path.join(BIN_DIR, 'artifacts');
let server;
let gateway;
let browser;
before(async () => {
  server = await startServer();
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
