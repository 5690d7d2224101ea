// Compiled by `tsc --noEmit --strict` in ctest (js_package_types): what a TypeScript user
// writes against the package's declarations. Not run.
import { Client, Worker, JobFailed, Fatal, type Job, type JobEvent, type JsonObject } from 'jobstream';

async function main(): Promise<void> {
  const client = new Client('127.0.0.1:50051', { token: 'secret', tls: { ca: 'ca.pem' }, retryFor: 30 });
  const job: Job = await client.submit('report.generate', { month: '2026-11' },
    { labels: { team: 'web' }, delay: 5, dependsOn: ['01m98snjrsqvrvy0j408cqnk8m'], uniqueFor: 'active' });
  for await (const event of client.watch(job.id, { after: 0 })) {
    const e: JobEvent = event;
    console.log(e.type, e.sequence, e.status.progress?.fraction);
  }
  try {
    const result = await client.result(job.id, { timeout: 60 });
    console.log(result);
  } catch (e) {
    if (e instanceof JobFailed) console.log(e.job.error?.message, e.code);
  }
  const { parent, childIds } = await client.submitBatch([{ type: 'chunk', params: { n: 1 } }],
    { then: { type: 'stitch' } });
  for await (const child of client.list({ parent, states: ['FAILED'], pageSize: 100 })) console.log(child.id);
  await client.createSchedule({ id: 'nightly', cron: '0 2 * * *', job: { type: 'report', concurrencyKey: 'acme' } });
  const artifact = await client.fetchArtifact(job.id, 'out.pdf', '/tmp/out.pdf');
  console.log(childIds.length, artifact.sha256);

  const worker = new Worker(undefined, { concurrency: 8, drainTimeout: 10 });
  worker.task('report.generate', async (ctx, params: JsonObject) => {
    await ctx.step('render', { index: 1, count: 2 });
    await ctx.progress(0.5, 'half');
    if (ctx.cancelled) ctx.check();
    if (params.bad) throw new Fatal('bad params');
    await ctx.upload('/tmp/out.pdf', { contentType: 'application/pdf' });
    return { pages: 3 };
  });
  await worker.run();
}

void main();
