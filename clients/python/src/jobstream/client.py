"""Client: submit jobs, follow them, fetch what they made, manage schedules (blocking calls).

    import jobstream
    with jobstream.Client("127.0.0.1:50051") as c:
        job = c.submit("report.generate", {"month": "2026-11"})
        for event in c.watch(job.id):          # resumes across restarts: no gap, no repeat
            print(event.status.progress.fraction)
        print(c.result(job.id))                # the job's result, or raises JobFailed

Jobs, events, artifacts and schedules are the API's protobuf messages (jobstream.v1), so
every field the server has is there; params and results go in and out as plain Python.
"""

import time

import grpc

from jobstream import _requests as rq
from jobstream import _resume
from jobstream.connect import Connection
from jobstream.errors import JobFailed
from jobstream.v1 import (jobs_pb2, jobs_pb2_grpc, schedules_pb2, schedules_pb2_grpc)

Job = jobs_pb2.Job
JobEvent = jobs_pb2.JobEvent
class Client:
    """A connection to one jobstream server (or a load balancer in front of several).

    address: "host:port" (default $JOBSTREAM_SERVER or 127.0.0.1:50051). token: a bearer
    token (default $JOBSTREAM_TOKEN). tls: None (plaintext), True (the system's CAs), or
    jobstream.TLS(ca=..., cert=..., key=...). timeout: each call's deadline in seconds.
    retry_for: how long submit, wait and watch keep trying while the server is unreachable
    (restarting, failing over) before they raise Unavailable.
    """

    def __init__(self, address=None, *, token=None, tls=None, timeout=30.0, retry_for=60.0,
                 options=None):
        self._connect(Connection(address, token, tls, options), timeout, retry_for, aio=False)

    def _connect(self, conn, timeout, retry_for, aio):
        self._conn = conn
        self._channel = conn.aio_channel() if aio else conn.channel()
        self._jobs = jobs_pb2_grpc.JobServiceStub(self._channel)
        self._schedules = schedules_pb2_grpc.ScheduleServiceStub(self._channel)
        self.timeout = timeout
        self.retry_for = retry_for

    @property
    def address(self):
        return self._conn.address

    def close(self):
        self._channel.close()

    def __enter__(self):
        return self

    def __exit__(self, *_):
        self.close()

    def _call(self, method, request, metadata=None, retry=False):
        """One call; with `retry` (a call safe to repeat), tried again while the server is
        unreachable, for up to retry_for seconds."""
        tries = _resume.Tries(self.retry_for, (grpc.StatusCode.UNAVAILABLE,) if retry else ())
        while True:
            try:
                return method(request, timeout=self.timeout, metadata=(
                    metadata if metadata is not None else self._conn.metadata))
            except grpc.RpcError as e:
                time.sleep(tries.failed(e))

    # Jobs ---------------------------------------------------------------------------------

    def submit(self, type, params=None, **options):
        """Creates a job and returns it (a jobstream.v1.Job) once it is durable.

        params: a dict (the job's params). options: labels (dict), priority (-1000..1000),
        max_attempts, request_id (an idempotency key; one is made up if not given, so
        retries after a dropped connection never make two jobs), run_at (datetime or Unix
        seconds) or delay (seconds or timedelta), depends_on (job ids or Jobs),
        on_dependency_failure ("cancel", "fail", "run"), unique_key with unique_for
        (seconds, timedelta, or "active"), concurrency_key, webhook (a URL or
        {"url", "events"}), traceparent (W3C). A collision on unique_key returns the job
        holding it, with `deduplicated` set.
        """
        options["request_id"] = rq.request_id(options.get("request_id"))
        request = rq.submit_request(type, params, **options)
        return self._call(self._jobs.Submit, request,
                          self._conn.with_trace(options.get("traceparent")), retry=True)

    def submit_batch(self, children, then=None, *, labels=None, request_id=None, webhook=None):
        """Creates up to 10,000 children and their parent at once (all or none).

        children: dicts of submit's arguments ({"type": ..., "params": ...}) or
        SubmitRequests. then: one more such job, run when every child has ended. Returns
        (parent, child_ids); watch the parent for the batch's progress (a CHILD event as
        each child ends).
        """
        request = rq.batch_request(children, then, labels=labels,
                                   request_id=rq.request_id(request_id), webhook=webhook)
        response = self._call(self._jobs.SubmitBatch, request, retry=True)
        return response.parent, list(response.child_ids)

    def get(self, job_id):
        """The job as last committed."""
        return self._call(self._jobs.GetStatus, jobs_pb2.GetStatusRequest(job_id=job_id))

    def wait(self, job_id, timeout=None):
        """Waits until the job has ended and returns it. timeout (seconds, None: forever)
        passed first: raises DeadlineExceeded. Rides out server restarts."""
        wait = _resume.Wait(self.address, job_id, timeout, self.timeout)
        while True:
            request, deadline = wait.request()
            try:
                job = wait.answer(self._jobs.WaitJob(request, timeout=deadline,
                                                     metadata=self._conn.metadata))
            except grpc.RpcError as e:
                time.sleep(wait.failed(e))
                continue
            if job is not None:
                return job

    def result(self, job_id, timeout=None):
        """Waits for the job and returns its result as Python; raises JobFailed (with the
        job) if it FAILED or was CANCELLED."""
        job = self.wait(job_id, timeout)
        if job.state != Job.SUCCEEDED:
            raise JobFailed(job)
        return rq.python(job.result) if job.HasField("result") else None

    def watch(self, job_id, after=0):
        """The job's events (jobstream.v1.JobEvent) from sequence `after`+1 until its end.

        A dropped stream, a watcher that fell behind, or a server restart is resumed after
        the last event received: every event once, in order. Raises Unavailable when the
        server stays unreachable for retry_for seconds.
        """
        watch = _resume.Watch(job_id, after, self.retry_for)
        while True:
            call = self._jobs.WatchJob(watch.request(), metadata=self._conn.metadata)
            try:
                yield from filter(watch.fresh, call)
                return
            except grpc.RpcError as e:
                pause = watch.tries.failed(e)
            finally:
                call.cancel()
            time.sleep(pause)

    def cancel(self, job_id, reason=""):
        """Cancels a job: a QUEUED one at once; a RUNNING one's handler is asked to stop."""
        return self._call(self._jobs.CancelJob, jobs_pb2.CancelJobRequest(job_id=job_id,
                                                                          reason=reason))

    def retry(self, job_id, reason="", as_new=False, params=None):
        """Runs a FAILED or CANCELLED job again (as_new: a new job like it, "replay")."""
        request = jobs_pb2.RetryJobRequest(job_id=job_id, reason=reason, as_new=as_new)
        if params is not None:
            request.params.CopyFrom(rq.struct(params, "params"))
        return self._call(self._jobs.RetryJob, request)

    def delete(self, job_id):
        """Removes a finished job and its events."""
        self._call(self._jobs.DeleteJob, jobs_pb2.DeleteJobRequest(job_id=job_id))

    def list(self, *, states=None, type="", labels=None, parent=None, created_after=None,
             created_before=None, page_size=500):
        """Every job matching, newest first, fetched a page at a time as you iterate.
        parent: a batch's parent (id or Job): its children."""
        token = ""
        while True:
            request = rq.list_request(states_=states, type=type, labels=labels, parent=parent,
                                      created_after=created_after,
                                      created_before=created_before, page_size=page_size,
                                      page_token=token)
            page = self._call(self._jobs.ListJobs, request)
            yield from page.jobs
            token = page.next_page_token
            if not token:
                return

    def types(self):
        """The declared job types (jobstream.v1.JobTypeInfo), with queued/running counts."""
        return list(self._call(self._jobs.ListJobTypes, jobs_pb2.ListJobTypesRequest()).types)

    def pause_type(self, type, reason=""):
        """Holds a type's queued jobs (no worker gets one) until resume_type; role admin."""
        return self._call(self._jobs.PauseType, jobs_pb2.PauseTypeRequest(type=type, reason=reason))

    def resume_type(self, type):
        return self._call(self._jobs.ResumeType, jobs_pb2.ResumeTypeRequest(type=type))

    def whoami(self):
        """What the server makes of this client's token (name, tenant, roles)."""
        return self._call(self._jobs.WhoAmI, jobs_pb2.WhoAmIRequest())

    def fetch_artifact(self, job_id, name, path):
        """Writes the job's artifact `name` to `path` and returns its description.

        The bytes go to path + ".part" first: a fetch cut off (here, or in an earlier run)
        goes on from where it stopped, and the file is renamed to `path` only once its
        sha256 matches the artifact's. An artifact replaced meanwhile is fetched again
        from its start.
        """
        fetch = _resume.Fetch(job_id, name, path, self.retry_for)
        while True:
            call = self._jobs.GetArtifact(fetch.request(), metadata=self._conn.metadata)
            try:
                with fetch.open() as out:
                    for message in call:
                        fetch.take(message, out)
                return fetch.finish()
            except grpc.RpcError as e:
                pause = fetch.failed(e)
            finally:
                call.cancel()
            time.sleep(pause)

    # Schedules ----------------------------------------------------------------------------

    def create_schedule(self, schedule, paused=False):
        """Creates a schedule: a Schedule, or a dict of its JSON form, e.g.
        {"id": "nightly", "cron": "30 2 * * *", "timeZone": "Europe/Berlin",
         "job": {"type": "report", "params": {...}}}."""
        request = schedules_pb2.CreateScheduleRequest(schedule=rq.schedule(schedule),
                                                      paused=paused)
        return self._call(self._schedules.CreateSchedule, request)

    def get_schedule(self, schedule_id):
        return self._call(self._schedules.GetSchedule,
                          schedules_pb2.GetScheduleRequest(id=schedule_id))

    def list_schedules(self, page_size=500):
        token = ""
        while True:
            page = self._call(self._schedules.ListSchedules, schedules_pb2.ListSchedulesRequest(
                page_size=page_size, page_token=token))
            yield from page.schedules
            token = page.next_page_token
            if not token:
                return

    def update_schedule(self, schedule):
        return self._call(self._schedules.UpdateSchedule,
                          schedules_pb2.UpdateScheduleRequest(schedule=rq.schedule(schedule)))

    def pause_schedule(self, schedule_id):
        return self._call(self._schedules.PauseSchedule,
                          schedules_pb2.PauseScheduleRequest(id=schedule_id))

    def resume_schedule(self, schedule_id):
        return self._call(self._schedules.ResumeSchedule,
                          schedules_pb2.ResumeScheduleRequest(id=schedule_id))

    def trigger_schedule(self, schedule_id):
        """Submits the schedule's job now; returns the job."""
        return self._call(self._schedules.TriggerSchedule,
                          schedules_pb2.TriggerScheduleRequest(id=schedule_id))

    def delete_schedule(self, schedule_id):
        self._call(self._schedules.DeleteSchedule,
                   schedules_pb2.DeleteScheduleRequest(id=schedule_id))
