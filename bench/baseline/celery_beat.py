"""Celery beat, the baseline of bench/schedule_bench.cc: `entries` schedules of crontab()
(every minute) in one beat process, over `minutes` minute boundaries: each send's lag from
its minute (as beat publishes it to Redis: the Celery counterpart of a fire's job being
created) and beat's CPU time. No worker runs (the jobs' running is not what is measured).

  /usr/bin/python3 celery_beat.py --entries=10000 [--minutes=2]

Prints a line per minute: `celery beat minute M: N of E sent within the minute, their lag
p50 X ms p99 Y ms max Z ms, beat CPU C s`.
"""
import argparse
import os
import subprocess
import sys
import time

import celery_env


def cpu_seconds(pid):
    with open("/proc/%d/stat" % pid) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(p * len(values)))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--entries", type=int, default=10000)
    parser.add_argument("--minutes", type=int, default=2)
    args = parser.parse_args()

    os.environ["BEAT_ENTRIES"] = str(args.entries)
    with celery_env.running(concurrency=0) as tasks:
        work_dir = os.environ["CELERY_WORK_DIR"]
        beat = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "celery_tasks", "beat", "--loglevel=WARNING",
             "--schedule=" + os.path.join(work_dir, "beat-schedule")],
            cwd=celery_env.HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            redis = tasks._lags
            # From the first whole minute at least 20 s away (beat is up by then), `minutes`
            # minutes.
            first = int((time.time() + 20) // 60) + 1
            time.sleep(max(0, first * 60 - time.time()))
            cpu_at = cpu_seconds(beat.pid)
            for minute in range(first, first + args.minutes):
                time.sleep(max(0, (minute + 1) * 60 - time.time()))
                cpu_now = cpu_seconds(beat.pid)
                lags = [float(x.split()[1]) * 1000 for x in
                        (v.decode() for v in redis.lrange("beat-lags", 0, -1))
                        if int(x.split()[0]) == minute]
                if not lags:
                    raise SystemExit("minute %d: beat sent nothing" % (minute - first + 1))
                # A send counts for the minute it was made in: if beat falls more than a
                # minute behind, later minutes also hold sends due earlier, so only the
                # first minute's lags are each a fire's own; the count says if it kept up.
                print("celery beat minute %d: %d of %d sent within the minute, their lag p50 "
                      "%.0f ms p99 %.0f ms max %.0f ms, beat CPU %.2f s"
                      % (minute - first + 1, len(lags), args.entries, percentile(lags, 0.5),
                         percentile(lags, 0.99), max(lags), cpu_now - cpu_at), flush=True)
                cpu_at = cpu_now
        finally:
            beat.terminate()
            beat.wait()


if __name__ == "__main__":
    main()
