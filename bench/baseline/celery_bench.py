"""Celery + Redis, the baseline of bench/worker_bench.cc: N no-op jobs submitted with
`delay()` from `submitters` threads, run by one Celery worker (prefork, `concurrency`
processes), each result read back — submit -> run -> result, end to end.

  /usr/bin/python3 celery_bench.py --jobs=20000 [--concurrency=8] [--submitters=8]

Debian's python3-celery, python3-redis and redis-server. Starts its own redis-server and
worker on 127.0.0.1 and stops them. Prints one line: `celery: N jobs in S s = R jobs/s`.
Redis runs with its defaults (no fsync per write), so nothing here is durable when a task
is acknowledged — jobstream's figure is for jobs each synced to disk first.
"""
import argparse
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--submitters", type=int, default=8)
    args = parser.parse_args()

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
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "celery_tasks", "worker", "--loglevel=WARNING",
         "--concurrency=%d" % args.concurrency, "--without-gossip", "--without-mingle",
         "--without-heartbeat"], env=env, cwd=HERE,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        sys.path.insert(0, HERE)
        import celery_tasks  # noqa: E402
        celery_tasks.work.delay(-1).get(timeout=60)  # the worker is up
        per = args.jobs // args.submitters
        results = [[] for _ in range(args.submitters)]

        def submit(k):
            results[k] = [celery_tasks.work.delay(k * per + i) for i in range(per)]

        start = time.time()
        threads = [threading.Thread(target=submit, args=(k,)) for k in range(args.submitters)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for batch in results:
            for r in batch:
                r.get(timeout=300)
        seconds = time.time() - start
        n = per * args.submitters
        print("celery: %d jobs in %.2f s = %.0f jobs/s" % (n, seconds, n / seconds), flush=True)
    finally:
        worker.terminate()
        worker.wait()
        redis.terminate()
        redis.wait()
        subprocess.run(["rm", "-rf", work_dir])
        # Celery's result objects try to reach the (stopped) Redis as they are collected.
        os._exit(0)


if __name__ == "__main__":
    main()
