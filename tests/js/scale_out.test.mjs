// Two servers on one PostgreSQL behind one gateway (--server=a,b): the page in a real
// browser keeps its job's progress when the server its streams were read through dies.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { freePort, launchChromium, startGateway, startPostgres, startServer } from './server.mjs';

let postgres;
const servers = {};
let gateway;
let browser;

const serverFlags = (id) => [`--store=${postgres.url}`, `--server_id=${id}`, '--run_lease=2s',
  '--retry_backoff=0s', '--log=false'];
let portB;

// The gateway knows both servers, but only "a" runs at first: every stream the page opens
// is read through "a", which dies once "b" is up.
before(async () => {
  postgres = await startPostgres();
  if (!postgres) return;
  servers.a = await startServer(serverFlags('a'));
  portB = await freePort();
  gateway = await startGateway(`${servers.a.address},127.0.0.1:${portB}`, { flags: ['--log=false'] });
  browser = await launchChromium();
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
  // Four watches of one job, all read through "a", the only server up.
  await page.evaluate(async () => {
    const js = await import('/static/jobstream.js');
    const job = await js.submit('demo.steps', { steps: ['a', 'b', 'c', 'd'], step_ms: 2000, ticks: 3 });
    window.jobId = job.id;
    window.seen = [[], [], [], []];
    window.ends = [];
    for (let i = 0; i < 4; i++) {
      js.watch(job.id, { onEvent: (e) => window.seen[i].push(Number(e.sequence)) })
        .then((end) => window.ends.push(end));
    }
  });
  const jobId = await page.evaluate(() => window.jobId);
  let running;
  for (let i = 0; i < 100; i++) {
    running = await (await fetch(`${gateway.url}/v1/jobs/${jobId}`)).json();
    if (running.state === 'RUNNING') break;
    await new Promise((r) => setTimeout(r, 50));
  }
  assert.equal(running.state, 'RUNNING');
  assert.equal(running.workerId, 'a');
  await page.waitForFunction(() => window.seen.every((s) => s.length >= 4));
  // "a" dies mid-job (at once: "b" starting first took long enough on a loaded machine for
  // "a" to finish the job); then "b" comes up where the gateway expects it. Meanwhile no
  // server is up at all, and the streams wait for one.
  await servers.a.kill();
  servers.b = await startServer(serverFlags('b'), { port: portB });
  const victim = 'a';
  const survivor = 'b';
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
