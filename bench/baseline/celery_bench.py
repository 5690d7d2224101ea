"""Celery + Redis, the baseline of bench/worker_bench.cc: N no-op jobs submitted with
`delay()` from `submitters` threads, run by one Celery worker (prefork, `concurrency`
processes), each result read back — submit -> run -> result, end to end.

  /usr/bin/python3 celery_bench.py --jobs=20000 [--concurrency=8] [--submitters=8]

Redis and the worker as celery_env.py starts them. Prints one line:
`celery: N jobs in S s = R jobs/s`.
"""
import argparse
import threading
import time

import celery_env


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--submitters", type=int, default=8)
    args = parser.parse_args()

    with celery_env.running(args.concurrency) as celery_tasks:
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


if __name__ == "__main__":
    main()
