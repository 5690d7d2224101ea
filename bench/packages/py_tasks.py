"""The no-op functions the package bench's Python workers run: `noop` as a plain function
(threads), or as `async def` (asyncio) when BENCH_ASYNC is set."""
import os

import jobstream

worker = jobstream.Worker(concurrency=int(os.environ.get("BENCH_CONCURRENCY", "8")),
                          worker_id="bench-py")

if os.environ.get("BENCH_ASYNC"):
    @worker.task("noop")
    async def noop(ctx, params):
        return {"n": params.get("n")}
else:
    @worker.task("noop")
    def noop(ctx, params):
        return {"n": params.get("n")}
