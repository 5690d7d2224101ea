#!/usr/bin/env python3
"""A jobstream worker in Python, using only the .proto files and Debian's python3-grpcio.

It leases jobs of one or more EXTERNAL types through WorkerService, runs a handler for
each (reporting steps and progress, which also keeps the lease), and completes or fails
the job. Cancellation reaches the handler as a JobCancelled exception; SIGTERM finishes
the job at hand and gives back the rest of the batch.

    ./gen_stubs.sh /tmp/stubs            # once: Python stubs from proto/
    PYTHONPATH=/tmp/stubs ./worker.py --server=127.0.0.1:50051 --type=thumbnail

On a server with --auth_tokens, put a token with the `work` role in $JOBSTREAM_TOKEN.

Write your own handler the way `thumbnail` below is written: a function of
(ctx, params) returning the result (any JSON value).
"""

import argparse
import collections
import json
import os
import signal
import socket
import sys
import threading
import time

import grpc
from google.protobuf import json_format

from jobstream.v1 import jobs_pb2, workers_pb2, workers_pb2_grpc


class JobCancelled(Exception):
    """A client cancelled the job: stop and return."""


class PermanentError(Exception):
    """A failure another attempt would not fix (not retried)."""


class LeaseLost(Exception):
    """The lease expired or was taken over: another worker may run the job now."""


class JobContext:
    """What a handler sees of its job: params, progress reporting, cancellation."""

    def __init__(self, stub, leased):
        self._stub = stub
        self.job = leased.job
        self.lease_id = leased.lease_id
        # W3C traceparent of this attempt's span: send it on (an HTTP `traceparent` header,
        # an OpenTelemetry context) and what the job calls joins the job's trace.
        self.traceparent = leased.traceparent
        self.cancelled = False
        self._lock = threading.Lock()
        self._last_report = time.monotonic()
        expires = leased.lease_expire_time.ToDatetime().timestamp()
        self._lease_seconds = max(1.0, expires - time.time())
        self._done = threading.Event()
        self._lost = False
        self._heartbeat = threading.Thread(target=self._beat, daemon=True)
        self._heartbeat.start()

    def step(self, name, index=0, count=0, fraction=0.0, message=""):
        """Starts a step (a STEP event)."""
        self._report(jobs_pb2.Progress(step=name, step_index=index, step_count=count,
                                       fraction=fraction, message=message))

    def progress(self, fraction, message=""):
        """Progress within the step (a PROGRESS event); fraction is overall, 0..1."""
        self._report(jobs_pb2.Progress(fraction=fraction, message=message))

    def check(self):
        """Raises JobCancelled once a client has asked to cancel the job."""
        if self._lost:
            raise LeaseLost(self.job.id)
        if self.cancelled:
            raise JobCancelled(self.job.id)

    def _report(self, progress):
        with self._lock:
            request = workers_pb2.ReportProgressRequest(lease_id=self.lease_id)
            if progress is not None:
                request.progress.CopyFrom(progress)
            try:
                reply = self._stub.ReportProgress(request, timeout=10)
                self.cancelled = self.cancelled or reply.cancel_requested
            except grpc.RpcError as e:
                if e.code() == grpc.StatusCode.FAILED_PRECONDITION:
                    self._lost = True
                elif e.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
            self._last_report = time.monotonic()
        self.check()

    def _beat(self):
        # Keeps the lease while the handler is busy without reporting.
        while not self._done.wait(self._lease_seconds / 6):
            if time.monotonic() - self._last_report >= self._lease_seconds / 3:
                try:
                    self._report(None)
                except (JobCancelled, LeaseLost):
                    pass  # the handler sees it at its next report or check()

    def close(self):
        self._done.set()
        self._heartbeat.join()


def thumbnail(ctx, params):
    """The example job: "renders" each image in params["images"]."""
    images = params.get("images", ["a.png", "b.png"])
    if params.get("fail"):
        raise PermanentError("cannot read %s" % images[0])
    for i, image in enumerate(images, start=1):
        ctx.step("render " + image, index=i, count=len(images), fraction=(i - 1) / len(images))
        for tick in range(1, 4):
            time.sleep(float(params.get("tick_s", 0.01)))
            ctx.progress((i - 1 + tick / 3) / len(images), "%s %d/3" % (image, tick))
    return {"thumbnails": len(images), "worker": os.getpid(), "traceparent": ctx.traceparent}


