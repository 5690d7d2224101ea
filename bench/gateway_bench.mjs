// Gateway benchmark (not a test): SSE connections one jobstream-gateway holds and their
// memory, events/s to 1,000 SSE clients, and worker-progress -> SSE-client latency at
// 10,000 reports/s, beside the same latency through the hand-rolled pattern (a dict and
// an SSE loop polling it once a second, bench/baseline/poll_dict.py).
//
//   (ulimit -n 20000; cd tests/js && node ../../bench/gateway_bench.mjs)
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import { ROOT, startServer, startGateway } from '../tests/js/server.mjs';

const args = Object.fromEntries(process.argv.slice(2).map((a) => a.replace(/^--/, '').split('=')));
const HOLD = Number(args.connections ?? 10000);
const CLIENTS = Number(args.clients ?? 1000);
const RATE = Number(args.rate ?? 10000);

const line = (s) => console.log(s);
let jobstreamReports = 0;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const pct = (values, q) => {
  if (values.length === 0) return NaN;
  const sorted = Float64Array.from(values).sort();
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
};
const rssMb = (pid) => Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))[1]) / 1024;

// A minimal SSE client on a raw socket: onEvent(dataText, receivedAtMs) per event.
function sse(url, onEvent, onEnd = () => {}) {
  const { hostname, port, pathname, search } = new URL(url);
  const socket = net.connect(Number(port), hostname);
  socket.setNoDelay(true);
  let buffer = '';
  let headerDone = false;
  socket.on('connect', () => socket.write(`GET ${pathname}${search} HTTP/1.1\r\nHost: ${hostname}\r\nAccept: text/event-stream\r\n\r\n`));
  socket.on('data', (chunk) => {
    const now = performance.timeOrigin + performance.now();
    buffer += chunk.toString('utf8');
    if (!headerDone) {
      const end = buffer.indexOf('\r\n\r\n');
      if (end < 0) return;
      buffer = buffer.slice(end + 4);
      headerDone = true;
    }
    let at;
    while ((at = buffer.indexOf('\n\n')) >= 0) {
      const block = buffer.slice(0, at);
      buffer = buffer.slice(at + 2);
      const data = block.split('\n').filter((l) => l.startsWith('data: ')).map((l) => l.slice(6)).join('\n');
      if (data) onEvent(data, now);
    }
  });
  socket.on('close', onEnd);
  socket.on('error', () => {});
  return socket;
}

async function submitJob(url, params, runAt) {
  const body = { type: 'demo.steps', params, ...(runAt ? { runAt } : {}) };
  const response = await fetch(`${url}/v1/jobs`, { method: 'POST', body: JSON.stringify(body) });
  return (await response.json()).id;
}

const server = await startServer();
const gateway = await startGateway(server.address, { flags: ['--threads=2'] });
const gatewayPid = Number(/^(\d+)/.exec(
  (await import('node:child_process')).execSync(
    `ss -ltnp 'sport = :${gateway.port}' | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2`).toString())[1]);
line(`Run on ${new Date().toISOString().slice(0, 16).replace('T', ' ')} UTC; connections=${HOLD}, clients=${CLIENTS}, rate=${RATE}/s.`);
line('');

// 1. Connections held: idle SSE streams on one waiting job.
{
  const job = await submitJob(gateway.url, {}, new Date(Date.now() + 3600e3).toISOString());
  await sleep(500);
  const before = rssMb(gatewayPid);
  let open = 0;
  const sockets = [];
  for (let i = 0; i < HOLD; i++) {
    let counted = false;
    sockets.push(sse(`${gateway.url}/v1/jobs/${job}/events`, () => { if (!counted) { counted = true; open++; } }));
    if (i % 500 === 499) await sleep(50);
  }
  const deadline = Date.now() + 60000;
  while (open < HOLD && Date.now() < deadline) await sleep(100);
  await sleep(1000);
  const after = rssMb(gatewayPid);
  const metrics = await (await fetch(`${gateway.url}/metrics`)).text();
  const upstream = /^jobstream_gateway_upstream_streams_open (\d+)$/m.exec(metrics)[1];
  line('| SSE connections held | figure |');
  line('| --- | --- |');
  line(`| open streams, each got its first event | ${open} of ${HOLD} |`);
  line(`| upstream WatchJob streams for them | ${upstream} |`);
  line(`| gateway RSS before / after | ${before.toFixed(1)} MB / ${after.toFixed(1)} MB |`);
  line(`| gateway memory per SSE connection | ${((after - before) * 1024 / Math.max(open, 1)).toFixed(1)} KB |`);
  line('');
  for (const s of sockets) s.destroy();
  await fetch(`${gateway.url}/v1/jobs/${job}:cancel`, { method: 'POST' });
  await sleep(1500);
}

