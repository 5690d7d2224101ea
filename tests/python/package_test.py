"""The jobstream Python package (clients/python) against real servers: run by the Python of
a venv the package was pip-installed into (tests/python/install_package.sh), with its
workers as processes (`python -m jobstream.worker tasks:worker`).

Each class starts its own server; run one with `package_test.py ClassName`.
"""

import asyncio
import faulthandler
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import unittest

import jobstream
from tasks import pattern

HERE = os.path.dirname(os.path.abspath(__file__))
BIN = os.environ.get("JOBSTREAM_BIN_DIR", os.path.join(HERE, "..", "..", "build"))
TYPES = [{"name": "py.steps", "external": {"leaseDuration": "20s"}, "maxAttempts": 3},
         {"name": "py.block", "external": {"leaseDuration": "2s"}, "maxAttempts": 3},
         {"name": "py.files", "external": {"leaseDuration": "20s"}},
         {"name": "py.async", "external": {"leaseDuration": "20s"}}]
CLIENT_TOKEN = "py-client-token-0123456789"
WORKER_TOKEN = "py-worker-token-0123456789"
READER_TOKEN = "py-reader-token-0123456789"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until(what, check, timeout=60.0):
    """Waits for check() to be true (an event, not a time), failing with `what`."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("timed out waiting for " + what)


class Server:
    """jobstream-server on a fixed loopback port (so a restart keeps its address)."""

    def __init__(self, dir, flags=()):
        self.dir = dir
        self.port = free_port()
        self.address = "127.0.0.1:%d" % self.port
        config = os.path.join(dir, "config.json")
        with open(config, "w") as f:
            json.dump({"types": TYPES}, f)
        self.flags = ["--listen=" + self.address, "--data_dir=" + os.path.join(dir, "data"),
                      "--config=" + config, "--retry_backoff=0s", "--metrics_listen=off"]
        self.flags += list(flags)
        self.log = os.path.join(dir, "server.log")
        self.start()

    def start(self):
        with open(self.log, "a") as log:
            self.process = subprocess.Popen(
                [os.path.join(BIN, "server/jobstream-server")] + self.flags,
                stdout=subprocess.PIPE, stderr=log, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            raise AssertionError("server did not start: %r\n%s" % (line, self.tail()))

    def kill9(self):
        self.process.kill()
        self.process.wait()
        self.process.stdout.close()

    def stop(self):
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(timeout=60)
        self.process.stdout.close()

    def tail(self):
        with open(self.log) as f:
            return f.read()[-3000:]


class Workers:
    """`python -m jobstream.worker tasks:worker` processes, stopped at the end."""

    def __init__(self, dir, server, env=None):
        self.dir, self.server, self.env = dir, server, dict(env or {})
        self.started = []

    def start(self, **env):
        n = len(self.started)
        full = dict(os.environ, JOBSTREAM_SERVER=self.server.address, PYTHONPATH=HERE,
                    TASKS_WORKER_ID="py-%d" % n, **self.env)
        full.update({k: str(v) for k, v in env.items()})
        path = os.path.join(self.dir, "worker-%d.log" % n)
        with open(path, "w") as log:
            p = subprocess.Popen([sys.executable, "-m", "jobstream.worker", "tasks:worker"],
                                 cwd=HERE, env=full, stdout=log, stderr=subprocess.STDOUT)
        p.log = path
        self.started.append(p)
        return p

    def stop_all(self):
        for p in self.started:
            if p.poll() is None:
                p.kill()
            p.wait()

    def logs(self):
        out = []
        for p in self.started:
            with open(p.log) as f:
                out.append("--- %s\n%s" % (p.log, f.read()[-2000:]))
        return "\n".join(out)


class ServerCase(unittest.TestCase):
    """A server (and the workers a test starts) per class, its logs shown when a test fails."""

    server_flags = ()
    worker_env = {}

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory(prefix="jobstream-pkgtest-")
        cls.dir = cls.tmp.name
        cls.server = Server(cls.dir, cls.make_flags())
        cls.workers = Workers(cls.dir, cls.server, cls.worker_env)

    @classmethod
    def make_flags(cls):
        return cls.server_flags

    @classmethod
    def tearDownClass(cls):
        cls.workers.stop_all()
        cls.server.stop()
        cls.tmp.cleanup()

    def run(self, result=None):
        failures = len(result.failures) + len(result.errors) if result else 0
        out = super().run(result)
        if result and len(result.failures) + len(result.errors) > failures:
            print("\n=== server log\n%s\n=== worker logs\n%s" % (self.server.tail(),
                                                               self.workers.logs()),
                  file=sys.stderr)
        return out

    def client(self, **kw):
        return jobstream.Client(self.server.address, **kw)


def kinds(events):
    return [jobstream.EventType.Name(e.type) for e in events]


class ClientTest(ServerCase):
    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.workers.start()
        cls.c = jobstream.Client(cls.server.address)

    @classmethod
    def tearDownClass(cls):
        cls.c.close()
        super().tearDownClass()

    def test_a_job_submitted_runs_in_the_worker_and_is_followed_to_its_result(self):
        job = self.c.submit("py.steps", {"steps": 3}, labels={"team": "data"}, priority=5)
        self.assertEqual(jobstream.State.Name(job.state), "QUEUED")
        self.assertTrue(job.request_id.startswith("py-"))  # made up: retries never make two
        events = list(self.c.watch(job.id))
        self.assertEqual(kinds(events), ["CREATED", "STARTED", "STEP", "STEP", "STEP",
                                         "PROGRESS", "SUCCEEDED"])
        self.assertEqual([e.sequence for e in events], list(range(1, 8)))
        self.assertEqual([e.status.progress.step for e in events[2:5]],
                         ["step 1", "step 2", "step 3"])
        self.assertEqual(self.c.result(job.id), {"steps": 3.0, "attempt": 1.0, "worker": "py-0"})
        done = self.c.wait(job.id, timeout=5)
        self.assertEqual(done.state, jobstream.State.SUCCEEDED)
        self.assertEqual(done.labels["team"], "data")
        self.assertEqual(self.c.get(job.id).worker_id, "py-0")
        # Watched again after its end, or from the middle: what is left, then the end.
        self.assertEqual([e.sequence for e in self.c.watch(job.id, after=5)], [6, 7])
        self.assertIn(job.id, [j.id for j in self.c.list(type="py.steps", states=["SUCCEEDED"])])

    def test_retryable_fatal_and_other_failures(self):
        retried = self.c.submit("py.steps", {"steps": 1, "fail": "retry"})
        self.assertEqual(self.c.result(retried.id, timeout=60)["attempt"], 2.0)
        kinds_seen = kinds(self.c.watch(retried.id))
        self.assertIn("RETRYING", kinds_seen)
        fatal = self.c.submit("py.steps", {"steps": 1, "fail": "fatal"})
        with self.assertRaises(jobstream.JobFailed) as failed:
            self.c.result(fatal.id, timeout=60)
        self.assertEqual(failed.exception.job.state, jobstream.State.FAILED)
        self.assertEqual(failed.exception.job.attempt, 1)
        self.assertEqual(failed.exception.job.error.message, "Fatal: cannot do it")
        crash = self.c.wait(self.c.submit("py.steps", {"steps": 1, "fail": "crash"}).id, 60)
        self.assertEqual(crash.state, jobstream.State.FAILED)
        self.assertEqual(crash.attempt, 3)  # any other exception is retried
        self.assertEqual(crash.error.details["exception"], "KeyError")
        self.assertIn("raise KeyError", crash.error.details["traceback"])

    def test_bad_input_raises_typed_errors_naming_what_is_wrong(self):
        with self.assertRaises(jobstream.InvalidArgument) as e:
            self.c.submit("no.such.type")
        self.assertEqual(e.exception.code.name, "INVALID_ARGUMENT")
        self.assertIn("no.such.type", e.exception.message)
        self.assertIn("py.steps", e.exception.message)  # the declared types are listed
        with self.assertRaises(jobstream.InvalidArgument) as e:
            self.c.submit("py.steps", priority=5000)
        self.assertIn("priority", e.exception.message)
        with self.assertRaises(jobstream.InvalidArgument):
            self.c.get("not an id")
        with self.assertRaises(jobstream.NotFound):
            self.c.get("0" * 26)
        with self.assertRaises(TypeError):
            self.c.submit("py.steps", params=["not", "a", "dict"])
        with self.assertRaises(ValueError):
            self.c.submit("py.steps", on_dependency_failure="sometimes")
        done = self.c.submit("py.steps", {"steps": 0})
        self.c.wait(done.id, 60)
        with self.assertRaises(jobstream.FailedPrecondition):
            self.c.cancel(done.id)
        with self.assertRaises(jobstream.NotFound):
            self.c.fetch_artifact(done.id, "nothing.bin", os.path.join(self.dir, "x"))
        with self.assertRaises(jobstream.DeadlineExceeded):
            self.c.wait(self.c.submit("py.block", {"seconds": 600}).id, timeout=0.2)
        self.assertIsInstance(jobstream.DeadlineExceeded("x"), TimeoutError)

    def test_dependencies_unique_keys_batches_and_paging(self):
        first = self.c.submit("py.steps", {"steps": 1})
        after = self.c.submit("py.steps", {"steps": 1}, depends_on=[first])
        self.assertEqual(list(after.depends_on), [first.id])
        self.assertEqual(self.c.result(after.id, 60)["steps"], 1.0)
        held = self.c.submit("py.block", {"seconds": 600}, unique_key="nightly",
                             unique_for="active")
        again = self.c.submit("py.block", {"seconds": 600}, unique_key="nightly",
                              unique_for="active")
        self.assertTrue(again.deduplicated)
        self.assertEqual(again.id, held.id)
        self.c.cancel(held.id)

        parent, children = self.c.submit_batch(
            [{"type": "py.steps", "params": {"steps": 1, "n": i}} for i in range(12)],
            then={"type": "py.steps", "params": {"steps": 1}}, labels={"sweep": "a"})
        self.assertEqual(len(children), 12)
        events = list(self.c.watch(parent.id))
        self.assertEqual(kinds(events).count("CHILD"), 12)
        self.assertEqual(events[-1].status.batch.succeeded, 12)
        self.assertEqual(jobstream.EventType.Name(events[-1].type), "SUCCEEDED")
        listed = list(self.c.list(parent=parent, page_size=5))  # three pages
        self.assertEqual(sorted(j.id for j in listed if j.id in children), sorted(children))

    def test_types_pause_and_resume(self):
        info = self.c.pause_type("py.async", reason="deploying")
        self.assertEqual((info.name, info.pause.reason), ("py.async", "deploying"))
        job = self.c.submit("py.async")
        paused = {t.name: t for t in self.c.types()}["py.async"]
        self.assertEqual(paused.pause.reason, "deploying")
        self.assertFalse(self.c.resume_type("py.async").HasField("pause"))
        self.assertEqual(self.c.result(job.id, 60)["async"], True)
        with self.assertRaises(jobstream.InvalidArgument):
            self.c.pause_type("no.such.type")

    def test_schedules(self):
        made = self.c.create_schedule({"id": "py-nightly", "cron": "30 2 * * *",
                                       "timeZone": "Europe/Berlin",
                                       "job": {"type": "py.steps", "params": {"steps": 1},
                                               "concurrencyKey": "acme"}}, paused=True)
        self.assertTrue(made.paused)
        job = self.c.trigger_schedule("py-nightly")
        self.assertEqual(job.labels["jobstream/schedule"], "py-nightly")
        self.assertEqual(job.concurrency_key, "acme")
        self.assertEqual(self.c.get_schedule("py-nightly").last_job_id, job.id)
        self.assertIn("py-nightly", [s.id for s in self.c.list_schedules()])
        resumed = self.c.resume_schedule("py-nightly")
        self.assertEqual(len(resumed.next_fire_times), 5)
        with self.assertRaises(jobstream.InvalidArgument) as e:
            self.c.update_schedule({"id": "py-nightly", "cron": "61 * * * *",
                                    "job": {"type": "py.steps"}})
        self.assertIn("schedule.cron", e.exception.message)
        self.c.delete_schedule("py-nightly")
        with self.assertRaises(jobstream.NotFound):
            self.c.get_schedule("py-nightly")

    def test_the_async_client_and_an_async_function(self):
        async def main():
            async with jobstream.AsyncClient(self.server.address) as c:
                job = await c.submit("py.async")
                events = [e async for e in c.watch(job.id)]
                self.assertEqual(kinds(events), ["CREATED", "STARTED", "STEP", "STEP",
                                                 "PROGRESS", "SUCCEEDED"])
                self.assertEqual(await c.result(job.id), {"async": True, "attempt": 1.0})
                failing = await c.submit("py.async", {"fail": True})
                with self.assertRaises(jobstream.JobFailed) as failed:
                    await c.result(failing.id, timeout=60)
                self.assertEqual(failed.exception.job.error.message, "Fatal: async failure")
                listed = [j.id async for j in c.list(type="py.async", page_size=1)]
                self.assertEqual(sorted(listed), sorted([job.id, failing.id]))
                with self.assertRaises(jobstream.NotFound):
                    await c.get("0" * 26)
                parent, children = await c.submit_batch([{"type": "py.async"}] * 3)
                self.assertEqual((await c.wait(parent.id, 60)).batch.succeeded, 3)

        asyncio.run(main())


class WorkerTest(ServerCase):
    def setUp(self):
        self.c = self.client()
        self.marker = os.path.join(self.dir, "%s.marker" % self._testMethodName)

    def tearDown(self):
        self.workers.stop_all()
        self.c.close()

    def marks(self):
        if not os.path.exists(self.marker):
            return []
        with open(self.marker) as f:
            return f.read().split("\n")[:-1]

    def test_a_cancel_reaches_the_running_function(self):
        self.workers.start()
        job = self.c.submit("py.block", {"marker": self.marker})
        until("the function to start", lambda: self.marks() == ["started 1"])
        self.c.cancel(job.id, reason="not needed")
        ended = self.c.wait(job.id, 60)
        self.assertEqual(jobstream.State.Name(ended.state), "CANCELLED")
        self.assertEqual(self.marks(), ["started 1", "cancelled 1"])

    def test_a_worker_killed_mid_job_leaves_it_to_be_retried(self):
        first = self.workers.start(TASKS_CONCURRENCY=1)
        gate = self.marker + ".gate"  # opened once the first attempt's worker is dead
        job = self.c.submit("py.block", {"marker": self.marker, "gate": gate})
        until("the first attempt to start", lambda: self.marks() == ["started 1"])
        first.kill()  # kill -9: no release, no report; its 2 s lease runs out
        first.wait()
        open(gate, "w").close()
        self.workers.start()
        self.assertEqual(self.c.result(job.id, 60), {"attempt": 2.0})
        self.assertEqual(self.marks(), ["started 1", "started 2", "finished 2"])
        self.assertIn("RETRYING", kinds(self.c.watch(job.id)))

    def test_a_silent_function_keeps_its_lease_by_heartbeats_in_any_time_zone(self):
        # py.block's lease is 2 s and the worker's heartbeat 5 s at most: only a lease
        # length read right (a third of it, whatever the local time zone) keeps the job.
        self.workers.start(TZ="America/Los_Angeles", TASKS_HEARTBEAT=5)
        job = self.c.submit("py.block", {"marker": self.marker, "seconds": 3})
        self.assertEqual(self.c.result(job.id, 60), {"attempt": 1.0})
        self.assertEqual(self.marks(), ["started 1", "finished 1"])

    def test_sigterm_lets_running_jobs_finish_and_gives_back_the_rest(self):
        # Finishing within the drain timeout: the job ends where it ran, the worker exits 0.
        # The job runs until the test opens its gate, so it is running when SIGTERM comes.
        w = self.workers.start(TASKS_CONCURRENCY=1, TASKS_DRAIN_TIMEOUT=60)
        gate = self.marker + ".gate"
        job = self.c.submit("py.block", {"marker": self.marker, "gate": gate})
        until("the job to start", lambda: self.marks() == ["started 1"])
        w.send_signal(signal.SIGTERM)
        with self.assertRaises(subprocess.TimeoutExpired):
            w.wait(timeout=1)  # draining: it waits for the job
        open(gate, "w").close()
        self.assertEqual(w.wait(timeout=60), 0)
        self.assertEqual(self.c.get(job.id).state, jobstream.State.SUCCEEDED)
        self.assertEqual(self.marks(), ["started 1", "finished 1"])

        # Still running when the drain timeout passes: given back (ReleaseJob), queued at
        # once without losing an attempt, told to stop; another worker runs it.
        os.remove(self.marker)
        w = self.workers.start(TASKS_CONCURRENCY=1, TASKS_DRAIN_TIMEOUT=0.3)
        job = self.c.submit("py.block", {"marker": self.marker, "seconds": 600})
        until("the job to start", lambda: self.marks() == ["started 1"])
        w.send_signal(signal.SIGTERM)
        self.assertEqual(w.wait(timeout=60), 0)
        given_back = self.c.get(job.id)
        self.assertEqual(jobstream.State.Name(given_back.state), "QUEUED")
        self.assertEqual(self.marks()[-1], "cancelled 1")  # the function saw it
        self.workers.start()
        until("another worker to take it", lambda: self.marks()[-1:] == ["started 1"])
        self.c.cancel(job.id)
        self.assertEqual(self.c.wait(job.id, 60).state, jobstream.State.CANCELLED)

    def test_artifacts_of_0_bytes_and_50_mib_arrive_whole_and_checked(self):
        self.workers.start()
        upload = os.path.join(self.dir, "report.txt")
        with open(upload, "w") as f:
            f.write("a report\n")
        small = self.c.submit("py.files", {"size": 0, "name": "empty.bin", "path": upload})
        big = self.c.submit("py.files", {"size": 50 << 20, "name": "big.bin"})
        self.c.result(small.id, 60)
        self.c.result(big.id, 120)

        out = os.path.join(self.dir, "empty.out")
        artifact = self.c.fetch_artifact(small.id, "empty.bin", out)
        self.assertEqual((artifact.size, os.path.getsize(out)), (0, 0))
        self.assertEqual(artifact.sha256, hashlib.sha256(b"").hexdigest())
        report = self.c.fetch_artifact(small.id, "report.txt", out + ".txt")
        self.assertTrue(report.content_type.startswith("text/plain"), report.content_type)
        with open(out + ".txt") as f:
            self.assertEqual(f.read(), "a report\n")

        want = hashlib.sha256()
        for chunk in pattern(50 << 20):
            want.update(chunk)
        out = os.path.join(self.dir, "big.out")
        artifact = self.c.fetch_artifact(big.id, "big.bin", out)
        self.assertEqual(artifact.size, 50 << 20)
        self.assertEqual(artifact.sha256, want.hexdigest())
        with open(out, "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), want.hexdigest())

        # A fetch cut off earlier goes on from where it stopped; bytes that do not match
        # are refused (DATA_LOSS) and thrown away.
        again = os.path.join(self.dir, "again.out")
        with open(again + ".part", "wb") as f:
            f.write(pattern(3 << 20)[0] * 3)
        self.c.fetch_artifact(big.id, "big.bin", again)
        with open(again, "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), want.hexdigest())
        with open(again + "2.part", "wb") as f:
            f.write(b"x" * 1000)
        with self.assertRaises(jobstream.JobstreamError) as e:
            self.c.fetch_artifact(big.id, "big.bin", again + "2")
        self.assertEqual(e.exception.code.name, "DATA_LOSS")
        self.assertFalse(os.path.exists(again + "2.part"))


class RestartTest(ServerCase):
    def test_a_watch_across_a_kill9_and_restart_has_no_gap_and_no_repeat(self):
        self.workers.start()
        c = self.client(retry_for=120)
        job = c.submit("py.steps", {"steps": 30, "sleep": 0.1})
        events, seen_three = [], threading.Event()

        def follow():
            for e in c.watch(job.id):
                events.append(e)
                if len(events) >= 3:
                    seen_three.set()

        watcher = threading.Thread(target=follow)
        watcher.start()
        self.assertTrue(seen_three.wait(60))
        self.server.kill9()
        time.sleep(0.5)
        self.server.start()
        watcher.join(120)
        self.assertFalse(watcher.is_alive())
        sequences = [e.sequence for e in events]
        self.assertEqual(sequences, list(range(1, len(events) + 1)))
        self.assertEqual(kinds(events)[-1], "SUCCEEDED")
        self.assertEqual(kinds(events).count("STEP"), 30)
        c.close()

    def test_submit_waits_out_a_restart(self):
        c = self.client(retry_for=120)
        self.server.kill9()
        restart = threading.Timer(1.0, self.server.start)
        restart.start()
        job = c.submit("py.steps", {"steps": 0})  # sent while the server is down
        restart.join()
        self.assertEqual(c.get(job.id).id, job.id)
        c.close()


    def test_z_calls_give_up_after_retry_for_when_the_server_stays_down(self):  # runs last
        c = self.client(retry_for=1.5)
        job = c.submit("py.steps", {"steps": 0})
        self.server.kill9()
        start = time.monotonic()
        with self.assertRaises(jobstream.Unavailable):
            list(c.watch(job.id))
        with self.assertRaises(jobstream.Unavailable):
            c.submit("py.steps")
        with self.assertRaises(jobstream.Unavailable):
            c.fetch_artifact(job.id, "x", os.path.join(self.dir, "x"))
        self.assertLess(time.monotonic() - start, 30)
        c.close()


def _certificates(dir):
    """A CA for the server, one for clients, a server and a worker certificate (openssl,
    P-256 keys, made now: nothing committed)."""
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def openssl(*args):
        subprocess.run(["openssl"] + list(args), cwd=dir, check=True, capture_output=True)

    openssl("req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
            "-subj", "/CN=py-test-ca")
    openssl("req", "-x509", *key, "-keyout", "clients.key", "-out", "clients.pem", "-days", "1",
            "-subj", "/CN=py-test-client-ca")
    with open(os.path.join(dir, "server.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", *key, "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-days", "1", "-out", "server.pem", "-extfile", "server.ext")
    openssl("req", *key, "-keyout", "worker.key", "-out", "worker.csr", "-subj", "/CN=worker-1")
    openssl("x509", "-req", "-in", "worker.csr", "-CA", "clients.pem", "-CAkey", "clients.key",
            "-CAcreateserial", "-days", "1", "-out", "worker.pem")
    return lambda name: os.path.join(dir, name)


class TlsAndTokensTest(ServerCase):
    @classmethod
    def make_flags(cls):
        pem = _certificates(cls.dir)
        cls.pem = staticmethod(pem)
        tokens = pem("tokens.json")
        with open(tokens, "w") as f:
            json.dump({"tokens": [
                {"sha256": hashlib.sha256(t.encode()).hexdigest(), "name": name,
                 "tenant": "acme", "roles": roles}
                for t, name, roles in ((CLIENT_TOKEN, "app", ["submit", "read"]),
                                       (WORKER_TOKEN, "worker", ["work"]),
                                       (READER_TOKEN, "dashboard", ["read"]))]}, f)
        cls.worker_env = {"JOBSTREAM_TOKEN": WORKER_TOKEN, "TASKS_TLS_CA": pem("ca.pem"),
                          "TASKS_TLS_CERT": pem("worker.pem"), "TASKS_TLS_KEY": pem("worker.key")}
        return ["--tls_cert=" + pem("server.pem"), "--tls_key=" + pem("server.key"),
                "--tls_client_ca=" + pem("clients.pem"), "--auth_tokens=" + tokens]

    def mtls(self, token):
        return self.client(token=token, timeout=30, retry_for=0, tls=jobstream.TLS(
            ca=self.pem("ca.pem"), cert=self.pem("worker.pem"), key=self.pem("worker.key")))

    def test_a_worker_over_mutual_tls_with_its_token_runs_a_clients_job(self):
        self.workers.start()
        c = self.mtls(CLIENT_TOKEN)
        me = c.whoami()
        self.assertEqual((me.name, me.tenant), ("app", "acme"))
        job = c.submit("py.steps", {"steps": 2})
        self.assertEqual(job.tenant, "acme")
        self.assertEqual(c.result(job.id, 60)["steps"], 2.0)
        self.assertEqual(kinds(c.watch(job.id))[-1], "SUCCEEDED")
        c.close()

    def test_what_is_refused_says_why(self):
        with self.mtls("not-a-known-token-000000") as c:
            with self.assertRaises(jobstream.Unauthenticated):
                c.submit("py.steps")
        with self.mtls(READER_TOKEN) as c:
            with self.assertRaises(jobstream.PermissionDenied) as e:
                c.submit("py.steps")
            self.assertIn("submit", e.exception.message)
        # No client certificate, or plaintext: the connection is refused, not hung.
        no_cert = self.client(token=CLIENT_TOKEN, retry_for=0, timeout=30,
                              tls=jobstream.TLS(ca=self.pem("ca.pem")))
        with self.assertRaises(jobstream.Unavailable):
            no_cert.get("0" * 26)
        no_cert.close()
        with self.client(token=CLIENT_TOKEN, retry_for=0, timeout=30) as plain:
            with self.assertRaises(jobstream.Unavailable):
                plain.get("0" * 26)
        with self.assertRaises(ValueError):
            jobstream.TLS(ca=self.pem("ca.pem"), cert=self.pem("worker.pem"))


if __name__ == "__main__":
    # A test that hangs prints every thread's stack and ends the run, rather than waiting
    # for ctest's timeout with nothing said.
    faulthandler.dump_traceback_later(float(os.environ.get("TEST_HANG_SECONDS", "240")), exit=True)
    unittest.main(verbosity=2)
