// The gateway's WebSocket streams, with a client written here (Node's `ws`): every event
// once across a gateway restart with ?after=, the many-jobs stream, pings, refusals
// before the upgrade, and a client that sends garbage.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startServer, startGateway } from './server.mjs';

let server;
let gateway;
before(async () => {
  server = await startServer(['--retry_backoff=0s']);
  gateway = await startGateway(server.address, { flags: ['--heartbeat=300ms'] });
});
after(async () => {
  await gateway.stop();
  assert.equal(await server.stop(), 0);
});

const submit = async (params) => {
  const response = await fetch(`${gateway.url}/v1/jobs`, {
    method: 'POST', headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ type: 'demo.steps', params }),
  });
  assert.equal(response.status, 202);
  return (await response.json()).id;
};

// A WebSocket and what it received: messages (parsed), pings, and how it closed.
function connect(url) {
  const ws = new WebSocket(url);
  const got = { ws, messages: [], pings: 0 };
  got.opened = new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('unexpected-response', (req, res) => resolve({ refused: res.statusCode }));
    ws.once('error', reject);
  });
  got.closed = new Promise((resolve) => ws.once('close', (code, reason) => resolve({ code, reason: String(reason) })));
  ws.on('message', (data, binary) => {
    assert.equal(binary, false, 'events are text messages');
    got.messages.push(JSON.parse(String(data)));
  });
  ws.on('ping', () => got.pings++);
  return got;
}

const until = async (pred, ms = 10000) => {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
};

test('a job\'s events arrive once each, in order, across a gateway restart with ?after=', async () => {
  const id = await submit({ steps: ['a', 'b', 'c', 'd'], step_ms: 400, ticks: 4 });
  const wsUrl = () => `ws://${gateway.address}/v1/jobs/${id}/ws`;
  const first = connect(wsUrl());
  await first.opened;
  await until(() => first.messages.some((m) => m.type === 'STEP' && m.status.progress.step === 'b'));
  // The gateway dies mid-job; a new one comes up where it was.
  const port = gateway.port;
  await gateway.kill();
  const lost = await first.closed;
  assert.notEqual(lost.code, 1000);
  gateway = await startGateway(server.address, { port, flags: ['--heartbeat=300ms'] });
  const last = Number(first.messages.at(-1).sequence);
  const second = connect(`${wsUrl()}?after=${last}`);
  await second.opened;
  const end = await second.closed;
  assert.equal(end.code, 1000);
  assert.match(end.reason, /finished/);
  const all = [...first.messages, ...second.messages];
  assert.deepEqual(all.map((m) => Number(m.sequence)), all.map((_, i) => i + 1));
  assert.equal(all[0].type, 'CREATED');
  assert.equal(all.at(-1).type, 'SUCCEEDED');
  assert.ok(all.every((m) => m.jobId === id));
  // Reading a finished job to its end again: a normal close and nothing more.
  const again = connect(`${wsUrl()}?after=${all.length}`);
  assert.equal((await again.closed).code, 1000);
  assert.equal(again.messages.length, 0);
});

test('/v1/ws carries every job of the filter, with pings while idle', async () => {
  const events = connect(`ws://${gateway.address}/v1/ws?type=demo.steps`);
  await events.opened;
  const id = await submit({ steps: ['a'], step_ms: 100, ticks: 1 });
  await until(() => events.messages.some((m) => m.jobId === id && m.type === 'SUCCEEDED'));
  const types = events.messages.filter((m) => m.jobId === id).map((m) => m.type);
  assert.deepEqual(types.slice(0, 2), ['CREATED', 'STARTED']);
  // Idle: the gateway pings (every --heartbeat), the client answers, the stream stays.
  await until(() => events.pings >= 2, 5000);
  assert.equal(events.ws.readyState, WebSocket.OPEN);
  events.ws.close(1000);
  assert.equal((await events.closed).code, 1000);
});

test('refusals come before the upgrade, as HTTP', async () => {
  const unknown = connect(`ws://${gateway.address}/v1/jobs/01m8488yd72g1c1chq6xp84ke3/ws`);
  assert.deepEqual(await unknown.opened, { refused: 404 });
  const badFilter = connect(`ws://${gateway.address}/v1/ws?type=${encodeURIComponent('bad type!')}`);
  assert.deepEqual(await badFilter.opened, { refused: 400 });
  const badAfter = connect(`ws://${gateway.address}/v1/jobs/01m8488yd72g1c1chq6xp84ke3/ws?after=x`);
  assert.deepEqual(await badAfter.opened, { refused: 400 });
  const plain = await fetch(`${gateway.url}/v1/ws`);
  assert.equal(plain.status, 426);
  assert.equal(plain.headers.get('upgrade'), 'websocket');
});

test('a client that sends anything is closed: 1008 for text, 1003 for binary', async () => {
  const id = await submit({ steps: ['a'], step_ms: 5000, ticks: 0 });
  const text = connect(`ws://${gateway.address}/v1/jobs/${id}/ws`);
  await text.opened;
  text.ws.send('hello');
  assert.equal((await text.closed).code, 1008);
  const binary = connect(`ws://${gateway.address}/v1/ws`);
  await binary.opened;
  binary.ws.send(Buffer.from([1, 2, 3]));
  assert.equal((await binary.closed).code, 1003);
  await fetch(`${gateway.url}/v1/jobs/${id}:cancel`, { method: 'POST' });
});
