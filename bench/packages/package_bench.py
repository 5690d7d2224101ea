"""End-to-end jobs/s through the client packages' workers, beside Celery in the same run.

Each phase starts a fresh jobstream-server (RocksDB, every job synced before it is
acknowledged) and one worker process running a no-op function; 8 threads submit --jobs jobs
with jobstream.Client and read each result back (submit -> run -> result, as the Celery
baseline does). Phases: the Python package's Worker (threads; then `async def`), the npm
package's Worker, and the bare generated stubs (the package's overhead is its worker's
CPU per job beyond theirs); then the same number again queued while the type is paused and
drained once it is resumed (the worker's own pace). Last, Celery 5 + Redis (bench/baseline/celery_env.py: prefork,
8 processes), the same jobs the same way, as many rounds; Redis does not sync, so nothing
it acknowledges is durable. The ratios are of the medians.

    build/python-venv/bin/python bench/packages/package_bench.py [--jobs=5000] [--rounds=1]

(build/python-venv: made by ctest's python_package_install, or tests/python/install_package.sh.)
Celery needs Debian's python3-celery, python3-redis and redis-server; without them the run
says so and fails.
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import jobstream

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid):
    """User + system CPU of a process so far."""
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


class Server:
    def __init__(self, binary):
        self.dir = tempfile.mkdtemp(prefix="jobstream-pkgbench-")
        config = os.path.join(self.dir, "config.json")
        with open(config, "w") as f:
            json.dump({"types": [{"name": "noop", "external": {"leaseDuration": "30s"}}]}, f)
        self.process = subprocess.Popen(
            [binary, "--listen=127.0.0.1:0", "--data_dir=" + os.path.join(self.dir, "data"),
             "--config=" + config, "--metrics_listen=off", "--log=false"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        line = self.process.stdout.readline()
        if not line.startswith("listening on "):
            raise SystemExit("the server did not start: %r" % line)
        self.address = line.split()[-1]

    def stop(self):
        self.process.send_signal(signal.SIGTERM)
        self.process.wait()
        self.process.stdout.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def in_threads(count, work):
    """work(k) for k in 0..count-1 on as many threads; the first failure ends the run."""
    errors = []

    def run(k):
        try:
            work(k)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise SystemExit("a phase failed: %r" % errors[0])


def submit_and_read(client, jobs):
    """`jobs` no-op jobs from 8 threads, each result read back; (jobs, seconds taken)."""
    per = jobs // 8

    def run(k):
        ids = [client.submit("noop", {"n": k * per + i}).id for i in range(per)]
        for job_id in ids:
            if client.result(job_id, timeout=600)["n"] is None:
                raise AssertionError("a result without its n")

    start = time.monotonic()
    in_threads(8, run)
    return per * 8, time.monotonic() - start


def drain(client, jobs):
    """Queues `jobs` jobs while the type is paused, resumes it, and times until the worker
    has ended them all: the worker's own pace, with no submitter in the way."""
    client.pause_type("noop", "the bench fills the queue")
    per = jobs // 8
    in_threads(8, lambda k: [client.submit("noop", {"n": k * per + i}) for i in range(per)])
    start = time.monotonic()
    client.resume_type("noop")
    while True:
        noop = {t.name: t for t in client.types()}["noop"]
        if noop.queued == 0 and noop.running == 0:
            return per * 8, time.monotonic() - start
        time.sleep(0.005)


