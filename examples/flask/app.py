"""The "job id + polling" app, rebuilt on jobstream: POST /draw submits a job and answers
202 with where it can be followed; the browser follows it over the gateway's SSE.

    JOBSTREAM_SERVER=127.0.0.1:50051 JOBSTREAM_GATEWAY=http://127.0.0.1:8080 \\
        venv/bin/python app.py --port 5000

(the gateway started with --cors_origins=http://127.0.0.1:5000, so the page may read its
streams), and the worker: examples/draw/worker.py.
"""

import argparse
import os

import jobstream
from flask import Flask, jsonify, request, send_file

HERE = os.path.dirname(os.path.abspath(__file__))
GATEWAY = os.environ.get("JOBSTREAM_GATEWAY", "http://127.0.0.1:8080")

app = Flask(__name__)
client = jobstream.Client()  # $JOBSTREAM_SERVER, $JOBSTREAM_TOKEN


def links(job):
    """Where the browser follows a job and fetches what it made: the gateway."""
    base = "%s/v1/jobs/%s" % (GATEWAY, job.id)
    return {"id": job.id, "state": jobstream.State.Name(job.state), "events": base + "/events",
            "artifacts": base + "/artifacts"}


@app.get("/")
def page():
    return send_file(os.path.join(HERE, "..", "draw", "page.html"))


@app.post("/draw")
def draw():
    body = request.get_json(silent=True)
    prompt = body.get("prompt") if isinstance(body, dict) else None
    if not isinstance(prompt, str) or not 1 <= len(prompt.strip()) <= 200:
        return jsonify(error="prompt: a string of 1 to 200 characters is required"), 400
    # An Idempotency-Key makes a retried POST answer the same job instead of a second one.
    job = client.submit("draw", {"prompt": prompt.strip()},
                        request_id=request.headers.get("Idempotency-Key") or None)
    return jsonify(links(job)), 202, {"Location": "/draw/" + job.id}


@app.get("/draw/<job_id>")
def status(job_id):
    try:
        job = client.get(job_id)
    except jobstream.InvalidArgument as e:
        return jsonify(error=e.message), 400
    except jobstream.NotFound as e:
        return jsonify(error=e.message), 404
    out = links(job)
    out["progress"] = job.progress.fraction
    if job.state == jobstream.State.SUCCEEDED:
        out["result"] = jobstream.to_python(job.result)
    elif job.error.message:
        out["error"] = job.error.message
    return jsonify(out)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=5000)
    args = parser.parse_args()
    app.run(host="127.0.0.1", port=args.port)
