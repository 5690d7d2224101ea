"""Requests built from Python values: shared by Client and AsyncClient, which differ only
in how they send them."""

import datetime
import uuid

from google.protobuf import json_format, struct_pb2

from jobstream.v1 import jobs_pb2, schedules_pb2

Job = jobs_pb2.Job
_DEPENDENCY_POLICIES = {"cancel": Job.CANCEL, "fail": Job.FAIL, "run": Job.RUN}


def request_id(given):
    """The idempotency key of a Submit: the caller's, or one made up, so the retries of a
    call cut off by a restart never make two jobs."""
    return given or "py-" + uuid.uuid4().hex


def struct(value, what):
    """A dict as a google.protobuf.Struct (None: empty)."""
    out = struct_pb2.Struct()
    if value is None:
        return out
    if not isinstance(value, dict):
        raise TypeError("%s must be a dict, not %s" % (what, type(value).__name__))
    json_format.ParseDict(value, out)
    return out


def value(v, what):
    """Any JSON value as a google.protobuf.Value."""
    out = struct_pb2.Value()
    try:
        json_format.ParseDict(v, out)
    except (json_format.ParseError, TypeError, ValueError) as e:
        raise TypeError("%s is not a JSON value: %s" % (what, e)) from None
    return out


def python(message):
    """A Struct or Value (a job's params, result, error details) as plain Python: dicts,
    lists, str, float, bool, None."""
    return json_format.MessageToDict(message)


def seconds(d):
    """A duration (timedelta or seconds) in seconds."""
    if isinstance(d, datetime.timedelta):
        return d.total_seconds()
    return float(d)


def set_duration(field, d):
    s = seconds(d)
    field.seconds = int(s)
    field.nanos = int(round((s - int(s)) * 1e9))


def set_time(field, t):
    """A datetime (naive means UTC) or Unix seconds into a Timestamp."""
    if isinstance(t, datetime.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=datetime.timezone.utc)
        t = t.timestamp()
    set_duration(field, t)


def submit_request(type, params=None, *, labels=None, priority=0, max_attempts=0,
                   request_id="", run_at=None, delay=None, depends_on=(),
                   on_dependency_failure=None, unique_key="", unique_for=None,
                   concurrency_key="", webhook=None, traceparent=""):
    """SubmitRequest from keyword arguments (see Client.submit)."""
    r = jobs_pb2.SubmitRequest(type=type, request_id=request_id, priority=priority,
                               max_attempts=max_attempts, unique_key=unique_key,
                               concurrency_key=concurrency_key, traceparent=traceparent)
    r.params.CopyFrom(struct(params, "params"))
    r.labels.update(labels or {})
    if run_at is not None and delay is not None:
        raise ValueError("give run_at or delay, not both")
    if delay is not None:
        run_at = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
            seconds=seconds(delay))
    if run_at is not None:
        set_time(r.run_at, run_at)
    if isinstance(depends_on, str):
        depends_on = [depends_on]
    r.depends_on.extend(getattr(d, "id", d) for d in depends_on)
    if on_dependency_failure is not None:
        policy = _DEPENDENCY_POLICIES.get(str(on_dependency_failure).lower())
        if policy is None:
            raise ValueError("on_dependency_failure must be cancel, fail or run, not %r"
                             % (on_dependency_failure,))
        r.on_dependency_failure = policy
    if unique_for is not None:
        if unique_for == "active":
            r.unique_while = Job.ACTIVE
        else:
            set_duration(r.unique_for, unique_for)
    if webhook is not None:
        set_webhook(r.webhook, webhook)
    return r


def set_webhook(field, webhook):
    """A URL, or a dict {"url": ..., "events": [...]}, into a Webhook."""
    if isinstance(webhook, str):
        webhook = {"url": webhook}
    field.url = webhook["url"]
    field.events.extend(webhook.get("events", ()))


def child_request(child):
    """A batch child: a SubmitRequest, or a dict of submit_request's arguments."""
    if isinstance(child, jobs_pb2.SubmitRequest):
        return child
    child = dict(child)
    return submit_request(child.pop("type"), child.pop("params", None), **child)


def batch_request(children, then=None, *, labels=None, request_id="", webhook=None):
    r = jobs_pb2.SubmitBatchRequest(request_id=request_id)
    r.children.extend(child_request(c) for c in children)
    if then is not None:
        r.then.CopyFrom(child_request(then))
    r.labels.update(labels or {})
    if webhook is not None:
        set_webhook(r.webhook, webhook)
    return r


def states(values):
    """Job states by name ("QUEUED") or number."""
    if values is None:
        return []
    if isinstance(values, (str, int)):
        values = [values]
    return [Job.State.Value(v.upper()) if isinstance(v, str) else int(v) for v in values]


def list_request(*, states_=None, type="", labels=None, parent=None, created_after=None,
                 created_before=None, page_size=0, page_token=""):
    r = jobs_pb2.ListJobsRequest(type=type, page_size=page_size, page_token=page_token)
    r.states.extend(states(states_))
    r.labels.update(labels or {})
    if parent is not None:
        r.labels["jobstream/batch"] = getattr(parent, "id", parent)
    if created_after is not None:
        set_time(r.created_after, created_after)
    if created_before is not None:
        set_time(r.created_before, created_before)
    return r


def schedule(s):
    """A Schedule from a Schedule message or a dict of its proto3 JSON ("cron", "job", ...)."""
    if isinstance(s, schedules_pb2.Schedule):
        return s
    out = schedules_pb2.Schedule()
    json_format.ParseDict(s, out)
    return out


def final(job):
    """Whether a job has ended (SUCCEEDED, FAILED or CANCELLED)."""
    return job.state in (Job.SUCCEEDED, Job.FAILED, Job.CANCELLED)


TERMINAL_EVENTS = (jobs_pb2.JobEvent.SUCCEEDED, jobs_pb2.JobEvent.FAILED,
                   jobs_pb2.JobEvent.CANCELLED)
