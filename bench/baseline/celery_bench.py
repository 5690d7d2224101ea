"""Celery + Redis, the baseline of bench/worker_bench.cc: N no-op jobs submitted with
`delay()` from `submitters` threads, run by one Celery worker (prefork, `concurrency`
processes), each result read back — submit -> run -> result, end to end.

  /usr/bin/python3 celery_bench.py --jobs=20000 [--concurrency=8] [--submitters=8]

Redis and the worker as celery_env.py starts them. Prints one line:
`celery: N jobs in S s = R jobs/s`.
"""
import argparse

import celery_env


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--submitters", type=int, default=8)
    args = parser.parse_args()

    with celery_env.running(args.concurrency) as celery_tasks:
        n, seconds = celery_env.run_independent(celery_tasks.work, args.jobs, args.submitters)
        print("celery: %d jobs in %.2f s = %.0f jobs/s" % (n, seconds, n / seconds), flush=True)


if __name__ == "__main__":
    main()
