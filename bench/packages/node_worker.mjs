// The package bench's Node worker: a no-op function on the jobstream npm package.
import { Worker } from '../../clients/js/index.js';

const worker = new Worker(process.argv[2], { concurrency: Number(process.argv[3] ?? 8), workerId: 'bench-node' });
worker.task('noop', (ctx, params) => ({ n: params.n ?? null }));
await worker.run();
