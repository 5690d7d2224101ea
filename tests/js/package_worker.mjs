// A worker made with the jobstream npm package (clients/js), run by package.test.mjs as a
// process: JOBSTREAM_SERVER and JOBSTREAM_TOKEN (read by the package), TASKS_* below.
import { appendFileSync, existsSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { tmpdir } from 'node:os';
import { Worker, Fatal, Retryable, Cancelled } from '../../clients/js/index.js';

const env = process.env;
const tls = env.TASKS_TLS_CA ? { ca: env.TASKS_TLS_CA, cert: env.TASKS_TLS_CERT, key: env.TASKS_TLS_KEY } : undefined;
const worker = new Worker(undefined, { tls, workerId: env.TASKS_WORKER_ID ?? 'js-0',
  concurrency: Number(env.TASKS_CONCURRENCY ?? 4), drainTimeout: Number(env.TASKS_DRAIN_TIMEOUT ?? 10),
  heartbeat: 0.3, poll: 0.5 });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const note = (params, text) => params.marker && appendFileSync(params.marker, `${text}\n`);

worker.task('py.steps', async (ctx, params) => {
  const n = params.steps ?? 3;
  for (let i = 0; i < n; i++) {
    await ctx.step(`step ${i + 1}`, { index: i + 1, count: n, fraction: i / n });
    await sleep((params.sleep ?? 0) * 1000);
  }
  await ctx.progress(1, 'done');
  if (params.fail === 'fatal') throw new Fatal('cannot do it');
  if (params.fail === 'retry' && ctx.attempt === 1) throw new Retryable('try again');
  if (params.fail === 'crash') throw new TypeError('boom');
  return { steps: n, attempt: ctx.attempt, worker: worker.workerId };
});

worker.task('py.block', async (ctx, params) => {
  note(params, `started ${ctx.attempt}`);
  const end = Date.now() + (params.seconds ?? 600) * 1000;
  while (Date.now() < end && !(params.gate && existsSync(params.gate))) {
    if (ctx.cancelled) {
      note(params, `cancelled ${ctx.attempt}`);
      throw new Cancelled();
    }
    await sleep(20);
  }
  note(params, `finished ${ctx.attempt}`);
  return { attempt: ctx.attempt };
});

// An artifact of params.size bytes: sha256("jobstream") repeated, written to a temp file
// and uploaded.
worker.task('py.files', async (ctx, params) => {
  const file = path.join(tmpdir(), `${params.name ?? 'out.bin'}-${process.pid}-${ctx.id}`);
  const block = Buffer.concat(Array(32768).fill(
    (await import('node:crypto')).createHash('sha256').update('jobstream').digest()));
  const parts = [];
  for (let left = params.size; left > 0; left -= block.length) parts.push(block.subarray(0, Math.min(left, block.length)));
  writeFileSync(file, Buffer.concat(parts));
  try {
    await ctx.upload(file, { name: params.name ?? 'out.bin', contentType: 'application/octet-stream' });
  } finally {
    (await import('node:fs')).rmSync(file, { force: true });
  }
  return { size: params.size };
});

await worker.run();
console.error(`worker ${worker.workerId}: ${worker.done} jobs`);
