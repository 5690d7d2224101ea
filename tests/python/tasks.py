"""The functions the package tests' workers run (python -m jobstream.worker tasks:worker).

Set by the test through the environment: JOBSTREAM_SERVER and JOBSTREAM_TOKEN (read by
the package itself), TASKS_TLS_CA / TASKS_TLS_CERT / TASKS_TLS_KEY, TASKS_WORKER_ID,
TASKS_CONCURRENCY, TASKS_DRAIN_TIMEOUT, TASKS_HEARTBEAT.
"""

import asyncio
import hashlib
import os
import time

import jobstream

env = os.environ.get
tls = None
if env("TASKS_TLS_CA"):
    tls = jobstream.TLS(ca=env("TASKS_TLS_CA"), cert=env("TASKS_TLS_CERT"), key=env("TASKS_TLS_KEY"))

worker = jobstream.Worker(tls=tls, worker_id=env("TASKS_WORKER_ID"),
                          concurrency=int(env("TASKS_CONCURRENCY", "4")),
                          drain_timeout=float(env("TASKS_DRAIN_TIMEOUT", "10")),
                          heartbeat=float(env("TASKS_HEARTBEAT", "0.3")), poll=0.5)


def pattern(size):
    """`size` bytes the test can make again: sha256("jobstream") repeated."""
    block = hashlib.sha256(b"jobstream").digest() * 32768  # 1 MiB
    whole, rest = divmod(size, len(block))
    return [block] * whole + ([block[:rest]] if rest else [])


def note(params, text):
    if params.get("marker"):
        with open(params["marker"], "a") as f:
            f.write(text + "\n")


@worker.task("py.steps")
def steps(ctx, params):
    n = int(params.get("steps", 3))
    for i in range(n):
        ctx.step("step %d" % (i + 1), index=i + 1, count=n, fraction=i / n)
        time.sleep(float(params.get("sleep", 0)))
    ctx.progress(1.0, "done")
    if params.get("fail") == "fatal":
        raise jobstream.Fatal("cannot do it")
    if params.get("fail") == "retry" and ctx.attempt == 1:
        raise jobstream.Retryable("try again")
    if params.get("fail") == "crash":
        raise KeyError("boom")
    return {"steps": n, "attempt": ctx.attempt, "worker": worker.worker_id}


@worker.task("py.block")
def block(ctx, params):
    """Runs `seconds` (default: until cancelled), or until the file params.gate exists,
    writing what happens to params.marker."""
    note(params, "started %d" % ctx.attempt)
    end = time.monotonic() + float(params.get("seconds", 600))
    gate = params.get("gate")
    while time.monotonic() < end and not (gate and os.path.exists(gate)):
        if ctx.cancelled:
            note(params, "cancelled %d" % ctx.attempt)
            raise jobstream.Cancelled()
        time.sleep(0.02)
    note(params, "finished %d" % ctx.attempt)
    return {"attempt": ctx.attempt}


@worker.task("py.files")
def files(ctx, params):
    """Writes an artifact of params.size bytes through ctx.artifact, and uploads params.path."""
    with ctx.artifact(params.get("name", "out.bin"), "application/octet-stream") as f:
        for chunk in pattern(int(params["size"])):
            f.write(chunk)
    if params.get("path"):
        ctx.upload(params["path"])
    return {"size": params["size"]}


@worker.task("py.async")
async def async_steps(ctx, params):
    await ctx.step("one", index=1, count=2)
    await asyncio.sleep(0.01)
    await ctx.step("two", index=2, count=2, fraction=0.5)
    await ctx.progress(0.75, "most of it")
    if params.get("fail"):
        raise jobstream.Fatal("async failure")
    return {"async": True, "attempt": ctx.attempt}
