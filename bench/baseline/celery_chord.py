"""Celery + Redis, the baseline of bench/batch_bench.cc: the same N no-op tasks two ways,
repeated `runs` times on one worker (prefork, `concurrency` processes):
  - independent: `delay()` from `submitters` threads; done when every result is read;
  - chord: `chord(work.s(i) for i in range(N))(summary.s())`; done when the callback's
    result is read (it has seen all N).

  /usr/bin/python3 celery_chord.py --jobs=10000 [--runs=3] [--concurrency=8] [--submitters=8]

Prints one line per run: `celery run R: independent S s, chord S s, chord / independent X`.
"""
import argparse
import time

from celery import chord

import celery_env


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--submitters", type=int, default=8)
    args = parser.parse_args()

    with celery_env.running(args.concurrency) as tasks:
        for run in range(1, args.runs + 1):
            n, independent = celery_env.run_independent(tasks.work, args.jobs,
                                                        args.submitters)

            start = time.time()
            summary = chord(tasks.work.s(i) for i in range(n))(
                tasks.summary.s()).get(timeout=600)
            chorded = time.time() - start
            if summary["count"] != n:
                raise SystemExit("the chord's callback saw %d results" % summary["count"])
            print("celery run %d: independent %.2f s, chord %.2f s, chord / independent %.2f"
                  % (run, independent, chorded, chorded / independent), flush=True)


if __name__ == "__main__":
    main()