def run_phase(name, command, env, args):
    """One worker process (`command(address)`, its server in $JOBSTREAM_SERVER too) on a
    fresh server: a warm-up, --jobs end to end, then --jobs drained. Returns (jobs/s,
    worker CPU s per job end to end, drained jobs/s)."""
    server = Server(args.server_bin)
    worker = subprocess.Popen(command(server.address), cwd=HERE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL,
                              env=dict(os.environ, JOBSTREAM_SERVER=server.address, **env))
    client = jobstream.Client(server.address)
    try:
        submit_and_read(client, 200)  # connected, first leases made
        before = cpu_seconds(worker.pid)
        n, seconds = submit_and_read(client, args.jobs)
        worker_cpu = cpu_seconds(worker.pid) - before
        drained, drain_seconds = drain(client, args.jobs)
    finally:
        client.close()
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
        server.stop()
    print("| %s | %d | %.2f s | %.0f | %.0f µs | %.0f |" % (
        name, n, seconds, n / seconds, worker_cpu / n * 1e6, drained / drain_seconds), flush=True)
    return n / seconds, worker_cpu / n, drained / drain_seconds


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--server_bin", default=os.path.join(ROOT, "build/server/jobstream-server"))
    parser.add_argument("--celery", action=argparse.BooleanOptionalAction, default=True)
    args = parser.parse_args()
    missing = [m for m in ("celery", "redis") if not _importable(m)]
    missing += [] if shutil.which("redis-server") else ["redis-server"]
    if args.celery and missing:
        raise SystemExit("the Celery baseline cannot run: apt-get install python3-celery "
                         "python3-redis redis-server (missing: %s)" % ", ".join(missing))
    python = sys.executable
    node = shutil.which("node")
    phases = [
        ("Python package, threads", lambda a: [python, "-m", "jobstream.worker", "py_tasks:worker"], {}),
        ("Python package, asyncio", lambda a: [python, "-m", "jobstream.worker", "py_tasks:worker"],
         {"BENCH_ASYNC": "1"}),
        ("raw Python stubs, threads", lambda a: [python, "raw_worker.py", a, "8"], {}),
        ("npm package", lambda a: [node, "node_worker.mjs", a, "8"], {}),
    ]
    print("| worker (8 at once) | jobs | time | jobs/s | worker CPU per job | drained/s |")
    print("| --- | --- | --- | --- | --- | --- |")
    rates = {}  # name -> [(jobs/s, worker CPU s per job, drained/s)]
    for _ in range(args.rounds):
        for name, command, env in phases:
            rates.setdefault(name, []).append(run_phase(name, command, env, args))
    threads, raw = rates["Python package, threads"], rates["raw Python stubs, threads"]
    print("\nPackage over the raw stubs, medians: jobs/s %.2f×, worker CPU per job %+.0f%% "
          "(target ≤ 10%%)" % (statistics.median(r[0] for r in threads) /
                               statistics.median(r[0] for r in raw),
                               (statistics.median(r[1] for r in threads) /
                                statistics.median(r[1] for r in raw) - 1) * 100), flush=True)
    if args.celery:
        sys.path.insert(0, os.path.join(HERE, "..", "baseline"))
        import celery_env  # noqa: E402 - after the check above

        with celery_env.running(8) as tasks:  # it ends the process when done
            celery = []  # (jobs/s, drained/s) a round, on one Redis and one worker
            for _ in range(args.rounds):
                n, seconds = celery_env.run_independent(tasks.work, args.jobs, 8)
                celery.append((n / seconds, celery_drained(tasks, args.jobs)))
                print("| Celery 5 prefork + Redis (not durable) | %d | %.2f s | %.0f | – | %.0f |"
                      % (n, seconds, n / seconds, celery[-1][1]), flush=True)
            end_to_end = statistics.median(r[0] for r in threads) / statistics.median(
                r[0] for r in celery)
            drained = statistics.median(r[2] for r in threads) / statistics.median(
                r[1] for r in celery)
            print("Python package (threads) / Celery, medians of %d rounds: %.1f× end to end, "
                  "%.1f× draining (target ≥ 3×)" % (args.rounds, end_to_end, drained), flush=True)


def celery_drained(tasks, jobs):
    """Celery's drain, as jobstream's: `jobs` tasks sent to a queue its worker does not yet
    consume, then the worker told to consume it; timed until every result is back. The
    worker stops consuming it again after, so the next round's queue fills unconsumed too."""
    results = [tasks.work.apply_async((i,), queue="bench") for i in range(jobs)]
    start = time.monotonic()
    tasks.app.control.add_consumer("bench", reply=True)
    for r in results:
        r.get(timeout=600)
    seconds = time.monotonic() - start
    tasks.app.control.cancel_consumer("bench", reply=True)
    return jobs / seconds


def _importable(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


if __name__ == "__main__":
    main()
