// Schedules through the real gateway, as a web app or curl would use them: create (201 +
// Location), read, list, pause/resume/trigger, update, delete, and bad input as a 400
// that names the field, with nothing created; and jobstream.js's schedule calls in a
// real browser.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launchChromium, startServer, startGateway } from './server.mjs';

let server;
let gateway;
before(async () => {
  server = await startServer();
  gateway = await startGateway(server.address);
});
after(async () => {
  await gateway.stop();
  assert.equal(await server.stop(), 0);
});

const call = async (method, path, body) => {
  const response = await fetch(`${gateway.url}${path}`, {
    method,
    headers: body === undefined ? {} : { 'Content-Type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : null };
};
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const jobsOf = async (id) => (await call('GET',
  `/v1/jobs?label=${encodeURIComponent(`jobstream/schedule:${id}`)}&pageSize=1000`)).body.jobs ?? [];

test('a schedule made, run, changed and removed over HTTP', async () => {
  const created = await call('POST', '/v1/schedules', {
    id: 'every-second', interval: '1s', overlap: 'ALLOW',
    job: { type: 'demo.steps', params: { steps: ['a'], step_ms: 0, ticks: 0 }, labels: { team: 'web' } },
  });
  assert.equal(created.status, 201, JSON.stringify(created.body));
  assert.equal(created.headers.get('location'), '/v1/schedules/every-second');
  assert.equal(created.body.catchUp, 'SKIP_MISSED');
  assert.equal(created.body.nextFireTimes.length, 5);

  await sleep(2600);
  const paused = await call('POST', '/v1/schedules/every-second:pause');
  assert.equal(paused.status, 200);
  assert.equal(paused.body.paused, true);
  assert.equal(paused.body.nextFireTimes, undefined, 'a paused schedule has no next fire');
  const jobs = await jobsOf('every-second');
  assert.ok(jobs.length >= 2, `${jobs.length} jobs`);
  for (const job of jobs) {
    assert.equal(job.labels.team, 'web');
    assert.match(job.labels['jobstream/fire-time'], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  }
  const fireTimes = new Set(jobs.map((j) => j.labels['jobstream/fire-time']));
  assert.equal(fireTimes.size, jobs.length, 'one job per fire time');

  const got = await call('GET', '/v1/schedules/every-second');
  assert.ok(Number(got.body.firedCount) >= 2);
  assert.equal(got.body.lastJobId, jobs[0].id, 'the newest job is the last fire\'s');

  const triggered = await call('POST', '/v1/schedules/every-second:trigger');
  assert.equal(triggered.status, 202);
  assert.equal(triggered.headers.get('location'), `/v1/jobs/${triggered.body.id}`);
  assert.equal(triggered.body.labels['jobstream/trigger'], 'manual');

  const updated = await call('PUT', '/v1/schedules/every-second', {
    cron: '0 12 * * SAT,SUN', timeZone: 'America/Sao_Paulo',
    job: { type: 'demo.steps' },
  });
  assert.equal(updated.status, 200, JSON.stringify(updated.body));
  assert.equal(updated.body.cron, '0 12 * * SAT,SUN');
  assert.equal(updated.body.paused, true, 'an update keeps the schedule paused');
  const resumed = await call('POST', '/v1/schedules/every-second:resume');
  for (const t of resumed.body.nextFireTimes) {
    const when = new Date(t);
    assert.equal(when.getUTCHours(), 15, `${t}: noon in São Paulo (UTC-3)`);
    assert.ok([0, 6].includes(when.getUTCDay()), `${t} is a weekend`);
  }
  const listed = await call('GET', '/v1/schedules?pageSize=10');
  assert.deepEqual(listed.body.schedules.map((s) => s.id), ['every-second']);

  assert.equal((await call('DELETE', '/v1/schedules/every-second')).status, 204);
  const gone = await call('GET', '/v1/schedules/every-second');
  assert.equal(gone.status, 404);
  assert.match(gone.body.message, /no schedule "every-second"/);
});

test('bad schedules are a 400 naming the field, and nothing is created', async () => {
  const bad = [
    [{ cron: '0 25 * * *', job: { type: 'demo.steps' } }, /cron hour field "25": 25 is out of range 0-23/],
    [{ cron: '0 9 * * *', timeZone: 'Moon/Tranquility', job: { type: 'demo.steps' } }, /schedule.time_zone/],
    [{ interval: '1s', job: { type: 'nothing.here' } }, /schedule.job: /],
    [{ interval: '1s' }, /schedule.job.type is required/],
    [{ interval: '0.5s', job: { type: 'demo.steps' } }, /whole seconds/],
    [{ interval: 'soon', job: { type: 'demo.steps' } }, /interval/],
    [{ id: 'UPPER', interval: '1s', job: { type: 'demo.steps' } }, /schedule.id "UPPER"/],
  ];
  for (const [body, message] of bad) {
    const response = await call('POST', '/v1/schedules', body);
    assert.equal(response.status, 400, JSON.stringify(body));
    assert.match(response.body.message, message);
  }
  const put = await call('PUT', '/v1/schedules/a', { id: 'b', interval: '1s', job: { type: 'demo.steps' } });
  assert.equal(put.status, 400);
  assert.match(put.body.message, /the body's id "b" is not the path's/);
  assert.equal((await call('POST', '/v1/schedules/missing:trigger')).status, 404);
  assert.equal((await call('PATCH', '/v1/schedules')).status, 405);
  const listed = await call('GET', '/v1/schedules');
  assert.equal(listed.status, 200);
  assert.equal((listed.body.schedules ?? []).length, 0);
});

test('jobstream.js makes, lists, triggers and removes schedules from a page', async () => {
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    await page.goto(gateway.url);
    const seen = await page.evaluate(async () => {
      const js = await import('/static/jobstream.js');
      const made = await js.createSchedule({
        id: 'from-page', cron: '*/5 * * * *', job: { type: 'demo.steps' }, paused: true,
      });
      const listed = await js.listSchedules();
      const job = await js.triggerSchedule('from-page');
      const resumed = await js.resumeSchedule('from-page');
      const paused = await js.pauseSchedule('from-page');
      const updated = await js.updateSchedule('from-page', { interval: '3600s', job: { type: 'demo.steps' } });
      const got = await js.getSchedule('from-page');
      await js.deleteSchedule('from-page');
      let refused;
      try {
        await js.createSchedule({ cron: 'nonsense', job: { type: 'demo.steps' } });
      } catch (e) {
        refused = { name: e.name, httpStatus: e.httpStatus, message: e.message };
      }
      return {
        made, ids: listed.schedules.map((s) => s.id), job, resumed, paused, updated, got,
        after: (await js.listSchedules()).schedules ?? [], refused,
      };
    });
    assert.equal(seen.made.paused, true);
    assert.deepEqual(seen.ids, ['from-page']);
    assert.equal(seen.job.labels['jobstream/schedule'], 'from-page');
    assert.equal(seen.resumed.nextFireTimes.length, 5);
    for (const t of seen.resumed.nextFireTimes) assert.equal(new Date(t).getUTCMinutes() % 5, 0);
    assert.equal(seen.paused.paused, true);
    assert.equal(seen.updated.interval, '3600s');
    assert.equal(seen.got.lastJobId, seen.job.id);
    assert.deepEqual(seen.after, []);
    assert.equal(seen.refused.name, 'JobstreamError');
    assert.equal(seen.refused.httpStatus, 400);
    assert.match(seen.refused.message, /needs 5 fields/);
  } finally {
    await browser.close();
  }
});

test('the page makes a schedule, shows its fires, pauses, triggers and deletes it', async () => {
  const browser = await launchChromium();
  try {
    const page = await browser.newPage();
    const errors = [];
    page.on('pageerror', (error) => errors.push(error.message));
    await page.goto(gateway.url);
    await page.waitForSelector('#connection[data-state="live"]');
    await page.waitForSelector('#schedule-type option[value="demo.steps"]', { state: 'attached' });
    const jobRows = () => page.locator('#jobs tbody tr').count();
    const jobsBefore = await jobRows();

    // A bad cron expression: the form says why, nothing is made.
    await page.selectOption('#schedule-form select[name="kind"]', 'cron');
    await page.fill('#schedule-form input[name="cron"]', '0 0 31 2 *');
    await page.click('#schedule-form button[type="submit"]');
    await page.waitForSelector('#schedule-result.error');
    assert.match(await page.textContent('#schedule-result'), /never fires/);

    await page.selectOption('#schedule-form select[name="kind"]', 'every');
    await page.fill('#schedule-form input[name="id"]', 'page-tick');
    await page.fill('#schedule-form input[name="every"]', '1s');
    await page.fill('#schedule-form input[name="params"]', '{"steps": ["a"], "step_ms": 0, "ticks": 0}');
    await page.selectOption('#schedule-form select[name="overlap"]', 'ALLOW');
    await page.click('#schedule-form button[type="submit"]');
    await page.waitForSelector('#schedules tr[data-id="page-tick"]');
    assert.equal(await page.textContent('#schedule-result'), 'created page-tick');
    assert.equal(await page.textContent('#schedules tr[data-id="page-tick"] .when'), 'every 1s');
    // Its fires show as they happen, and their jobs appear in the jobs table.
    await page.waitForFunction(() => {
      const counts = document.querySelector('#schedules tr[data-id="page-tick"] .counts');
      return counts && Number(counts.textContent.split('/')[0]) >= 2;
    }, null, { timeout: 15000 });
    await page.waitForFunction((n) => document.querySelectorAll('#jobs tbody tr').length >= n + 2,
      jobsBefore, { timeout: 15000 });
    assert.match(await page.textContent('#schedules tr[data-id="page-tick"] .last'), / \w{26}$/);

    await page.click('#schedules tr[data-id="page-tick"] button.pause');
    await page.waitForSelector('#schedules tr[data-id="page-tick"][data-paused="true"]');
    assert.equal(await page.textContent('#schedules tr[data-id="page-tick"] .next'), 'paused');
    const paused = await jobRows();
    await page.click('#schedules tr[data-id="page-tick"] button.trigger');
    await page.waitForFunction((n) => document.querySelectorAll('#jobs tbody tr').length >= n + 1,
      paused, { timeout: 15000 });

    await page.click('#schedules tr[data-id="page-tick"] button.delete');
    await page.waitForSelector('#schedules tr[data-id="page-tick"]', { state: 'detached' });
    assert.equal(await page.isVisible('#schedules-empty'), true);
    assert.deepEqual(errors, []);
  } finally {
    await browser.close();
  }
});
