// Two servers on one PostgreSQL behind one gateway (--server=a,b): the page in a real
// browser keeps its job's progress when the server its stream was read through dies.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { chromium } from 'playwright-core';
import { startGateway, startPostgres, startServer } from './server.mjs';

let postgres;
const servers = {};
let gateway;
let browser;

before(async () => {
  postgres = await startPostgres();
  if (!postgres) return;
  for (const id of ['a', 'b']) {
    servers[id] = await startServer([`--store=${postgres.url}`, `--server_id=${id}`,
      '--run_lease=2s', '--retry_backoff=0s', '--log=false']);
  }
  gateway = await startGateway(`${servers.a.address},${servers.b.address}`, { flags: ['--log=false'] });
  browser = await chromium.launch({
    executablePath: '/usr/bin/chromium',
    headless: true,
    args: ['--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-quic'],
  });
});
after(async () => {
  await browser?.close();
  await gateway?.stop();
  for (const server of Object.values(servers)) await server.stop();
  await postgres?.stop();
});

test('a browser\'s streams survive the death of the server they were read through', async (t) => {
  if (!postgres) return t.skip('PostgreSQL 15 is not installed');
  const page = await browser.newPage();
  const errors = [];
  page.on('pageerror', (error) => errors.push(error.message));
  await page.goto(gateway.url);
  await page.waitForSelector('#connection[data-state="live"]');
  // Four watches of one job: the gateway spreads its upstream calls over both servers, so
  // some are read through whichever server dies.
  await page.evaluate(async () => {
    const js = await import('/static/jobstream.js');
    const job = await js.submit('demo.steps', { steps: ['a', 'b', 'c', 'd'], step_ms: 600, ticks: 3 });
    window.jobId = job.id;
    window.seen = [[], [], [], []];
    window.ends = [];
    for (let i = 0; i < 4; i++) {
      js.watch(job.id, { onEvent: (e) => window.seen[i].push(Number(e.sequence)) })
        .then((end) => window.ends.push(end));
    }
  });
  // Whichever server runs the job is killed mid-run.
  const jobId = await page.evaluate(() => window.jobId);
  let running;
  for (let i = 0; i < 100; i++) {
    running = await (await fetch(`${gateway.url}/v1/jobs/${jobId}`)).json();
    if (running.state === 'RUNNING') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(running.state, 'RUNNING');
  await page.waitForFunction(() => window.seen.every((s) => s.length >= 4));
  const victim = running.workerId;
  assert.ok(victim === 'a' || victim === 'b', victim);
  await servers[victim].kill();
  const survivor = victim === 'a' ? 'b' : 'a';
  // The job's lease expires, the survivor retries it, and every watch sees it through.
  await page.waitForFunction(() => window.ends.length === 4, null, { timeout: 30000 });
  const { seen, ends } = await page.evaluate(() => ({ seen: window.seen, ends: window.ends }));
  for (const end of ends) {
    assert.equal(end.state, 'SUCCEEDED');
    assert.equal(end.workerId, survivor);
    assert.equal(end.attempt, 2);
  }
  const last = Number(ends[0].lastSequence);
  for (const s of seen) assert.deepEqual(s, Array.from({ length: last }, (_, i) => i + 1));
  // The page's row too.
  await page.waitForFunction((id) => {
    const row = document.querySelector(`#jobs tr[data-id="${id}"]`);
    return row && row.dataset.state === 'SUCCEEDED';
  }, jobId, { timeout: 10000 });
  assert.deepEqual(errors, []);
  rmSync(servers[victim].dataDir, { recursive: true, force: true });
  delete servers[victim];
  await page.close();
});
