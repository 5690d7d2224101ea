"""jobstream: submit durable jobs, follow their progress, and run them in Python.

    import jobstream
    client = jobstream.Client("127.0.0.1:50051")
    job = client.submit("report.generate", {"month": "2026-11"})
    print(client.result(job.id))

See Client, AsyncClient and Worker. Messages (Job, JobEvent, Artifact, Schedule) are the
API's own, from proto/jobstream/v1, generated when this package was built.
"""

from jobstream._requests import python as to_python
from jobstream.aio import AsyncClient
from jobstream.client import Client
from jobstream.connect import TLS
from jobstream.errors import (Aborted, AlreadyExists, DeadlineExceeded, FailedPrecondition,
                              Internal, InvalidArgument, JobFailed, JobstreamError, NotFound,
                              OutOfRange, PermissionDenied, ResourceExhausted, Unauthenticated,
                              Unavailable)
from jobstream.v1.jobs_pb2 import Artifact, Job, JobEvent
from jobstream.v1.schedules_pb2 import Schedule

State = Job.State
EventType = JobEvent.Type

_WORKER_NAMES = ("AsyncContext", "Cancelled", "Context", "Fatal", "LeaseLost", "Retryable",
                 "Worker")


def __getattr__(name):
    # jobstream.worker is imported when first used, not with the package: run as
    # `python -m jobstream.worker`, it must not be in sys.modules before it runs.
    if name in _WORKER_NAMES:
        from jobstream import worker

        return getattr(worker, name)
    raise AttributeError("module 'jobstream' has no attribute %r" % (name,))


__version__ = "0.1.0"
__all__ = [
    "Aborted", "AlreadyExists", "Artifact", "AsyncClient", "AsyncContext", "Cancelled", "Client",
    "Context", "DeadlineExceeded", "EventType", "FailedPrecondition", "Fatal", "Internal",
    "InvalidArgument", "Job", "JobEvent", "JobFailed", "JobstreamError", "LeaseLost", "NotFound",
    "OutOfRange", "PermissionDenied", "ResourceExhausted", "Retryable", "Schedule", "State", "TLS",
    "Unauthenticated", "Unavailable", "Worker", "to_python",
]
