"""AsyncClient: Client's calls for asyncio (grpc.aio), with the same arguments and answers.

    async with jobstream.AsyncClient() as c:
        job = await c.submit("report.generate", {"month": "2026-11"})
        async for event in c.watch(job.id):
            ...
"""

import asyncio
import os
import time
import uuid

import grpc

from jobstream import _requests as rq
from jobstream.client import _sha256, backoff
from jobstream.connect import Connection
from jobstream.errors import (TRANSIENT, DeadlineExceeded, JobFailed, JobstreamError,
                              from_rpc_error)
from jobstream.v1 import jobs_pb2, jobs_pb2_grpc, schedules_pb2, schedules_pb2_grpc

Job = jobs_pb2.Job
_WAIT_CHUNK = 300.0


class AsyncClient:
    """As jobstream.Client; create it inside the event loop that uses it."""

    def __init__(self, address=None, *, token=None, tls=None, timeout=30.0, retry_for=60.0,
                 options=None):
        self._conn = Connection(address, token, tls, options)
        self._channel = self._conn.aio_channel()
        self._jobs = jobs_pb2_grpc.JobServiceStub(self._channel)
        self._schedules = schedules_pb2_grpc.ScheduleServiceStub(self._channel)
        self.timeout = timeout
        self.retry_for = retry_for

    @property
    def address(self):
        return self._conn.address

    async def close(self):
        await self._channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *_):
        await self.close()

    async def _call(self, method, request, metadata=None):
        try:
            return await method(request, timeout=self.timeout,
                                metadata=metadata if metadata is not None else self._conn.metadata)
        except grpc.RpcError as e:
            raise from_rpc_error(e) from None

    async def _retrying(self, method, request, metadata=None):
        give_up = time.monotonic() + self.retry_for
        attempt = 0
        while True:
            try:
                return await method(request, timeout=self.timeout, metadata=(
                    metadata if metadata is not None else self._conn.metadata))
            except grpc.RpcError as e:
                if e.code() != grpc.StatusCode.UNAVAILABLE or time.monotonic() > give_up:
                    raise from_rpc_error(e) from None
            await asyncio.sleep(backoff(attempt))
            attempt += 1

    async def submit(self, type, params=None, **options):
        options.setdefault("request_id", "py-" + uuid.uuid4().hex)
        return await self._retrying(self._jobs.Submit, rq.submit_request(type, params, **options),
                                    self._conn.with_trace(options.get("traceparent")))

    async def submit_batch(self, children, then=None, *, labels=None, request_id=None,
                           webhook=None):
        request = rq.batch_request(children, then, labels=labels,
                                   request_id=request_id or "py-" + uuid.uuid4().hex,
                                   webhook=webhook)
        response = await self._retrying(self._jobs.SubmitBatch, request)
        return response.parent, list(response.child_ids)

    async def get(self, job_id):
        return await self._call(self._jobs.GetStatus, jobs_pb2.GetStatusRequest(job_id=job_id))

    async def wait(self, job_id, timeout=None):
        end = None if timeout is None else time.monotonic() + timeout
        attempt = 0
        while True:
            left = _WAIT_CHUNK if end is None else max(0.0, min(_WAIT_CHUNK, end - time.monotonic()))
            request = jobs_pb2.WaitJobRequest(job_id=job_id)
            rq.set_duration(request.timeout, left)
            try:
                job = await self._jobs.WaitJob(request, timeout=left + self.timeout,
                                               metadata=self._conn.metadata)
                attempt = 0
            except grpc.RpcError as e:
                if e.code() not in TRANSIENT + (grpc.StatusCode.DEADLINE_EXCEEDED,):
                    raise from_rpc_error(e) from None
                if end is not None and time.monotonic() >= end:
                    raise DeadlineExceeded("job %s: no answer from %s within %ss"
                                           % (job_id, self.address, timeout)) from None
                await asyncio.sleep(backoff(attempt))
                attempt += 1
                continue
            if rq.final(job):
                return job
            if end is not None and time.monotonic() >= end:
                raise DeadlineExceeded("job %s is still %s after %ss"
                                       % (job_id, Job.State.Name(job.state), timeout))

    async def result(self, job_id, timeout=None):
        job = await self.wait(job_id, timeout)
        if job.state != Job.SUCCEEDED:
            raise JobFailed(job)
        return rq.python(job.result) if job.HasField("result") else None

    async def watch(self, job_id, after=0):
        """An async iterator of the job's events, resumed as Client.watch resumes."""
        last = after
        failing_since = None
        attempt = 0
        while True:
            call = self._jobs.WatchJob(jobs_pb2.WatchJobRequest(job_id=job_id, after_sequence=last),
                                       metadata=self._conn.metadata, wait_for_ready=True)
            try:
                async for event in call:
                    if event.sequence <= last:
                        continue
                    last = event.sequence
                    failing_since, attempt = None, 0
                    yield event
                return
            except grpc.RpcError as e:
                if e.code() not in TRANSIENT:
                    raise from_rpc_error(e) from None
                now = time.monotonic()
                failing_since = failing_since or now
                if now - failing_since > self.retry_for:
                    raise from_rpc_error(e) from None
            finally:
                call.cancel()
            await asyncio.sleep(backoff(attempt))
            attempt += 1

    async def cancel(self, job_id, reason=""):
        return await self._call(self._jobs.CancelJob,
                                jobs_pb2.CancelJobRequest(job_id=job_id, reason=reason))

    async def retry(self, job_id, reason="", as_new=False, params=None):
        request = jobs_pb2.RetryJobRequest(job_id=job_id, reason=reason, as_new=as_new)
        if params is not None:
            request.params.CopyFrom(rq.struct(params, "params"))
        return await self._call(self._jobs.RetryJob, request)

    async def delete(self, job_id):
        await self._call(self._jobs.DeleteJob, jobs_pb2.DeleteJobRequest(job_id=job_id))

    async def list(self, *, states=None, type="", labels=None, parent=None, created_after=None,
                   created_before=None, page_size=500):
        token = ""
        while True:
            request = rq.list_request(states_=states, type=type, labels=labels, parent=parent,
                                      created_after=created_after,
                                      created_before=created_before, page_size=page_size,
                                      page_token=token)
            page = await self._call(self._jobs.ListJobs, request)
            for job in page.jobs:
                yield job
            token = page.next_page_token
            if not token:
                return

    async def types(self):
        return list((await self._call(self._jobs.ListJobTypes,
                                      jobs_pb2.ListJobTypesRequest())).types)

    async def whoami(self):
        return await self._call(self._jobs.WhoAmI, jobs_pb2.WhoAmIRequest())

    async def fetch_artifact(self, job_id, name, path):
        """As Client.fetch_artifact (the file is written from the event loop's thread)."""
        part = path + ".part"
        attempt = 0
        give_up = None
        while True:
            offset = os.path.getsize(part) if os.path.exists(part) else 0
            call = self._jobs.GetArtifact(
                jobs_pb2.GetArtifactRequest(job_id=job_id, name=name, offset=offset),
                metadata=self._conn.metadata, wait_for_ready=True)
            artifact = None
            try:
                with open(part, "ab") as out:
                    async for message in call:
                        if message.HasField("artifact"):
                            artifact = message.artifact
                        if message.data:
                            out.write(message.data)
                if artifact is None:
                    raise JobstreamError("artifact %s of job %s: the server sent no description"
                                         % (name, job_id), grpc.StatusCode.INTERNAL)
                if await asyncio.get_running_loop().run_in_executor(None, _sha256, part) != \
                        artifact.sha256:
                    os.remove(part)
                    raise JobstreamError("artifact %s of job %s: the bytes fetched do not match "
                                         "its sha256" % (name, job_id), grpc.StatusCode.DATA_LOSS)
                os.replace(part, path)
                return artifact
            except grpc.RpcError as e:
                code = e.code()
                if code in (grpc.StatusCode.ABORTED, grpc.StatusCode.OUT_OF_RANGE):
                    os.remove(part)
                elif code not in TRANSIENT:
                    raise from_rpc_error(e) from None
                now = time.monotonic()
                give_up = give_up or now + self.retry_for
                if now > give_up:
                    raise from_rpc_error(e) from None
            finally:
                call.cancel()
            await asyncio.sleep(backoff(attempt))
            attempt += 1

    async def create_schedule(self, schedule, paused=False):
        return await self._call(self._schedules.CreateSchedule, schedules_pb2.CreateScheduleRequest(
            schedule=rq.schedule(schedule), paused=paused))

    async def get_schedule(self, schedule_id):
        return await self._call(self._schedules.GetSchedule,
                                schedules_pb2.GetScheduleRequest(id=schedule_id))

    async def list_schedules(self, page_size=500):
        token = ""
        while True:
            page = await self._call(self._schedules.ListSchedules,
                                    schedules_pb2.ListSchedulesRequest(page_size=page_size,
                                                                       page_token=token))
            for s in page.schedules:
                yield s
            token = page.next_page_token
            if not token:
                return

    async def update_schedule(self, schedule):
        return await self._call(self._schedules.UpdateSchedule,
                                schedules_pb2.UpdateScheduleRequest(schedule=rq.schedule(schedule)))

    async def pause_schedule(self, schedule_id):
        return await self._call(self._schedules.PauseSchedule,
                                schedules_pb2.PauseScheduleRequest(id=schedule_id))

    async def resume_schedule(self, schedule_id):
        return await self._call(self._schedules.ResumeSchedule,
                                schedules_pb2.ResumeScheduleRequest(id=schedule_id))

    async def trigger_schedule(self, schedule_id):
        return await self._call(self._schedules.TriggerSchedule,
                                schedules_pb2.TriggerScheduleRequest(id=schedule_id))

    async def delete_schedule(self, schedule_id):
        await self._call(self._schedules.DeleteSchedule,
                         schedules_pb2.DeleteScheduleRequest(id=schedule_id))
