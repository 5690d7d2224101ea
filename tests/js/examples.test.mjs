// examples/flask and examples/fastapi in a real browser: each app (on the Python package,
// from the venv the python_package fixture makes) answers POST /draw with 202 + Location,
// and its page follows the job over the gateway's SSE to the drawing the worker attached.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { BIN_DIR, ROOT, freePort, launchChromium, startGateway, startServer } from './server.mjs';

const PYTHON = path.join(BIN_DIR, 'python-venv', 'bin', 'python');
const children = [];
let server;
let browser;

function spawnPython(args, cwd, env) {
  const child = spawn(PYTHON, args, { cwd, env: { ...process.env, ...env }, stdio: ['ignore', 'inherit', 'inherit'] });
  child.exited = new Promise((resolve) => child.once('exit', resolve));
  children.push(child);
  return child;
}

async function until(what, check, ms = 60000) {
  for (const end = Date.now() + ms; Date.now() < end; await new Promise((r) => setTimeout(r, 50))) {
    if (await check().catch(() => false)) return;
  }
  throw new Error(`timed out waiting for ${what}`);
}

before(async () => {
  server = await startServer([`--config=${path.join(ROOT, 'examples/draw/config.json')}`]);
  spawnPython(['-m', 'jobstream.worker', 'worker:worker'], path.join(ROOT, 'examples/draw'),
    { JOBSTREAM_SERVER: server.address });
  browser = await launchChromium();
});
after(async () => {
  for (const child of children) if (child.exitCode === null) child.kill('SIGKILL');
  await Promise.all(children.map((c) => c.exited));
  await browser?.close();
  await server.stop();
});

const apps = {
  flask: (port) => [['app.py', `--port=${port}`], path.join(ROOT, 'examples/flask')],
  fastapi: (port) => [['-m', 'uvicorn', 'app:app', '--host=127.0.0.1', `--port=${port}`],
    path.join(ROOT, 'examples/fastapi')],
};

for (const [name, command] of Object.entries(apps)) {
  test(`${name}: POST /draw answers 202 + Location, and the page follows the job to its drawing`, async () => {
    const port = await freePort();
    const app = `http://127.0.0.1:${port}`;
    const gateway = await startGateway(server.address, { flags: [`--cors_origins=${app}`] });
    const [args, cwd] = command(port);
    const child = spawnPython(args, cwd, { JOBSTREAM_SERVER: server.address, JOBSTREAM_GATEWAY: gateway.url });
    try {
      await until(`${name} to answer`, async () => (await fetch(app)).status === 200);

      const post = (body, headers = {}) => fetch(`${app}/draw`, { method: 'POST', body,
        headers: { 'Content-Type': 'application/json', ...headers } });
      for (const bad of ['{"prompt": ""}', '{"prompt": 7}', '[1]', 'not json', `{"prompt": "${'x'.repeat(201)}"}`]) {
        const refused = await post(bad);
        assert.equal(refused.status, 400, bad);
        assert.match((await refused.json()).error, /prompt: a string of 1 to 200 characters/);
      }
      const made = await post('{"prompt": "a red kite"}', { 'Idempotency-Key': `${name}-once` });
      assert.equal(made.status, 202);
      const job = await made.json();
      assert.equal(made.headers.get('location'), `/draw/${job.id}`);
      assert.equal(job.events, `${gateway.url}/v1/jobs/${job.id}/events`);
      const again = await (await post('{"prompt": "a red kite"}', { 'Idempotency-Key': `${name}-once` })).json();
      assert.equal(again.id, job.id, 'a retried POST with its Idempotency-Key makes no second job');
      assert.equal((await fetch(`${app}/draw/not-an-id`)).status, 400);
      assert.equal((await fetch(`${app}/draw/${'0'.repeat(26)}`)).status, 404);
      await until('the first job to end', async () => (await (await fetch(`${app}${made.headers.get('location')}`)).json()).state === 'SUCCEEDED');
      const done = await (await fetch(`${app}/draw/${job.id}`)).json();
      assert.deepEqual(done.result, { prompt: 'a red kite', strokes: 12 });

      const page = await browser.newPage();
      await page.goto(app);
      await page.fill('input[name=prompt]', `a ${name} lighthouse`);
      // Every state the page shows, recorded as it changes (a poll could miss them on a
      // busy machine): progress arrives while it draws, then the drawing.
      await page.evaluate(() => {
        window.shown = [];
        const note = () => window.shown.push([document.getElementById('state').textContent,
          document.getElementById('bar').value]);
        new MutationObserver(note).observe(document.body, { subtree: true, childList: true,
          characterData: true, attributes: true });
      });
      await page.click('button');
      await page.waitForSelector('#picture img', { timeout: 60000 });
      const shown = await page.evaluate(() => window.shown);
      assert.ok(shown.some(([state, bar]) => /stroke \d+ of 12/.test(state) && bar > 0 && bar < 1),
        `progress shown while it drew: ${JSON.stringify(shown.slice(0, 5))}`);
      await page.waitForFunction(() => document.querySelector('#picture img').naturalWidth === 300, null, { timeout: 30000 });
      assert.match(await page.textContent('#state'), /^SUCCEEDED/);
      assert.equal(await page.$eval('#bar', (bar) => bar.value), 1);
      assert.equal(await page.textContent('#error'), '');
      await page.close();
    } finally {
      child.kill('SIGTERM');
      await child.exited;
      await gateway.stop();
    }
  });
}
