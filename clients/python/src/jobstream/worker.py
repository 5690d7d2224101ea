"""Worker: runs your functions as the jobs of EXTERNAL types.

    worker = jobstream.Worker("127.0.0.1:50051", concurrency=8)

    @worker.task("report.generate")
    def generate(ctx, params):
        ctx.step("render", count=3)
        for i in range(3):
            ctx.progress((i + 1) / 3, "page %d/3" % (i + 1))
            if ctx.cancelled:
                raise jobstream.Cancelled()
        ctx.upload("/tmp/out.pdf")
        return {"pages": 3}

    worker.run()          # or: python -m jobstream.worker mymodule:worker

A function gets (ctx, params) and returns the job's result (any JSON value). Raising
jobstream.Retryable (or any other exception) fails the attempt and the job is tried again
while its type's attempts remain; jobstream.Fatal fails it for good. `async def`
functions run as tasks on one event loop, with `await ctx.step(...)` and the rest.

The lease is the worker's: every report extends it, a heartbeat keeps it while a function
is silent, and a lease that expired or was taken over (another worker runs the job now) is
never completed by this one. SIGTERM or SIGINT drains: no new jobs are leased, jobs
leased but not started are given back (ReleaseJob), running ones get `drain_timeout`
seconds to finish, then are given back too.
"""

import argparse
import asyncio
import hashlib
import importlib
import inspect
import io
import os
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor

import grpc

from jobstream import _requests as rq
from jobstream._resume import Tries, backoff
from jobstream.connect import Connection
from jobstream.errors import JobstreamError, from_rpc_error, from_status
from jobstream.v1 import jobs_pb2, workers_pb2, workers_pb2_grpc

_CHUNK = 1 << 20  # the server's largest upload message


class Retryable(Exception):
    """The attempt failed; another may succeed (tried again while attempts remain)."""


class Fatal(Exception):
    """The job failed for good: no other attempt."""


class Cancelled(Exception):
    """A client cancelled the job (raised by ctx.check(); raise it to stop)."""


class LeaseLost(Exception):
    """The lease expired or was taken over: another worker may run the job now, and
    nothing this one reports about it counts."""


def _refused(lease, error):
    """Says on stderr that the job's ending was refused (FAILED_PRECONDITION: the lease is
    gone; another worker has the job)."""
    print("jobstream worker: job %s: %s" % (lease.leased.job.id, error), file=sys.stderr)


class _Lease:
    """What the worker and the heartbeat share about one running job."""

    def __init__(self, leased):
        self.leased = leased
        self.id = leased.lease_id
        # (Not ToDatetime().timestamp(): a naive datetime, read as local time.)
        expires = leased.lease_expire_time.ToMicroseconds() / 1e6
        self.seconds = max(1.0, expires - time.time())
        self.last_report = time.monotonic()
        self.cancelled = False
        self.lost = False
        self.released = False
        self.ending = False  # its ending is queued or on its way
        self.lock = threading.Lock()

    def note(self, reply):
        self.last_report = time.monotonic()
        self.cancelled = self.cancelled or reply.cancel_requested


def _progress(step=None, index=0, count=0, fraction=None, message=""):
    p = jobs_pb2.Progress(message=message)
    if step is not None:
        p.step, p.step_index, p.step_count = step, index, count
    if fraction is not None:
        if not 0.0 <= fraction <= 1.0:
            raise ValueError("fraction must be within 0..1, not %r" % (fraction,))
        p.fraction = fraction
    return p


def _upload_requests(lease_id, name, content_type, source, size, sha256):
    header = workers_pb2.ArtifactHeader(lease_id=lease_id, name=name,
                                        content_type=content_type, size=size, sha256=sha256)
    yield workers_pb2.UploadArtifactRequest(header=header)
    while True:
        data = source.read(_CHUNK)
        if not data:
            break
        yield workers_pb2.UploadArtifactRequest(data=data)
    yield workers_pb2.UploadArtifactRequest(finish_write=True)


def _digest(f):
    h, size = hashlib.sha256(), 0
    for chunk in iter(lambda: f.read(_CHUNK), b""):
        h.update(chunk)
        size += len(chunk)
    f.seek(0)
    return size, h.hexdigest()


