// Tokens through the real gateway in front of a server with --auth_tokens: 401 (with
// WWW-Authenticate) without a token or with a wrong one, 403 without the role, another
// tenant's job is a 404 exactly like a job that never existed on every route, /v1/events
// carries only the caller's tenant, and the /v1/session cookie (HttpOnly, SameSite=Strict)
// stands in for the header, but not from another origin.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import WebSocket from 'ws';
import { startServer, startGateway } from './server.mjs';

const sha256 = (s) => createHash('sha256').update(s).digest('hex');
const TOKENS = {
  alice: { secret: 'alice-token-0123456789', tenant: 'acme', roles: ['submit', 'read'] },
  reader: { secret: 'reader-token-0123456789', tenant: 'acme', roles: ['read'] },
  bob: { secret: 'bob-token-0123456789', tenant: 'bolt', roles: ['submit', 'read'] },
};
const NEVER = '01m81rd5kq5g91qm659eqts4b0';  // a well-formed id no job has

let server;
let gateway;
let dir;
before(async () => {
  dir = mkdtempSync(path.join(tmpdir(), 'jobstream-auth-'));
  const file = path.join(dir, 'tokens.json');
  writeFileSync(file, JSON.stringify({
    tokens: Object.entries(TOKENS).map(([name, t]) => ({
      sha256: sha256(t.secret), name, tenant: t.tenant, roles: t.roles,
    })),
  }));
  server = await startServer([`--auth_tokens=${file}`]);
  gateway = await startGateway(server.address);
});
after(async () => {
  await gateway?.stop();
  assert.equal(await server?.stop(), 0);
  rmSync(dir, { recursive: true, force: true });
});

const bearer = (who) => ({ Authorization: `Bearer ${TOKENS[who].secret}` });
const as = (who, route, init = {}) =>
  fetch(gateway.url + route, { ...init, headers: { ...(init.headers || {}), ...(who ? bearer(who) : {}) } });
const submit = async (who, params = { ticks: 0, step_ms: 0 }) => {
  const response = await as(who, '/v1/jobs', {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ type: 'demo.steps', params }),
  });
  assert.equal(response.status, 202, await response.clone().text());
  return response.json();
};
const waitDone = async (who, id) => (await as(who, `/v1/jobs/${id}:wait?timeout=30s`)).json();

test('no token or a wrong one is a 401 with WWW-Authenticate, a missing role a 403', async () => {
  for (const route of ['/v1/jobs', '/v1/types', `/v1/jobs/${NEVER}`, `/v1/jobs/${NEVER}/events`,
    '/v1/events', '/v1/session']) {
    const none = await fetch(gateway.url + route);
    assert.equal(none.status, 401, route);
    assert.match(none.headers.get('www-authenticate'), /^Bearer/);
    assert.equal((await none.json()).status, 'UNAUTHENTICATED');
    const wrong = await fetch(gateway.url + route, { headers: { Authorization: 'Bearer nope-nope' } });
    assert.equal(wrong.status, 401, route);
    await wrong.body?.cancel();
  }
  const before = (await (await as('alice', '/v1/jobs')).json()).jobs ?? [];
  const denied = await as('reader', '/v1/jobs', {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"type": "demo.steps"}',
  });
  assert.equal(denied.status, 403);
  assert.match((await denied.json()).message, /lacks the "submit" role, which Submit needs/);
  const after = (await (await as('alice', '/v1/jobs')).json()).jobs ?? [];
  assert.equal(after.length, before.length, 'nothing was submitted');
  // The health check needs no token (a load balancer has none).
  assert.equal((await fetch(`${gateway.url}/healthz`)).status, 200);
});

