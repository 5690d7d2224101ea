// The page against a server with tokens, in real Chromium: it asks for a token, signs in
// through POST /v1/session (the token then lives in an HttpOnly cookie no script sees),
// follows a job with EventSource on that cookie, finds another tenant's job a 404, stays
// signed in across a reload, and signs out.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { launchChromium, startGateway, startServer } from './server.mjs';

const sha256 = (s) => createHash('sha256').update(s).digest('hex');
const ALICE = 'alice-browser-token-0123';
const BOB = 'bob-browser-token-0123';

let server;
let gateway;
let browser;
let dir;
before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'jobstream-browser-auth-'));
  const file = path.join(dir, 'tokens.json');
  writeFileSync(file, JSON.stringify({ tokens: [
    { sha256: sha256(ALICE), name: 'alice', tenant: 'acme', roles: ['submit', 'read'] },
    { sha256: sha256(BOB), name: 'bob', tenant: 'bolt', roles: ['submit', 'read'] },
  ] }));
  server = await startServer([`--auth_tokens=${file}`]);
  gateway = await startGateway(server.address);
  browser = await launchChromium();
});
after(async () => {
  await browser?.close();
  await gateway?.stop();
  await server?.stop();
  rmSync(dir, { recursive: true, force: true });
});

test('sign in, follow a job on the cookie, another tenant is a 404, sign out', async () => {
  // Bob's job, made outside the browser.
  const bobs = await (await fetch(`${gateway.url}/v1/jobs`, {
    method: 'POST', headers: { Authorization: `Bearer ${BOB}`, 'Content-Type': 'application/json' },
    body: JSON.stringify({ type: 'demo.steps', params: { ticks: 0, step_ms: 0 } }),
  })).json();

  const context = await browser.newContext();
  const page = await context.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(gateway.url);
  await page.waitForSelector('#sign-in:not([hidden])');
  assert.equal(await page.isHidden('#workspace'), true);

  // A wrong token is refused in the form.
  await page.fill('#token', 'not-a-token');
  await page.click('#sign-in-form button[type=submit]');
  await page.waitForSelector('#sign-in-result.error');
  assert.match(await page.textContent('#sign-in-result'), /not one this server knows/);

  await page.fill('#token', ALICE);
  await page.click('#sign-in-form button[type=submit]');
  await page.waitForSelector('#workspace:not([hidden])');
  await page.waitForSelector('#connection[data-state="live"]');
  assert.equal(await page.textContent('#identity'), 'alice · acme');
  // HttpOnly: the page's scripts never see the token.
  assert.equal(await page.evaluate(() => document.cookie), '');
  const cookies = await context.cookies();
  assert.equal(cookies.length, 1);
  assert.equal(cookies[0].httpOnly, true);
  assert.equal(cookies[0].sameSite, 'Strict');

  // Submit through the form; the row follows the job on /v1/events with the cookie.
  await page.fill('input[name=steps]', 'a, b');
  await page.fill('input[name=step_ms]', '200');
  await page.fill('input[name=ticks]', '2');
  await page.click('#submit-form button[type=submit]');
  await page.waitForSelector('#submit-result:has-text("submitted")');
  const id = (await page.textContent('#submit-result')).replace('submitted ', '').trim();
  await page.waitForFunction((jobId) => {
    const row = document.querySelector(`#jobs tr[data-id="${jobId}"]`);
    return row && row.dataset.state === 'SUCCEEDED' && row.querySelector('.pct').textContent === '100%';
  }, id, { timeout: 30000 });
  // One job's EventSource on the cookie too (jobstream.js watch).
  const watched = await page.evaluate(async (jobId) => {
    const js = await import('/static/jobstream.js');
    const events = [];
    const job = await js.watch(jobId, { onEvent: (e) => events.push(e.type) });
    return { state: job.state, first: events[0], count: events.length };
  }, id);
  assert.deepEqual([watched.state, watched.first], ['SUCCEEDED', 'CREATED']);
  assert.ok(!(await page.$(`#jobs tr[data-id="${bobs.id}"]`)), "bob's job is not listed");

  // Bob's job does not exist for alice's page, whichever way it asks.
  const seen = await page.evaluate(async (jobId) => {
    const js = await import('/static/jobstream.js');
    const status = (await fetch(`/v1/jobs/${jobId}`)).status;
    const watch = await js.watch(jobId).then(() => 'resolved', (e) => e.httpStatus);
    return { status, watch };
  }, bobs.id);
  assert.deepEqual(seen, { status: 404, watch: 404 });

  // The cookie outlives a reload.
  await page.reload();
  await page.waitForSelector('#workspace:not([hidden])');
  await page.waitForSelector(`#jobs tr[data-id="${id}"]`);

  await page.click('#sign-out');
  await page.waitForSelector('#sign-in:not([hidden])');
  assert.deepEqual(await context.cookies(), []);
  assert.deepEqual(errors, []);
  await context.close();
});