class _ContextBase:
    def __init__(self, worker, lease):
        self._worker = worker
        self._lease = lease
        self.job = lease.leased.job
        self.id = self.job.id
        self.attempt = self.job.attempt
        self.lease_id = lease.id
        # W3C traceparent of this attempt's span: send it on (an HTTP header, an
        # OpenTelemetry context) and what the job calls joins the job's trace.
        self.traceparent = lease.leased.traceparent

    @property
    def cancelled(self):
        """A client asked to cancel the job (known at the last report or heartbeat)."""
        return self._lease.cancelled or self._lease.released

    def check(self):
        """Raises Cancelled once the job was cancelled, LeaseLost once the lease is gone."""
        if self._lease.lost:
            raise LeaseLost(self.id)
        if self.cancelled:
            raise Cancelled(self.id)

    def _unreachable(self, e):
        """Whether a report that failed so should be sent again (the lease may still hold)."""
        lease = self._lease
        return (e.code() == grpc.StatusCode.UNAVAILABLE and
                time.monotonic() < lease.last_report + lease.seconds)

    def _failed_report(self, e):
        if e.code() == grpc.StatusCode.FAILED_PRECONDITION:
            self._lease.lost = True
            raise LeaseLost("%s: %s" % (self.id, e.details())) from None
        raise from_rpc_error(e) from None


class Context(_ContextBase):
    """What a function sees of its job: the job, progress reports, files, cancellation."""

    def step(self, name, index=0, count=0, fraction=None, message=""):
        """Starts a step (a STEP event every watcher sees); index is 1-based of count."""
        self._report(_progress(name, index, count, fraction, message))

    def progress(self, fraction, message=""):
        """Progress within the step (a PROGRESS event); fraction is overall, 0..1."""
        self._report(_progress(fraction=fraction, message=message))

    def _report(self, progress):
        # Sent again while the server is unreachable (restarting, failing over) for as long
        # as the lease lasts, so no step is lost; the lease is durable, the server keeps it.
        request = workers_pb2.ReportProgressRequest(lease_id=self.lease_id, progress=progress)
        attempt = 0
        with self._lease.lock:
            while True:
                try:
                    self._lease.note(self._worker._stub.ReportProgress(
                        request, timeout=self._worker.timeout, metadata=self._worker._metadata))
                    return
                except grpc.RpcError as e:
                    if not self._unreachable(e):
                        self._failed_report(e)
                time.sleep(backoff(attempt))
                attempt += 1

    def upload(self, path, name=None, content_type=""):
        """Attaches the file at `path` to the job (as `name`, default its base name); it is
        visible to clients once whole and durable. Returns the Artifact."""
        with open(path, "rb") as f:
            return self._upload(f, name or os.path.basename(path), content_type)

    def artifact(self, name, content_type=""):
        """A file to write the artifact `name` into; it is uploaded when closed (use it in a
        `with`). Spooled in memory up to 8 MiB, then in a temp file."""
        return _ArtifactWriter(self, name, content_type)

    def _upload(self, f, name, content_type):
        size, sha256 = _digest(f)
        try:
            return self._worker._stub.UploadArtifact(
                _upload_requests(self.lease_id, name, content_type, f, size, sha256),
                timeout=self._worker.timeout + size / (1 << 20), metadata=self._worker._metadata)
        except grpc.RpcError as e:
            self._failed_report(e)


class _ArtifactWriter(io.RawIOBase):
    def __init__(self, ctx, name, content_type):
        self._ctx, self._name, self._type = ctx, name, content_type
        self._spool = tempfile.SpooledTemporaryFile(max_size=8 << 20)
        self.artifact = None

    def writable(self):
        return True

    def write(self, data):
        if isinstance(data, str):
            data = data.encode()
        return self._spool.write(data)

    def close(self):
        if self.closed:
            return
        super().close()
        try:
            self._spool.seek(0)
            self.artifact = self._ctx._upload(self._spool, self._name, self._type)
        finally:
            self._spool.close()

    def __exit__(self, kind, *rest):
        if kind is not None:  # the function failed while writing: nothing is attached
            self._spool.close()
            io.RawIOBase.close(self)
            return False
        return super().__exit__(kind, *rest)


class AsyncContext(_ContextBase):
    """Context for `async def` functions: the same, with awaitable calls."""

    async def step(self, name, index=0, count=0, fraction=None, message=""):
        await self._report(_progress(name, index, count, fraction, message))

    async def progress(self, fraction, message=""):
        await self._report(_progress(fraction=fraction, message=message))

    async def _report(self, progress):
        request = workers_pb2.ReportProgressRequest(lease_id=self.lease_id, progress=progress)
        attempt = 0
        while True:
            try:
                self._lease.note(await self._worker._aio_stub.ReportProgress(
                    request, timeout=self._worker.timeout, metadata=self._worker._metadata))
                return
            except grpc.RpcError as e:
                if not self._unreachable(e):
                    self._failed_report(e)
            await asyncio.sleep(backoff(attempt))
            attempt += 1

    async def upload(self, path, name=None, content_type=""):
        loop = asyncio.get_running_loop()  # the file is read and sent off the event loop
        with open(path, "rb") as f:
            ctx = Context(self._worker, self._lease)
            return await loop.run_in_executor(None, ctx._upload, f,
                                              name or os.path.basename(path), content_type)


