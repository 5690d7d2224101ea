"""AsyncClient: Client's calls for asyncio (grpc.aio), with the same arguments and answers.

    async with jobstream.AsyncClient() as c:
        job = await c.submit("report.generate", {"month": "2026-11"})
        async for event in c.watch(job.id):
            ...
"""

import asyncio

import grpc

from jobstream import _requests as rq
from jobstream import _resume
from jobstream.client import Client
from jobstream.connect import Connection
from jobstream.errors import JobFailed
from jobstream.v1 import jobs_pb2, schedules_pb2

Job = jobs_pb2.Job


class AsyncClient:
    """As jobstream.Client; create it inside the event loop that uses it."""

    def __init__(self, address=None, *, token=None, tls=None, timeout=30.0, retry_for=60.0,
                 options=None):
        Client._connect(self, Connection(address, token, tls, options), timeout, retry_for,
                        aio=True)

    address = Client.address

    async def close(self):
        await self._channel.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *_):
        await self.close()

    async def _call(self, method, request, metadata=None, retry=False):
        tries = _resume.Tries(self.retry_for, (grpc.StatusCode.UNAVAILABLE,) if retry else ())
        while True:
            try:
                return await method(request, timeout=self.timeout, metadata=(
                    metadata if metadata is not None else self._conn.metadata))
            except grpc.RpcError as e:
                await asyncio.sleep(tries.failed(e))

    async def submit(self, type, params=None, **options):
        options["request_id"] = rq.request_id(options.get("request_id"))
        return await self._call(self._jobs.Submit, rq.submit_request(type, params, **options),
                                self._conn.with_trace(options.get("traceparent")), retry=True)

    async def submit_batch(self, children, then=None, *, labels=None, request_id=None,
                           webhook=None):
        request = rq.batch_request(children, then, labels=labels,
                                   request_id=rq.request_id(request_id), webhook=webhook)
        response = await self._call(self._jobs.SubmitBatch, request, retry=True)
        return response.parent, list(response.child_ids)

    async def get(self, job_id):
        return await self._call(self._jobs.GetStatus, jobs_pb2.GetStatusRequest(job_id=job_id))

    async def wait(self, job_id, timeout=None):
        wait = _resume.Wait(self.address, job_id, timeout, self.timeout)
        while True:
            request, deadline = wait.request()
            try:
                job = wait.answer(await self._jobs.WaitJob(request, timeout=deadline,
                                                           metadata=self._conn.metadata))
            except grpc.RpcError as e:
                await asyncio.sleep(wait.failed(e))
                continue
            if job is not None:
                return job

    async def result(self, job_id, timeout=None):
        job = await self.wait(job_id, timeout)
        if job.state != Job.SUCCEEDED:
            raise JobFailed(job)
        return rq.python(job.result) if job.HasField("result") else None

    async def watch(self, job_id, after=0):
        """An async iterator of the job's events, resumed as Client.watch resumes."""
        watch = _resume.Watch(job_id, after, self.retry_for)
        while True:
            call = self._jobs.WatchJob(watch.request(), metadata=self._conn.metadata)
            try:
                async for event in call:
                    if watch.fresh(event):
                        yield event
                return
            except grpc.RpcError as e:
                pause = watch.tries.failed(e)
            finally:
                call.cancel()
            await asyncio.sleep(pause)

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

    async def pause_type(self, type, reason=""):
        return await self._call(self._jobs.PauseType,
                                jobs_pb2.PauseTypeRequest(type=type, reason=reason))

    async def resume_type(self, type):
        return await self._call(self._jobs.ResumeType, jobs_pb2.ResumeTypeRequest(type=type))

    async def whoami(self):
        return await self._call(self._jobs.WhoAmI, jobs_pb2.WhoAmIRequest())

    async def fetch_artifact(self, job_id, name, path):
        """As Client.fetch_artifact (the file's sha256 is checked off the event loop)."""
        fetch = _resume.Fetch(job_id, name, path, self.retry_for)
        while True:
            call = self._jobs.GetArtifact(fetch.request(), metadata=self._conn.metadata)
            try:
                with fetch.open() as out:
                    async for message in call:
                        fetch.take(message, out)
                return await asyncio.get_running_loop().run_in_executor(None, fetch.finish)
            except grpc.RpcError as e:
                pause = fetch.failed(e)
            finally:
                call.cancel()
            await asyncio.sleep(pause)

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
