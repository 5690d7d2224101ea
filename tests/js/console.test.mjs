// The page as an operator's console, in a real browser (Debian's chromium driven by
// playwright-core): state tabs and search, paging back, a failed job's detail with its
// error and stderr, Retry and Replay with edited params, bulk actions over a selection and
// over everything matching a view (confirmed with a count), from the keyboard, and on a
// phone's screen. Screenshots are kept in build/tests/artifacts.
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

before(async () => {
  scripts = mkdtempSync(path.join(tmpdir(), 'jobstream-js-console-'));
  const broken = path.join(scripts, 'broken.sh');
  writeFileSync(broken, '#!/bin/sh\necho "the database refused: too many connections" >&2\nexit 3\n');
  chmodSync(broken, 0o755);
  const config = path.join(scripts, 'config.json');
  writeFileSync(config, JSON.stringify({ types: [
    { name: 'shell.broken', exec: { argv: [broken] }, maxAttempts: 1 },
  ] }));
  server = await startServer([`--config=${config}`, '--stats_interval=1s']);
  gateway = await startGateway(server.address);
  browser = await launchChromium();
  mkdirSync(ARTIFACTS, { recursive: true });
});
after(async () => {
  await browser?.close();
  await gateway?.stop();
  await server?.stop();
  rmSync(scripts, { recursive: true, force: true });
});