class Worker:
    """Leases jobs of the types it has functions for and runs them.

    concurrency: jobs run at once (threads for plain functions, tasks for `async def`).
    worker_id: shown on jobs and in ListJobTypes (default host:pid). lease_duration:
    seconds (default: the type's). heartbeat: seconds between heartbeats of a silent job
    (at most a third of its lease). drain_timeout: seconds a draining worker lets running
    jobs finish before giving them back. linger: seconds a busy worker waits for a few
    slots to free before it leases (fewer, larger leases). address, token, tls: as Client's.
    """

    def __init__(self, address=None, *, token=None, tls=None, concurrency=4, worker_id=None,
                 lease_duration=None, heartbeat=5.0, drain_timeout=30.0, poll=2.0,
                 linger=0.005, timeout=30.0, options=None):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self._conn = Connection(address, token, tls, options)
        self._metadata = self._conn.metadata
        self._channel = self._conn.channel()
        self._stub = workers_pb2_grpc.WorkerServiceStub(self._channel)
        self.concurrency = concurrency
        self.worker_id = worker_id or "%s:%d" % (socket.gethostname(), os.getpid())
        self.lease_duration = lease_duration
        self.heartbeat = heartbeat
        self.drain_timeout = drain_timeout
        self.poll = poll
        self.linger = linger
        self.timeout = timeout
        self.functions = {}
        self.done = 0  # jobs this worker ended (completed or failed)
        self._stopping = threading.Event()
        self._slots = None  # made by run(), of `concurrency` slots
        self._running = {}  # lease id -> _Lease, until its ending is answered
        self._outbox = []  # (lease, JobEnding, Tries) for the ending thread
        self._closing = False  # the ending thread returns once the outbox is empty
        self._lock = threading.Condition()  # guards the three above
        self._loop = None
        self._aio_stub = None
        self._coroutines = set()  # the functions that are `async def` (run() finds them)

    def task(self, type):
        """Decorator: the function runs the jobs of `type` (an EXTERNAL type)."""
        def register(fn):
            self.functions[type] = fn
            return fn
        return register

    def stop(self):
        """Starts a drain (what SIGTERM does); run() returns once it is done."""
        self._stopping.set()

    def run(self, signals=True):
        """Leases and runs jobs until stop() (or SIGTERM/SIGINT, when `signals` and run in
        the main thread), then drains."""
        if not self.functions:
            raise ValueError("no functions: register one with @worker.task(type)")
        if signals and threading.current_thread() is threading.main_thread():
            for s in (signal.SIGTERM, signal.SIGINT):
                signal.signal(s, lambda *_: self.stop())
        self._slots = threading.Semaphore(self.concurrency)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix="jobstream-job")
        self._coroutines = {f for f in self.functions.values() if inspect.iscoroutinefunction(f)}
        if self._coroutines:
            self._start_loop()
        beat = threading.Thread(target=self._heartbeats, name="jobstream-heartbeat", daemon=True)
        beat.start()
        self._ender = threading.Thread(target=self._endings, name="jobstream-endings", daemon=True)
        self._ender.start()
        try:
            self._lease_loop(pool)
        finally:
            self._drain(pool)
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._channel.close()

    def _lease_loop(self, pool):
        types = sorted(self.functions)
        # While the server restarts the lease is asked again, for as long as it takes.
        tries = Tries(float("inf"), (grpc.StatusCode.UNAVAILABLE,
                                     grpc.StatusCode.DEADLINE_EXCEEDED))
        while not self._stopping.is_set():
            if not self._slots.acquire(timeout=0.2):
                continue
            free = 1
            while free < self.concurrency and self._slots.acquire(blocking=False):
                free += 1
            # A busy worker frees one slot at a time: waiting a moment for a few more turns
            # many one-job leases into fewer larger ones (a call saved per job).
            linger_end = time.monotonic() + self.linger
            while free < min(self.concurrency, 4) and self._slots.acquire(
                    timeout=max(0.0, linger_end - time.monotonic())):
                free += 1
            request = workers_pb2.LeaseJobRequest(types=types, worker_id=self.worker_id,
                                                  max_jobs=free)
            rq.set_duration(request.wait, self.poll)
            if self.lease_duration:
                rq.set_duration(request.lease_duration, self.lease_duration)
            try:
                leased = list(self._stub.LeaseJob(request, timeout=self.poll + self.timeout,
                                                  metadata=self._metadata).jobs)
                tries.ok()
            except grpc.RpcError as e:
                for _ in range(free):
                    self._slots.release()
                time.sleep(tries.failed(e))
                continue
            for _ in range(free - len(leased)):
                self._slots.release()
            for job in leased:
                if self._stopping.is_set():  # leased as the drain began: given back
                    self._release(job.lease_id)
                    self._slots.release()
                    continue
                lease = _Lease(job)
                with self._lock:
                    self._running[lease.id] = lease
                fn = self.functions[job.job.type]
                if fn in self._coroutines:
                    future = asyncio.run_coroutine_threadsafe(self._run_async(fn, lease),
                                                              self._loop)
                else:
                    future = pool.submit(self._run, fn, lease)
                future.add_done_callback(lambda _f, lease=lease: self._finished(lease))

    def _finished(self, lease):
        with self._lock:
            if not lease.ending:  # nothing to send: the lease was lost or given back
                self._running.pop(lease.id, None)
        self._slots.release()

    def _run(self, fn, lease):
        ctx = Context(self, lease)
        try:
            outcome = fn(ctx, rq.python(lease.leased.job.params))
        except BaseException as e:  # noqa: B902 - every failure ends the attempt
            self._end(lease, error=e)
        else:
            self._end(lease, result=outcome)

    async def _run_async(self, fn, lease):
        ctx = AsyncContext(self, lease)
        try:
            outcome = await fn(ctx, rq.python(lease.leased.job.params))
        except BaseException as e:  # noqa: B902
            error, outcome = e, None
        else:
            error = None
        # A heartbeat holding the lease's lock is a call on its way: waited for off the loop.
        if not self._end(lease, outcome, error, wait=False):
            await asyncio.get_running_loop().run_in_executor(None, self._end, lease, outcome, error)

    def _end(self, lease, result=None, error=None, wait=True):
        """Queues the job's ending (unless its lease is gone or was given back) for the
        ending thread, which sends what has queued in one EndJobs call. The job's slot is
        free at once; its lease stays the worker's until the ending is answered. Without
        `wait`, returns False (doing nothing) if the lease's lock is taken."""
        if not lease.lock.acquire(blocking=wait):  # not while a drain gives the lease back
            return False
        try:
            ending = self._ending(lease, result, error)
            if ending is not None:
                tries = Tries(max(60.0, lease.seconds), (grpc.StatusCode.UNAVAILABLE,))
                with self._lock:
                    lease.ending = True
                    self._outbox.append((lease, ending, tries))
                    self._lock.notify()
        finally:
            lease.lock.release()
        return True

    def _endings(self):
        """Sends the queued endings, up to 1000 a call: those that queue while a call is on
        its way go in the next, so a busy worker ends many jobs a call. A call that fails is
        tried again while the server restarts, within each lease's own time."""
        while True:
            with self._lock:
                while not self._outbox and not self._closing:
                    self._lock.wait()
                if not self._outbox:
                    return
                batch, self._outbox = self._outbox[:1000], self._outbox[1000:]
            request = workers_pb2.EndJobsRequest(endings=[ending for _, ending, _ in batch])
            try:
                results = self._stub.EndJobs(request, timeout=self.timeout,
                                             metadata=self._metadata).results
            except grpc.RpcError as e:
                again = []
                for item in batch:
                    pause = self._pause(item[0], item[2], e)
                    if pause is None:
                        self._settled(item[0])
                    else:
                        again.append((pause, item))
                if again:
                    time.sleep(min(pause for pause, _ in again))
                    with self._lock:
                        self._outbox[:0] = [item for _, item in again]
                continue
            for (lease, _, _), result in zip(batch, results):
                if result.error.code:
                    _refused(lease, from_status(result.error.code, result.error.message))
                else:
                    self.done += 1
                self._settled(lease)

    def _settled(self, lease):
        with self._lock:
            self._running.pop(lease.id, None)

    @staticmethod
    def _pause(lease, tries, error):
        """The pause before an ending call is tried again; None once it is refused."""
        try:
            return tries.failed(error)
        except JobstreamError as refused:
            _refused(lease, refused)
            return None

    def _ending(self, lease, result, error):
        """The JobEnding that ends the job as its function did, or None when the lease is
        gone or was given back."""
        if lease.lost or lease.released or isinstance(error, LeaseLost):
            return None
        if error is None:
            try:
                return workers_pb2.JobEnding(complete=workers_pb2.CompleteJobRequest(
                    lease_id=lease.id, result=rq.value(result, "the result")))
            except TypeError as e:
                error = Fatal(str(e))
        if isinstance(error, Cancelled) or (lease.cancelled and not isinstance(error, Fatal)):
            failure = jobs_pb2.Error(code=1, message="cancelled")
            retryable = False
        else:
            failure = jobs_pb2.Error(code=2, message="%s: %s" % (type(error).__name__, error))
            failure.details.update({"exception": type(error).__name__, "traceback": "".join(
                traceback.format_exception(type(error), error, error.__traceback__))[-4000:]})
            retryable = not isinstance(error, Fatal)
        return workers_pb2.JobEnding(fail=workers_pb2.FailJobRequest(
            lease_id=lease.id, error=failure, retryable=retryable))

    def _release(self, lease_id):
        try:
            self._stub.ReleaseJob(workers_pb2.ReleaseJobRequest(lease_id=lease_id),
                                  timeout=self.timeout, metadata=self._metadata)
        except grpc.RpcError as e:
            print("jobstream worker: release %s: %s" % (lease_id, from_rpc_error(e)),
                  file=sys.stderr)

    def _heartbeats(self):
        """Extends the lease of every job whose function has not reported for a while, and
        learns of cancels."""
        while not self._stopping.wait(0.25) or self._running:
            with self._lock:
                leases = list(self._running.values())
            now = time.monotonic()
            for lease in leases:
                every = min(self.heartbeat, lease.seconds / 3)
                if lease.released or lease.ending or now - lease.last_report < every:
                    continue
                if not lease.lock.acquire(blocking=False):
                    continue  # a report or the job's end is on its way
                try:
                    lease.note(self._stub.ReportProgress(
                        workers_pb2.ReportProgressRequest(lease_id=lease.id),
                        timeout=self.timeout, metadata=self._metadata))
                except grpc.RpcError as e:
                    if e.code() == grpc.StatusCode.FAILED_PRECONDITION:
                        lease.lost = True
                finally:
                    lease.lock.release()
            if self._stopping.is_set():
                time.sleep(0.25)

    def _drain(self, pool):
        end = time.monotonic() + self.drain_timeout
        while time.monotonic() < end:
            with self._lock:
                if not self._running:
                    break
            time.sleep(0.05)
        with self._lock:
            left = list(self._running.values())
        for lease in left:  # still running: given back, and the function told to stop
            with lease.lock:
                if not lease.lost and not lease.ending:
                    lease.released = True
                    self._release(lease.id)
        with self._lock:  # the endings already queued are sent (each within its lease's time)
            self._closing = True
            self._lock.notify()
        self._ender.join()
        pool.shutdown(wait=False)

    def _start_loop(self):
        ready = threading.Event()

        def serve():
            self._loop = asyncio.new_event_loop()
            asyncio.set_event_loop(self._loop)
            self._aio_channel = self._conn.aio_channel()
            self._aio_stub = workers_pb2_grpc.WorkerServiceStub(self._aio_channel)
            ready.set()
            self._loop.run_forever()

        threading.Thread(target=serve, name="jobstream-asyncio", daemon=True).start()
        ready.wait()


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m jobstream.worker",
        description="Runs a jobstream Worker defined in a module: MODULE:NAME names it.")
    parser.add_argument("worker", help="module:attribute of a jobstream.Worker")
    parser.add_argument("--concurrency", type=int, help="jobs at once (overrides the Worker's)")
    args = parser.parse_args(argv)
    module_name, _, attr = args.worker.partition(":")
    if not module_name or not attr:
        parser.error("give the worker as module:attribute, e.g. tasks:worker")
    sys.path.insert(0, os.getcwd())
    worker = getattr(importlib.import_module(module_name), attr, None)
    if not isinstance(worker, Worker):
        parser.error("%s is not a jobstream.Worker" % args.worker)
    if args.concurrency:
        worker.concurrency = args.concurrency
    worker.run()
    print("jobstream worker %s: %d jobs" % (worker.worker_id, worker.done), file=sys.stderr)


if __name__ == "__main__":
    # Run as `python -m jobstream.worker`, this file is __main__, a module apart from the
    # jobstream.worker that the user's module imports: the main (and Worker) used are that one's.
    from jobstream.worker import main as imported_main

    imported_main()