HANDLERS = {"thumbnail": thumbnail}


def finish(stub, ctx, call, request):
    """Sends the call that ends the job, retrying while the server restarts."""
    for delay in (0.1, 0.2, 0.5, 1, 2, 2, 2):
        try:
            return call(request, timeout=10)
        except grpc.RpcError as e:
            if e.code() != grpc.StatusCode.UNAVAILABLE:
                print("job %s: %s" % (ctx.job.id, e.details()), file=sys.stderr)
                return None
            time.sleep(delay)
    return None


def run_job(stub, leased):
    ctx = JobContext(stub, leased)
    handler = HANDLERS.get(ctx.job.type)
    try:
        params = json_format.MessageToDict(ctx.job.params)
        result = handler(ctx, params)
        value = json_format.ParseDict(result, jobs_pb2.Job().result)
        finish(stub, ctx, stub.CompleteJob,
               workers_pb2.CompleteJobRequest(lease_id=ctx.lease_id, result=value))
        return True
    except LeaseLost:
        print("job %s: lease lost; dropping it" % ctx.job.id, file=sys.stderr)
    except JobCancelled:
        finish(stub, ctx, stub.FailJob, workers_pb2.FailJobRequest(
            lease_id=ctx.lease_id, error=jobs_pb2.Error(code=1, message="cancelled")))
    except Exception as e:  # the handler failed: retried unless it said otherwise
        finish(stub, ctx, stub.FailJob, workers_pb2.FailJobRequest(
            lease_id=ctx.lease_id, retryable=not isinstance(e, PermanentError),
            error=jobs_pb2.Error(code=2, message="%s: %s" % (type(e).__name__, e))))
    finally:
        ctx.close()
    return False


class _CallDetails(collections.namedtuple(
        "_CallDetails", ("method", "timeout", "metadata", "credentials", "wait_for_ready",
                         "compression")), grpc.ClientCallDetails):
    pass


class BearerToken(grpc.UnaryUnaryClientInterceptor):
    """Adds `authorization: Bearer <token>` to every call of a channel."""

    def __init__(self, token):
        self._header = ("authorization", "Bearer " + token)

    def intercept_unary_unary(self, continuation, details, request):
        metadata = list(details.metadata or []) + [self._header]
        return continuation(_CallDetails(details.method, details.timeout, metadata,
                                         details.credentials, details.wait_for_ready,
                                         details.compression), request)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--server", default="127.0.0.1:50051")
    parser.add_argument("--type", action="append", required=True, help="a type to take")
    parser.add_argument("--worker-id", default="%s:%d" % (socket.gethostname(), os.getpid()))
    parser.add_argument("--batch", type=int, default=4, help="jobs leased at once")
    parser.add_argument("--exit-after", type=int, default=0, help="stop after N jobs")
    args = parser.parse_args()
    unknown = [t for t in args.type if t not in HANDLERS]
    if unknown:
        parser.error("no handler for %s (handlers: %s)" % (unknown, ", ".join(HANDLERS)))

    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    channel = grpc.insecure_channel(args.server)
    token = os.environ.get("JOBSTREAM_TOKEN", "").strip()
    if token:
        channel = grpc.intercept_channel(channel, BearerToken(token))
    stub = workers_pb2_grpc.WorkerServiceStub(channel)
    done = 0
    while not stopping.is_set():
        request = workers_pb2.LeaseJobRequest(types=args.type, worker_id=args.worker_id,
                                              max_jobs=args.batch)
        request.wait.FromSeconds(2)
        try:
            reply = stub.LeaseJob(request, timeout=15)
        except grpc.RpcError as e:
            if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                time.sleep(0.5)  # the server is restarting
                continue
            sys.exit("LeaseJob refused: %s" % e.details())
        for i, leased in enumerate(reply.jobs):
            if stopping.is_set():  # give back what was not started
                for rest in reply.jobs[i:]:
                    stub.ReleaseJob(workers_pb2.ReleaseJobRequest(lease_id=rest.lease_id))
                break
            run_job(stub, leased)
            done += 1
            if args.exit_after and done >= args.exit_after:
                stopping.set()
    print("worker %s: %d jobs" % (args.worker_id, done), file=sys.stderr)


if __name__ == "__main__":
    main()