// 2. Fan-out: CLIENTS SSE clients of one job reporting 100 events/s for 5 s.
{
  const job = await submitJob(gateway.url, { steps: ['report'], step_ms: 5000, ticks: 500 },
    new Date(Date.now() + 3000).toISOString());
  let delivered = 0;
  let ended = 0;
  const latencies = [];
  for (let i = 0; i < CLIENTS; i++) {
    sse(`${gateway.url}/v1/jobs/${job}/events`, (data, now) => {
      const event = JSON.parse(data);
      if (event.type !== 'PROGRESS') return;
      delivered++;
      if (i % 10 === 0) latencies.push(now - Date.parse(event.time));
    }, () => { ended++; });
  }
  const deadline = Date.now() + 30000;
  while (ended < CLIENTS && Date.now() < deadline) await sleep(100);
  line('| fan-out to SSE clients | figure |');
  line('| --- | --- |');
  line(`| clients of one job (streams ended after the terminal event) | ${CLIENTS} (${ended}) |`);
  line(`| PROGRESS events delivered, all clients | ${delivered} of ${500 * CLIENTS} (${(delivered / 5).toFixed(0)}/s) |`);
  line(`| commit -> SSE receive p50 / p99 (every 10th client) | ${pct(latencies, 0.5).toFixed(2)} ms / ${pct(latencies, 0.99).toFixed(2)} ms |`);
  line('');
}

// 3. Latency at RATE reports/s: jobstream vs the polling baseline, 10 clients each.
const latencyJobstream = [];
{
  // demo.steps takes at most 1,000 ticks a step: 50 steps of 100 ms make 5 s at RATE.
  const steps = Array.from({ length: 50 }, (_, i) => `s${i + 1}`);
  const job = await submitJob(gateway.url, { steps, step_ms: 100, ticks: Math.round(RATE / 10) },
    new Date(Date.now() + 1500).toISOString());
  let ended = 0;
  for (let i = 0; i < 10; i++) {
    sse(`${gateway.url}/v1/jobs/${job}/events`, (data, now) => {
      const event = JSON.parse(data);
      if (event.type === 'PROGRESS') latencyJobstream.push(now - Date.parse(event.time));
      if (i === 0 && event.type === 'PROGRESS') jobstreamReports++;
    }, () => { ended++; });
  }
  const deadline = Date.now() + 30000;
  while (ended < 10 && Date.now() < deadline) await sleep(100);
}
await gateway.stop();
await server.stop();

const latencyBaseline = [];
{
  const port = 20000 + Math.floor(Math.random() * 20000);
  const child = spawn('python3', [path.join(ROOT, 'bench/baseline/poll_dict.py'), String(port)],
    { stdio: ['ignore', 'pipe', 'ignore'] });
  await new Promise((r) => readline.createInterface({ input: child.stdout }).once('line', r));
  await sleep(500);
  const base = `http://127.0.0.1:${port}`;
  const { id } = await (await fetch(`${base}/jobs/${RATE}/5`, { method: 'POST' })).json();
  let ended = 0;
  for (let i = 0; i < 10; i++) {
    // Every report between two polls reaches the client at the later poll: assume reports
    // evenly spread between the two snapshots' times and count each one's wait.
    let previous = null;
    sse(`${base}/jobs/${id}/events`, (data, now) => {
      const s = JSON.parse(data);
      if (previous && s.count > previous.count) {
        const n = s.count - previous.count;
        for (let k = 1; k <= n; k += Math.max(1, Math.floor(n / 200))) {
          const reported = (previous.time + (s.time - previous.time) * (k / n)) * 1000;
          latencyBaseline.push(now - reported);
        }
      }
      previous = s;
    }, () => { ended++; });
  }
  const deadline = Date.now() + 30000;
  while (ended < 10 && Date.now() < deadline) await sleep(100);
  child.kill();
}
line(`| progress -> client latency at ${RATE} reports/s, 10 clients | p50 | p99 |`);
line('| --- | --- | --- |');
line(`| jobstream (worker report -> commit -> gateway -> SSE) | ${pct(latencyJobstream, 0.5).toFixed(2)} ms | ${pct(latencyJobstream, 0.99).toFixed(2)} ms |`);
line(`| dict + SSE loop polling once a second (Flask) | ${pct(latencyBaseline, 0.5).toFixed(2)} ms | ${pct(latencyBaseline, 0.99).toFixed(2)} ms |`);
line(`| PROGRESS events one jobstream client received (the rest were coalesced before commit) | ${jobstreamReports} | |`);
line(`| ratio (baseline / jobstream) | ${(pct(latencyBaseline, 0.5) / pct(latencyJobstream, 0.5)).toFixed(0)}x | ${(pct(latencyBaseline, 0.99) / pct(latencyJobstream, 0.99)).toFixed(0)}x |`);
process.exit(0);
