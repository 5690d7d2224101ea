"""A Redis and one Celery worker on 127.0.0.1 for the Celery baselines, stopped on exit.

    with celery_env.running(concurrency=8) as tasks:   # celery_tasks, the worker up
        tasks.work.delay(1).get()

With concurrency=0 no worker is started (the beat baseline only sends).

Debian's python3-celery, python3-redis and redis-server. Redis runs with its defaults (no
fsync per write), so nothing Celery acknowledges here is durable — jobstream's figures are
for jobs each synced to disk first.
"""
import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_independent(task, jobs, submitters):
    """`jobs` calls of task.delay(n) from `submitters` threads, each result read back;
    returns (jobs run, seconds from the first submit to the last result)."""
    per = jobs // submitters
    results = [[] for _ in range(submitters)]

    def submit(k):
        results[k] = [task.delay(k * per + i) for i in range(per)]

    start = time.time()
    threads = [threading.Thread(target=submit, args=(k,)) for k in range(submitters)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for batch in results:
        for r in batch:
            r.get(timeout=600)
    return per * submitters, time.time() - start


@contextlib.contextmanager
def running(concurrency):
    work_dir = tempfile.mkdtemp(prefix="jobstream-celery-")
    port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                              "--save", "", "--dir", work_dir],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    broker = "redis://127.0.0.1:%d/0" % port
    env = dict(os.environ, CELERY_BROKER=broker, PYTHONPATH=HERE)
    os.environ.update(env)
    for _ in range(100):  # until redis answers
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
            break
        except OSError:
            time.sleep(0.05)
    worker = None if concurrency == 0 else subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_tasks", "worker", "--loglevel=WARNING",
         "--concurrency=%d" % concurrency, "--without-gossip", "--without-mingle",
         "--without-heartbeat"], env=env, cwd=HERE,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    failed = True
    try:
        os.environ["CELERY_WORK_DIR"] = work_dir
        sys.path.insert(0, HERE)
        import celery_tasks  # noqa: E402
        if worker:
            celery_tasks.work.delay(-1).get(timeout=60)  # the worker is up
        yield celery_tasks
        failed = False
    except BaseException:
        traceback.print_exc()
        raise
    finally:
        if worker:
            worker.terminate()
            worker.wait()
        redis.terminate()
        redis.wait()
        subprocess.run(["rm", "-rf", work_dir])
        sys.stdout.flush()
        # Celery's result objects try to reach the (stopped) Redis as they are collected.
        os._exit(1 if failed else 0)