test("another tenant's job is a 404 exactly like one that never existed, on every route", async () => {
  const job = await submit('alice');
  await waitDone('alice', job.id);
  const routes = (id) => [
    ['GET', `/v1/jobs/${id}`], ['GET', `/v1/jobs/${id}:wait?timeout=1s`],
    ['GET', `/v1/jobs/${id}/result`], ['GET', `/v1/jobs/${id}/events`],
    ['GET', `/v1/jobs/${id}/artifacts/out.txt`], ['HEAD', `/v1/jobs/${id}/artifacts/out.txt`],
    ['POST', `/v1/jobs/${id}:cancel`], ['DELETE', `/v1/jobs/${id}`],
  ];
  const theirs = routes(job.id);
  const never = routes(NEVER);
  for (let i = 0; i < theirs.length; i++) {
    const [method, route] = theirs[i];
    const a = await as('bob', route, { method });
    const b = await as('bob', never[i][1], { method });
    assert.equal(a.status, 404, `${method} ${route}`);
    assert.equal(b.status, 404, `${method} ${never[i][1]}`);
    const bodyA = (await a.text()).replaceAll(job.id, '<id>');
    const bodyB = (await b.text()).replaceAll(NEVER, '<id>');
    assert.equal(bodyA, bodyB, `${method} ${route}`);
  }
  // A WebSocket is refused before the upgrade, the same way.
  const wsRefusal = (id) => new Promise((resolve) => {
    const ws = new WebSocket(`ws://${gateway.address}/v1/jobs/${id}/ws`, { headers: bearer('bob') });
    ws.once('unexpected-response', (_, res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: body.replaceAll(id, '<id>') }));
    });
  });
  const wsTheirs = await wsRefusal(job.id);
  assert.equal(wsTheirs.status, 404);
  assert.deepEqual(wsTheirs, await wsRefusal(NEVER));
  // Its own tenant sees it, with any of its tokens.
  assert.equal((await as('alice', `/v1/jobs/${job.id}`)).status, 200);
  assert.equal((await as('reader', `/v1/jobs/${job.id}`)).status, 200);
  const listed = await (await as('bob', '/v1/jobs')).json();
  assert.ok(!(listed.jobs ?? []).some((j) => j.id === job.id));
});

// A /v1/events stream read as it arrives: the job ids it has named so far.
async function openEvents(who) {
  const controller = new AbortController();
  const response = await as(who, '/v1/events', { signal: controller.signal });
  assert.equal(response.status, 200);
  const stream = { seen: new Set(), text: '' };
  const reading = (async () => {
    const decoder = new TextDecoder();
    try {
      for await (const chunk of response.body) {
        stream.text += decoder.decode(chunk, { stream: true });
        for (const m of stream.text.matchAll(/"jobId":"([0-9a-z]+)"/g)) stream.seen.add(m[1]);
      }
    } catch { /* aborted */ }
  })();
  stream.close = async () => { controller.abort(); await reading; };
  return stream;
}

test('/v1/events and a WebSocket carry only the caller tenant\'s jobs', async () => {
  // Alice's stream first: the gateway then has a feed of this filter that bob's must not
  // share (feeds are shared per credential).
  const alicesStream = await openEvents('alice');
  const bobsStream = await openEvents('bob');
  const ws = new WebSocket(`ws://${gateway.address}/v1/ws`, { headers: bearer('bob') });
  const wsSeen = new Set();
  ws.on('message', (data) => wsSeen.add(JSON.parse(data.toString()).jobId));
  await new Promise((resolve, reject) => { ws.once('open', resolve); ws.once('error', reject); });
  await new Promise((r) => setTimeout(r, 300));
  const alices = await submit('alice');
  const bobs = await submit('bob');
  await waitDone('alice', alices.id);
  await waitDone('bob', bobs.id);
  await new Promise((r) => setTimeout(r, 500));
  await alicesStream.close();
  await bobsStream.close();
  ws.close();
  assert.ok(alicesStream.seen.has(alices.id), alicesStream.text);
  assert.ok(!alicesStream.seen.has(bobs.id), 'alice never hears of bob\'s job');
  assert.ok(bobsStream.seen.has(bobs.id), bobsStream.text);
  assert.ok(!bobsStream.seen.has(alices.id), 'bob never hears of alice\'s job');
  assert.ok(wsSeen.has(bobs.id));
  assert.ok(!wsSeen.has(alices.id));
});

