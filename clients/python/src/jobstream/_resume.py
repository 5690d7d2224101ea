"""What a call tried again keeps between its tries, and when it gives up: the watch, the
wait and the artifact fetch. Shared by Client and AsyncClient, which only send and sleep."""

import hashlib
import os
import time

import grpc

from jobstream import _requests as rq
from jobstream.errors import TRANSIENT, DeadlineExceeded, JobstreamError, from_rpc_error
from jobstream.v1 import jobs_pb2

# WaitJob's longest single wait (the server's bound).
_WAIT_CHUNK = 300.0
# Pauses between tries while a server is unreachable.
_BACKOFF = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)


def backoff(attempt):
    return _BACKOFF[min(attempt, len(_BACKOFF) - 1)]


class Tries:
    """Failures in a row: the pause before the next try, or the error once `retry_for`
    seconds have passed since the first of them (or at once, for a failure not in `codes`)."""

    def __init__(self, retry_for, codes=TRANSIENT):
        self.retry_for, self.codes = retry_for, codes
        self.attempt, self.since = 0, None

    def ok(self):
        self.attempt, self.since = 0, None

    def failed(self, error):
        """The pause before trying again; raises the error as a JobstreamError if not."""
        now = time.monotonic()
        self.since = self.since or now
        if error.code() not in self.codes or now - self.since > self.retry_for:
            raise from_rpc_error(error) from None
        self.attempt += 1
        return backoff(self.attempt - 1)


class Watch:
    """WatchJob resumed after the last event received: every event once, in order."""

    def __init__(self, job_id, after, retry_for):
        self.job_id, self.last = job_id, after
        self.tries = Tries(retry_for)

    def request(self):
        return jobs_pb2.WatchJobRequest(job_id=self.job_id, after_sequence=self.last)

    def fresh(self, event):
        """Whether to hand on `event` (not one already handed on)."""
        if event.sequence <= self.last:
            return False
        self.last = event.sequence
        self.tries.ok()
        return True


class Wait:
    """WaitJob asked again until the job has ended or `timeout` (None: never) passed."""

    def __init__(self, address, job_id, timeout, call_timeout):
        self.address, self.job_id, self.timeout = address, job_id, timeout
        self.call_timeout = call_timeout
        self.end = None if timeout is None else time.monotonic() + timeout
        self.tries = Tries(float("inf"), TRANSIENT + (grpc.StatusCode.DEADLINE_EXCEEDED,))

    def request(self):
        """(request, the call's deadline in seconds)."""
        left = _WAIT_CHUNK
        if self.end is not None:
            left = max(0.0, min(_WAIT_CHUNK, self.end - time.monotonic()))
        request = jobs_pb2.WaitJobRequest(job_id=self.job_id)
        rq.set_duration(request.timeout, left)
        return request, left + self.call_timeout

    def answer(self, job):
        """The job once it has ended; None to ask again."""
        self.tries.ok()
        if rq.final(job):
            return job
        if self.end is not None and time.monotonic() >= self.end:
            raise DeadlineExceeded("job %s is still %s after %ss" % (
                self.job_id, jobs_pb2.Job.State.Name(job.state), self.timeout))
        return None

    def failed(self, error):
        pause = self.tries.failed(error)
        if self.end is not None and time.monotonic() >= self.end:
            raise DeadlineExceeded("job %s: no answer from %s within %ss"
                                   % (self.job_id, self.address, self.timeout)) from None
        return pause


class Fetch:
    """GetArtifact into `path` + ".part", from where an earlier try (or run) stopped; the
    file becomes `path` only once its sha256 matches the artifact's."""

    def __init__(self, job_id, name, path, retry_for):
        self.job_id, self.name, self.path = job_id, name, path
        self.part = path + ".part"
        self.tries = Tries(retry_for, TRANSIENT + (grpc.StatusCode.ABORTED,
                                                   grpc.StatusCode.OUT_OF_RANGE))
        self.artifact = None

    def request(self):
        offset = os.path.getsize(self.part) if os.path.exists(self.part) else 0
        return jobs_pb2.GetArtifactRequest(job_id=self.job_id, name=self.name, offset=offset)

    def open(self):
        return open(self.part, "ab")

    def take(self, message, out):
        if message.HasField("artifact"):
            self.artifact = message.artifact
        if message.data:
            out.write(message.data)

    def finish(self):
        """Checks the whole file and renames it; returns the Artifact."""
        what = "artifact %s of job %s" % (self.name, self.job_id)
        if self.artifact is None:
            raise JobstreamError(what + ": the server sent no description",
                                 grpc.StatusCode.INTERNAL)
        if sha256_of(self.part) != self.artifact.sha256:
            os.remove(self.part)
            raise JobstreamError(what + ": the bytes fetched do not match its sha256",
                                 grpc.StatusCode.DATA_LOSS)
        os.replace(self.part, self.path)
        return self.artifact

    def failed(self, error):
        if error.code() in (grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE):
            if os.path.exists(self.part):  # replaced or shrunk meanwhile: from its first byte
                os.remove(self.part)
        return self.tries.failed(error)


def sha256_of(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