const api = async (method, p, body) => {
  const response = await fetch(gateway.url + p, {
    method,
    headers: { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
};
const submit = (type, params, extra = {}) => api('POST', '/v1/jobs', { type, params, ...extra });
const waitEnd = (id) => api('GET', `/v1/jobs/${id}:wait?timeout=60s`);

async function open(viewport = { width: 1200, height: 900 }) {
  const page = await browser.newPage({ viewport });
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(gateway.url);
  await page.waitForSelector('#connection[data-state="live"]');
  return { page, errors };
}

// A view's first page has come (until then the last view's rows stay, dimmed).
const viewShown = (page) => page.waitForSelector('#jobs[aria-busy=false]');
const shownIds = (page) => page.$$eval('#jobs tbody tr', (rows) => rows.map((r) => r.dataset.id));

test('tabs, search and paging find a job among many; a failed job shows why; Retry and Replay', async () => {
  const label = `find-${Date.now()}`;
  // 60 that succeed (more than a page) and one that fails, all with the label.
  const ok = [];
  for (let i = 0; i < 60; ++i) {
    ok.push((await submit('demo.steps', { steps: ['a'], step_ms: 0, ticks: 0 }, { labels: { run: label } })).body.id);
  }
  const broken = (await submit('shell.broken', {}, { labels: { run: label } })).body.id;
  for (const id of [...ok, broken]) await waitEnd(id);

  const { page, errors } = await open();
  // The Failed tab shows the failed job (and only failed ones).
  await page.click('#state-tabs [data-state=FAILED]');
  await viewShown(page);
  await page.waitForSelector(`#jobs tr[data-id="${broken}"]`);
  for (const state of await page.$$eval('#jobs tbody tr', (rows) => rows.map((r) => r.dataset.state))) {
    assert.equal(state, 'FAILED');
  }
  // Searching by label pages back through every one of them: 50, then "Older jobs".
  await page.click('#state-tabs [data-state=""]');
  await page.fill('#job-search input[name=label]', `run:${label}`);
  await page.click('#job-search button[type=submit]');
  await viewShown(page);
  await page.waitForFunction(() => document.querySelectorAll('#jobs tbody tr').length > 0);
  const rowCount = () => page.$$eval('#jobs tbody tr', (rows) => rows.length);
  assert.ok(await rowCount() <= 50, 'a page at a time');
  assert.equal(await page.isVisible('#older'), true);
  for (let i = 0; i < 20 && await page.isVisible('#older'); ++i) {
    const shown = await rowCount();
    await page.click('#older');
    await page.waitForFunction((n) => document.querySelectorAll('#jobs tbody tr').length > n ||
      document.querySelector('#older').hidden, shown);
  }
  assert.equal(await rowCount(), 61);
  assert.equal(new Set(await shownIds(page)).size, 61);
  // A time range: created before 2020, none of them.
  await page.fill('#job-search input[name=before]', '2020-01-01T00:00:00');
  await page.click('#job-search button[type=submit]');
  await viewShown(page);
  await page.waitForFunction(() => document.querySelectorAll('#jobs tbody tr').length === 0);
  assert.match(await page.textContent('#search-result'), /created before/);
  await page.fill('#job-search input[name=before]', '');
  // By id: that job alone.
  await page.fill('#job-search input[name=label]', '');
  await page.fill('#job-search input[name=id]', ok[17]);
  await page.click('#job-search button[type=submit]');
  await viewShown(page);
  await page.waitForFunction((id) => {
    const rows = document.querySelectorAll('#jobs tbody tr');
    return rows.length === 1 && rows[0].dataset.id === id;
  }, ok[17]);
  // An unknown id says so.
  await page.fill('#job-search input[name=id]', '01hzzzzzzzzzzzzzzzzzzzzzzz');
  await page.click('#job-search button[type=submit]');
  await viewShown(page);
  await page.waitForFunction(() => {
    const text = document.querySelector('#search-result').textContent;
    return text && !text.startsWith('showing');
  });
  assert.match(await page.textContent('#search-result'), /01hzzzzzzzzzzzzzzzzzzzzzzz/);
  assert.equal((await shownIds(page)).length, 0);
  await page.click('#search-clear');

  // The failed job's detail: its error, stderr and params; Retry runs it again (and it
  // fails again: its program says so) under the same id.
  await page.fill('#job-search input[name=id]', broken);
  await page.click('#job-search button[type=submit]');
  await viewShown(page);
  await page.waitForSelector(`#jobs tr[data-id="${broken}"]`);
  await page.click(`#jobs tr[data-id="${broken}"] td.id`);
  await page.waitForSelector('#detail-fields dd[data-field=error]');
  assert.match(await page.textContent('#detail-fields'), /too many connections/);
  await page.screenshot({ path: path.join(ARTIFACTS, 'console-failed-job.png'), fullPage: true });
  await page.click('#detail-retry');
  await page.waitForSelector('#detail-log li:has-text("retried")');
  const again = await waitEnd(broken);
  assert.equal(again.body.state, 'FAILED');
  assert.equal(again.body.series, 2);
  // Replay with edited params: a new job of the same type, linked to this one.
  await page.click(`#jobs tr[data-id="${broken}"] td.id`);
  await page.waitForSelector('#detail-replay:not([hidden])');
  await page.click('#detail-replay');
  await page.fill('#replay-params', '{"edited": true}');
  await page.fill('#replay-form input[name=reason]', 'with the new setting');
  await page.click('#replay-form button[type=submit]');
  await page.waitForSelector('#detail-result:has-text("replayed as")');
  const newId = (await page.textContent('#detail-result')).replace('replayed as ', '').trim();
  assert.notEqual(newId, broken);
  const made = await api('GET', `/v1/jobs/${newId}`);
  assert.equal(made.body.replayOf, broken);
  assert.deepEqual(made.body.params, { edited: true });
  assert.equal(made.body.lastAction.reason, 'with the new setting');
  await page.waitForSelector(`#detail-fields dd[data-field=replay-of]:has-text("${broken}")`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'console-replayed.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});

test('bulk: a selection, and everything matching a view after a confirmation with its count', async () => {
  const label = `bulk-${Date.now()}`;
  const ids = [];
  for (let i = 0; i < 7; ++i) {
    ids.push((await submit('shell.broken', {}, { labels: { run: label } })).body.id);
  }
  for (const id of ids) await waitEnd(id);
  // Retried jobs of a paused type stay queued, so what the page shows holds still.
  assert.equal((await api('POST', '/v1/types/shell.broken:pause', { reason: 'console test' })).status, 200);

  const { page, errors } = await open();
  await page.click('#state-tabs [data-state=FAILED]');
  await viewShown(page);
  await page.fill('#job-search input[name=label]', `run:${label}`);
  await page.click('#job-search button[type=submit]');
  await viewShown(page);
  await page.waitForFunction(() => document.querySelectorAll('#jobs tbody tr').length === 7);
  // Two ticked by hand, retried: they leave the Failed view.
  await page.check(`#jobs tr[data-id="${ids[0]}"] .pick`);
  await page.check(`#jobs tr[data-id="${ids[1]}"] .pick`);
  assert.equal(await page.textContent('#selected-count'), '2 selected');
  await page.click('[data-bulk=retry]');
  await page.waitForSelector('#confirm[open]');
  assert.match(await page.textContent('#confirm-text'), /Retry 2 selected jobs/);
  await page.fill('#confirm-reason', 'two by hand');
  await page.click('#confirm-ok');
  await page.waitForSelector('#bulk-result:has-text("2 changed")');
  await page.waitForFunction(() => document.querySelectorAll('#jobs tbody tr').length === 5);
  // Everything matching: the dialog counts first; backing out changes nothing.
  await page.check('#all-matching');
  await page.click('[data-bulk=retry]');
  await page.waitForSelector('#confirm[open]');
  assert.match(await page.textContent('#confirm-text'), /Retry 5 jobs matching failed, label run:/);
  await page.screenshot({ path: path.join(ARTIFACTS, 'console-bulk-confirm.png'), fullPage: true });
  await page.click('#confirm button[value=cancel]');
  assert.equal((await api('GET', `/v1/jobs?state=FAILED&label=run:${label}`)).body.jobs.length, 5);
  await page.click('[data-bulk=retry]');
  await page.waitForSelector('#confirm[open]');
  await page.fill('#confirm-reason', 'the rest');
  await page.click('#confirm-ok');
  await page.waitForSelector('#bulk-result:has-text("5 changed")');
  await page.waitForFunction(() => document.querySelectorAll('#jobs tbody tr').length === 0);
  const queued = await api('GET', `/v1/jobs?state=QUEUED&label=run:${label}`);
  assert.equal(queued.body.jobs.length, 7);
  const one = await api('GET', `/v1/jobs/${ids[4]}`);
  assert.equal(one.body.lastAction.reason, 'the rest');
  // Then cancel them all from the Queued tab, by the keyboard: tab to it, arrow keys.
  await page.focus('#state-tabs [data-state=FAILED]');
  await page.keyboard.press('ArrowLeft');  // to Running, then Queued
  await page.keyboard.press('ArrowLeft');
  await page.waitForFunction(() =>
    document.querySelector('#state-tabs [aria-selected=true]').dataset.state === 'QUEUED');
  await page.waitForFunction(() => document.querySelectorAll('#jobs tbody tr').length === 7);
  // A new view starts with nothing selected: "all matching" is ticked again, for it.
  assert.equal(await page.isChecked('#all-matching'), false);
  await page.check('#all-matching');
  await page.click('[data-bulk=cancel]');
  await page.waitForSelector('#confirm[open]');
  assert.match(await page.textContent('#confirm-text'), /Cancel 7 jobs/);
  await page.keyboard.press('Enter');  // the dialog's first button is Back: nothing happens
  await page.waitForFunction(() => !document.querySelector('#confirm').open);
  assert.equal((await api('GET', `/v1/jobs?state=QUEUED&label=run:${label}`)).body.jobs.length, 7);
  await page.click('[data-bulk=cancel]');
  await page.click('#confirm-ok');
  await page.waitForSelector('#bulk-result:has-text("7 changed")');
  const cancelled = await api('GET', `/v1/jobs?state=CANCELLED&label=run:${label}`);
  assert.equal(cancelled.body.jobs.length, 7);
  assert.equal((await api('POST', '/v1/types/shell.broken:resume')).status, 200);
  assert.deepEqual(errors, []);
  await page.close();
});

test('on a phone\'s screen the console fits and its rows open by keyboard', async () => {
  const id = (await submit('demo.steps', { steps: ['a'], step_ms: 0, ticks: 0 })).body.id;
  await waitEnd(id);
  const { page, errors } = await open({ width: 390, height: 844 });
  await page.waitForSelector(`#jobs tr[data-id="${id}"]`);
  // Nothing wider than the screen but the table, which scrolls in its own box.
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  assert.ok(overflow <= 1, `the page is ${overflow}px wider than the screen`);
  await page.focus(`#jobs tr[data-id="${id}"]`);
  await page.keyboard.press('Enter');
  await page.waitForSelector(`#detail:not([hidden]) #detail-id:has-text("${id}")`);
  await page.screenshot({ path: path.join(ARTIFACTS, 'console-phone.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});

test('the last hour\'s charts: jobs ended a minute and the queue, from the server\'s own counts', async () => {
  const before = await api('GET', '/v1/stats');
  assert.equal(before.status, 200);
  assert.equal(before.body.interval, '1s');
  const ids = [];
  for (let i = 0; i < 12; ++i) ids.push((await submit('demo.steps', { steps: ['a'], step_ms: 0, ticks: 0 })).body.id);
  ids.push((await submit('shell.broken', {})).body.id);
  for (const id of ids) await waitEnd(id);
  // A sample after they ended counts them.
  let stats;
  for (let i = 0; i < 50; ++i) {
    stats = (await api('GET', '/v1/stats')).body;
    const last = stats.samples.at(-1);
    if (Number(last.succeeded) >= 12 && Number(last.failed) >= 1) break;
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
  const last = stats.samples.at(-1);
  assert.ok(Number(last.submitted) >= 13, JSON.stringify(last));
  assert.ok(Number(last.succeeded) >= 12);
  assert.ok(Number(last.failed) >= 1);
  assert.ok(stats.samples.length >= 2);
  const { page, errors } = await open();
  await page.waitForSelector('#activity:not([hidden])');
  await page.waitForFunction(() => {
    const line = document.querySelector('#chart-throughput polyline.ok');
    return line && line.getAttribute('points').split(' ').length >= 1 &&
      [...document.querySelectorAll('#chart-depth polyline')].length === 2;
  });
  assert.match(await page.textContent('#depth-caption'), /now \d+ and \d+/);
  await page.screenshot({ path: path.join(ARTIFACTS, 'console-charts.png'), fullPage: true });
  assert.deepEqual(errors, []);
  await page.close();
});
