"""The hand-rolled pattern jobstream replaces, as a baseline for bench/gateway_bench.mjs:
a job id, an in-memory dict, and an SSE loop that polls the dict once a second.

  python3 poll_dict.py PORT     (Debian's python3-flask)
"""
import json
import sys
import threading
import time
import uuid

from flask import Flask, Response

app = Flask(__name__)
jobs = {}


def run(job_id, rate, seconds):
    total = int(rate * seconds)
    start = time.time()
    for i in range(1, total + 1):
        # Keep to the rate on average; time.sleep alone cannot sleep 100 us.
        delay = start + i / rate - time.time()
        if delay > 0:
            time.sleep(delay)
        jobs[job_id] = {"count": i, "progress": i / total, "time": time.time()}
    jobs[job_id] = dict(jobs[job_id], done=True)


@app.post("/jobs/<int:rate>/<int:seconds>")
def submit(rate, seconds):
    job_id = uuid.uuid4().hex
    jobs[job_id] = {"count": 0, "progress": 0, "time": time.time()}
    threading.Thread(target=run, args=(job_id, rate, seconds), daemon=True).start()
    return {"id": job_id}


@app.get("/jobs/<job_id>/events")
def events(job_id):
    def stream():
        while True:
            job = dict(jobs[job_id])
            yield f"data: {json.dumps(job)}\n\n"
            if job.get("done"):
                return
            time.sleep(1)

    return Response(stream(), mimetype="text/event-stream")


if __name__ == "__main__":
    port = int(sys.argv[1])
    print(f"listening on 127.0.0.1:{port}", flush=True)
    app.run(host="127.0.0.1", port=port, threaded=True)
