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
import time
import traceback

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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
