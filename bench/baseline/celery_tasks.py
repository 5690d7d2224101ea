"""The task the Celery baseline runs: nothing but what a job costs the queue itself."""
import os

from celery import Celery

app = Celery("jobstream_baseline", broker=os.environ["CELERY_BROKER"],
             backend=os.environ["CELERY_BROKER"])
app.conf.task_acks_late = False  # Celery's default: a task is acked when a worker takes it


@app.task
def work(n):
    return {"n": n}


@app.task
def summary(results):
    """A chord's callback: it sees every result, as a batch's `then` job sees the counts."""
    return {"count": len(results)}


# Celery beat with BEAT_ENTRIES schedules of crontab() (every minute), each sending `work`;
# as beat publishes each, the lag from its minute goes to the Redis list "beat-lags"
# (celery_beat.py reads it).
if os.environ.get("BEAT_ENTRIES"):
    import time

    import redis
    from celery.schedules import crontab
    from celery.signals import after_task_publish

    app.conf.beat_schedule = {
        "s%d" % i: {"task": "celery_tasks.work", "schedule": crontab(), "args": (i,)}
        for i in range(int(os.environ["BEAT_ENTRIES"]))
    }
    _lags = redis.Redis.from_url(os.environ["CELERY_BROKER"])

    @after_task_publish.connect
    def _note_lag(sender=None, **kwargs):
        now = time.time()
        _lags.rpush("beat-lags", "%d %.6f" % (now // 60, now - now // 60 * 60))
