"""The Python example worker end to end: a real server, stubs generated from proto/ with
Debian's protoc and grpc_python_plugin, and examples/python/worker.py as a process."""

import atexit
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("JOBSTREAM_BIN_DIR", os.path.join(ROOT, "build"))
STUBS = tempfile.mkdtemp(prefix="jobstream-pystubs-")
atexit.register(shutil.rmtree, STUBS, True)
subprocess.run([os.path.join(ROOT, "examples/python/gen_stubs.sh"), STUBS], check=True)
sys.path.insert(0, STUBS)

import grpc  # noqa: E402
from google.protobuf import json_format  # noqa: E402
from jobstream.v1 import jobs_pb2, jobs_pb2_grpc  # noqa: E402


WORKER_TOKEN = "py-worker-token-0123456789"
CLIENT_TOKEN = "py-client-token-0123456789"
AUTH = [("authorization", "Bearer " + CLIENT_TOKEN)]


class PythonWorkerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.TemporaryDirectory(prefix="jobstream-pytest-")
        # A server with tokens: the worker presents its own ($JOBSTREAM_TOKEN), this test
        # another of the same tenant.
        tokens = os.path.join(cls.dir.name, "tokens.json")
        with open(tokens, "w") as f:
            json.dump({"tokens": [
                {"sha256": hashlib.sha256(WORKER_TOKEN.encode()).hexdigest(),
                 "name": "py-worker", "tenant": "acme", "roles": ["work"]},
                {"sha256": hashlib.sha256(CLIENT_TOKEN.encode()).hexdigest(),
                 "name": "py-client", "tenant": "acme", "roles": ["submit", "read"]}]}, f)
        config = os.path.join(cls.dir.name, "config.json")
        with open(config, "w") as f:
            json.dump({"types": [{"name": "thumbnail", "maxAttempts": 2,
                                  "external": {"leaseDuration": "2s"}}]}, f)
        cls.server = subprocess.Popen(
            [os.path.join(BIN, "server/jobstream-server"), "--listen=127.0.0.1:0",
             "--data_dir=" + os.path.join(cls.dir.name, "data"), "--config=" + config,
             "--retry_backoff=0s", "--auth_tokens=" + tokens], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = cls.server.stdout.readline()
        assert line.startswith("listening on "), line
        cls.address = line.split()[-1]
        cls.worker = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "examples/python/worker.py"),
             "--server=" + cls.address, "--type=thumbnail", "--worker-id=py-1"],
            env=dict(os.environ, PYTHONPATH=STUBS, JOBSTREAM_TOKEN=WORKER_TOKEN), stderr=subprocess.PIPE, text=True)
        cls.channel = grpc.insecure_channel(cls.address)
        cls.jobs = jobs_pb2_grpc.JobServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.worker.send_signal(signal.SIGTERM)
        cls.worker.wait(timeout=30)
        cls.server.send_signal(signal.SIGTERM)
        cls.server.wait(timeout=30)
        cls.channel.close()
        cls.dir.cleanup()

    def submit(self, params):
        request = jobs_pb2.SubmitRequest(type="thumbnail")
        json_format.ParseDict(params, request.params)
        return self.jobs.Submit(request, timeout=10, metadata=AUTH)

    def follow(self, job_id):
        request = jobs_pb2.WatchJobRequest(job_id=job_id)
        return list(self.jobs.WatchJob(request, timeout=60, metadata=AUTH))

    def test_jobs_run_with_steps_progress_and_results(self):
        ids = [self.submit({"images": ["a.png", "b.png", "c.png"][: n + 1]}).id for n in range(3)]
        for n, job_id in enumerate(ids):
            events = self.follow(job_id)
            types = [jobs_pb2.JobEvent.Type.Name(e.type) for e in events]
            self.assertEqual(types[:2], ["CREATED", "STARTED"])
            self.assertEqual(types[-1], "SUCCEEDED")
            self.assertEqual(types.count("STEP"), n + 1)
            self.assertIn("PROGRESS", types)
            final = events[-1].status
            self.assertEqual(final.worker_id, "py-1")
            self.assertEqual(json_format.MessageToDict(final.result)["thumbnails"], n + 1)
            self.assertEqual([e.sequence for e in events], list(range(1, len(events) + 1)))

    def test_the_worker_gets_its_attempts_span_in_the_callers_trace(self):
        caller = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
        request = jobs_pb2.SubmitRequest(type="thumbnail")
        job = self.jobs.Submit(request, timeout=10, metadata=AUTH + [("traceparent", caller)])
        self.assertEqual(job.trace.trace_id, "0af7651916cd43dd8448eb211c80319c")
        self.assertEqual(job.trace.parent_span_id, "b7ad6b7169203331")
        final = self.follow(job.id)[-1].status
        got = json_format.MessageToDict(final.result)["traceparent"]
        version, trace_id, span_id, flags = got.split("-")
        self.assertEqual((version, trace_id, flags), ("00", job.trace.trace_id, "01"))
        self.assertNotIn(span_id, (job.trace.span_id, "b7ad6b7169203331"))  # the attempt's own
        self.assertEqual(len(span_id), 16)

    def test_a_permanent_error_fails_without_a_retry(self):
        events = self.follow(self.submit({"fail": True}).id)
        final = events[-1].status
        self.assertEqual(jobs_pb2.Job.State.Name(final.state), "FAILED")
        self.assertEqual(final.attempt, 1)
        self.assertIn("PermanentError: cannot read a.png", final.error.message)

    def test_cancel_reaches_the_handler(self):
        job = self.submit({"images": ["x%d.png" % i for i in range(50)], "tick_s": 0.2})
        deadline = time.time() + 20
        while time.time() < deadline:
            status = self.jobs.GetStatus(jobs_pb2.GetStatusRequest(job_id=job.id), metadata=AUTH)
            if status.state == jobs_pb2.Job.RUNNING and status.progress.step:
                break
            time.sleep(0.05)
        self.jobs.CancelJob(jobs_pb2.CancelJobRequest(job_id=job.id), metadata=AUTH)
        events = self.follow(job.id)
        self.assertEqual(jobs_pb2.Job.State.Name(events[-1].status.state), "CANCELLED")
        self.assertLess(events[-1].status.progress.fraction, 0.5, "stopped early, not finished")


if __name__ == "__main__":
    unittest.main(verbosity=2)