test('POST /v1/session keeps the token in an HttpOnly cookie that stands in for the header', async () => {
  const wrong = await fetch(`${gateway.url}/v1/session`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"token": "nope-nope"}',
  });
  assert.equal(wrong.status, 401);
  assert.equal(wrong.headers.get('set-cookie'), null, 'no cookie for a token the server refuses');
  const malformed = await fetch(`${gateway.url}/v1/session`, { method: 'POST', body: '{"tokn": 1}' });
  assert.equal(malformed.status, 400);
  const unsafe = await fetch(`${gateway.url}/v1/session`, {
    method: 'POST', body: JSON.stringify({ token: 'a b;c' }),
  });
  assert.equal(unsafe.status, 400);

  const login = await fetch(`${gateway.url}/v1/session`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ token: TOKENS.alice.secret }),
  });
  assert.equal(login.status, 200);
  const identity = await login.json();
  assert.deepEqual(identity, { name: 'alice', tenant: 'acme', roles: ['submit', 'read'], authRequired: true });
  const setCookie = login.headers.get('set-cookie');
  assert.match(setCookie, /^jobstream_token=alice-token-0123456789; Path=\/; Max-Age=86400; HttpOnly; SameSite=Strict$/);
  const cookie = { Cookie: setCookie.split(';')[0] };

  assert.deepEqual(await (await fetch(`${gateway.url}/v1/session`, { headers: cookie })).json(), identity);
  // The cookie submits (from this gateway's own page) and streams.
  const origin = { Origin: gateway.url, Host: gateway.address };
  const posted = await fetch(`${gateway.url}/v1/jobs`, {
    method: 'POST', headers: { ...cookie, ...origin, 'Content-Type': 'application/json' },
    body: JSON.stringify({ type: 'demo.steps', params: { ticks: 1, step_ms: 10 } }),
  });
  assert.equal(posted.status, 202);
  const job = await posted.json();
  assert.equal(job.tenant, 'acme');
  const sse = await (await fetch(`${gateway.url}/v1/jobs/${job.id}/events`, { headers: cookie })).text();
  assert.match(sse, /event: succeeded/);
  // From another origin, the cookie changes nothing.
  const foreign = await fetch(`${gateway.url}/v1/jobs`, {
    method: 'POST', headers: { ...cookie, Origin: 'http://evil.example', 'Content-Type': 'application/json' },
    body: JSON.stringify({ type: 'demo.steps' }),
  });
  assert.equal(foreign.status, 403);
  const foreignWs = new WebSocket(`ws://${gateway.address}/v1/ws`, {
    headers: { ...cookie, Origin: 'http://evil.example' },
  });
  const refused = await new Promise((resolve) => foreignWs.once('unexpected-response', (_, res) => resolve(res.statusCode)));
  assert.equal(refused, 403);
  // An Authorization header wins over the cookie.
  const asBob = await fetch(`${gateway.url}/v1/session`, { headers: { ...cookie, ...bearer('bob') } });
  assert.equal((await asBob.json()).name, 'bob');

  const logout = await fetch(`${gateway.url}/v1/session`, { method: 'DELETE', headers: cookie });
  assert.equal(logout.status, 204);
  assert.match(logout.headers.get('set-cookie'), /^jobstream_token=; Path=\/; Max-Age=0; HttpOnly/);
});

test('watchers of one job with different tokens of its tenant each get every event', async () => {
  const job = await submit('alice', { ticks: 3, step_ms: 100 });
  const [a, r] = await Promise.all(['alice', 'reader'].map(async (who) =>
    (await as(who, `/v1/jobs/${job.id}/events`)).text()));
  for (const text of [a, r]) {
    const ids = [...text.matchAll(/^id: (\d+)$/gm)].map((m) => Number(m[1]));
    assert.deepEqual(ids, Array.from({ length: ids.length }, (_, i) => i + 1));
    assert.match(text, /event: succeeded/);
  }
});

test('a token over its submit pace gets 429 with Retry-After', async () => {
  const paced = await startServer([`--auth_tokens=${path.join(dir, 'tokens.json')}`,
    // One Submit at once, then one each 10 s: under a loaded sanitizer build a request
    // took a second, so at 2 a second the bucket refilled between them and none was refused.
    '--max_submits_per_second=0.1']);
  const front = await startGateway(paced.address);
  try {
    const post = () => fetch(`${front.url}/v1/jobs`, {
      method: 'POST', headers: { ...bearer('alice'), 'Content-Type': 'application/json' },
      body: JSON.stringify({ type: 'demo.steps', params: { ticks: 0, step_ms: 0 } }),
    });
    const statuses = [];
    let refused;
    for (let i = 0; i < 4; i++) {
      const response = await post();
      statuses.push(response.status);
      if (response.status === 429) refused = response;
      else await response.body?.cancel();
    }
    assert.equal(statuses[0], 202);
    assert.ok(refused, `statuses ${statuses}`);
    const retryAfter = Number(refused.headers.get('retry-after'));
    assert.ok(Number.isInteger(retryAfter) && retryAfter >= 1 && retryAfter <= 10,
      `Retry-After ${refused.headers.get('retry-after')}: whole seconds until a Submit may go`);
    const body = await refused.json();
    assert.equal(body.status, 'RESOURCE_EXHAUSTED');
    assert.match(body.message, /--max_submits_per_second/);
  } finally {
    await front.stop();
    await paced.stop();
  }
});
