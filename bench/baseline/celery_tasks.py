"""The task the Celery baseline runs: nothing but what a job costs the queue itself."""
import os

from celery import Celery

app = Celery("jobstream_baseline", broker=os.environ["CELERY_BROKER"],
             backend=os.environ["CELERY_BROKER"])
app.conf.task_acks_late = False  # Celery's default: a task is acked when a worker takes it


@app.task
def work(n):
    return {"n": n}
