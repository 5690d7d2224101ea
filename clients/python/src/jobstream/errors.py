"""Typed errors: each carries the gRPC status code and the server's message.

Every call of Client, AsyncClient and Worker raises a subclass of JobstreamError instead of
grpc.RpcError, so callers can write `except jobstream.NotFound:`; `code` is the
grpc.StatusCode and `message` the server's words (which name the field at fault).
"""

import grpc


class JobstreamError(Exception):
    """A call the server (or the connection) refused."""

    code = grpc.StatusCode.UNKNOWN

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self):
        return "%s: %s" % (self.code.name, self.message)


def _kind(name, code, doc=None):
    return type(name, (JobstreamError,), {"code": code, "__doc__": doc or code.name,
                                          "__module__": __name__})


InvalidArgument = _kind("InvalidArgument", grpc.StatusCode.INVALID_ARGUMENT)
NotFound = _kind("NotFound", grpc.StatusCode.NOT_FOUND)
AlreadyExists = _kind("AlreadyExists", grpc.StatusCode.ALREADY_EXISTS)
FailedPrecondition = _kind("FailedPrecondition", grpc.StatusCode.FAILED_PRECONDITION)
OutOfRange = _kind("OutOfRange", grpc.StatusCode.OUT_OF_RANGE)
PermissionDenied = _kind("PermissionDenied", grpc.StatusCode.PERMISSION_DENIED)
Unauthenticated = _kind("Unauthenticated", grpc.StatusCode.UNAUTHENTICATED)
ResourceExhausted = _kind("ResourceExhausted", grpc.StatusCode.RESOURCE_EXHAUSTED)
Aborted = _kind("Aborted", grpc.StatusCode.ABORTED)
Unavailable = _kind("Unavailable", grpc.StatusCode.UNAVAILABLE,
                    "The server could not be reached (or is stopping); try again.")
Internal = _kind("Internal", grpc.StatusCode.INTERNAL)


class DeadlineExceeded(JobstreamError, TimeoutError):
    """The call's deadline passed, or wait()/result() ran out of time before the job ended."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED


class JobFailed(JobstreamError):
    """result(): the job ended FAILED or CANCELLED. `job` is the job as it ended."""

    def __init__(self, job):
        from jobstream.v1 import jobs_pb2

        state = jobs_pb2.Job.State.Name(job.state)
        super().__init__("job %s %s: %s" % (job.id, state, job.error.message),
                         grpc.StatusCode.ABORTED if state == "FAILED" else grpc.StatusCode.CANCELLED)
        self.job = job


_BY_CODE = {cls.code: cls for cls in (
    InvalidArgument, NotFound, AlreadyExists, FailedPrecondition, OutOfRange, PermissionDenied,
    Unauthenticated, ResourceExhausted, Aborted, Unavailable, DeadlineExceeded, Internal)}


def _error(code, message):
    """The JobstreamError of a grpc.StatusCode: its code's class, else JobstreamError."""
    return _BY_CODE.get(code, JobstreamError)(message or code.name, code)


def from_rpc_error(error):
    """The JobstreamError for a grpc.RpcError."""
    code = error.code() if callable(getattr(error, "code", None)) else grpc.StatusCode.UNKNOWN
    return _error(code, error.details() if callable(getattr(error, "details", None)) else str(error))


def from_status(code, message):
    """The JobstreamError for a status given by its number (as EndJobs answers each ending)."""
    return _error(next((c for c in grpc.StatusCode if c.value[0] == code),
                       grpc.StatusCode.UNKNOWN), message)


# What a watch or a worker meets while a server restarts or a connection drops (INTERNAL:
# a stream reset mid-message), or when a watcher fell behind: it resumes.
TRANSIENT = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.RESOURCE_EXHAUSTED,
             grpc.StatusCode.INTERNAL)
