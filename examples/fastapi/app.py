"""examples/flask/app.py on FastAPI, with jobstream's AsyncClient: POST /draw submits a
job and answers 202 with where it can be followed; the browser follows it over the
gateway's SSE.

    JOBSTREAM_SERVER=127.0.0.1:50051 JOBSTREAM_GATEWAY=http://127.0.0.1:8080 \\
        venv/bin/python -m uvicorn app:app --port 5001

(the gateway started with --cors_origins=http://127.0.0.1:5001), and the worker:
examples/draw/worker.py.
"""

import os

import jobstream
from fastapi import FastAPI, Header, Request
from fastapi.responses import FileResponse, JSONResponse

HERE = os.path.dirname(os.path.abspath(__file__))
GATEWAY = os.environ.get("JOBSTREAM_GATEWAY", "http://127.0.0.1:8080")

app = FastAPI()
client = None


@app.on_event("startup")
async def connect():
    global client
    client = jobstream.AsyncClient()  # made in the server's event loop; $JOBSTREAM_SERVER


@app.on_event("shutdown")
async def disconnect():
    await client.close()


def links(job):
    base = "%s/v1/jobs/%s" % (GATEWAY, job.id)
    return {"id": job.id, "state": jobstream.State.Name(job.state), "events": base + "/events",
            "artifacts": base + "/artifacts"}


@app.get("/")
async def page():
    return FileResponse(os.path.join(HERE, "..", "draw", "page.html"))


@app.post("/draw")
async def draw(request: Request, idempotency_key: str = Header(default="")):
    try:
        body = await request.json()
    except ValueError:
        body = None
    prompt = body.get("prompt") if isinstance(body, dict) else None
    if not isinstance(prompt, str) or not 1 <= len(prompt.strip()) <= 200:
        return JSONResponse({"error": "prompt: a string of 1 to 200 characters is required"}, 400)
    job = await client.submit("draw", {"prompt": prompt.strip()}, request_id=idempotency_key or None)
    return JSONResponse(links(job), 202, {"Location": "/draw/" + job.id})


@app.get("/draw/{job_id}")
async def status(job_id: str):
    try:
        job = await client.get(job_id)
    except jobstream.InvalidArgument as e:
        return JSONResponse({"error": e.message}, 400)
    except jobstream.NotFound as e:
        return JSONResponse({"error": e.message}, 404)
    out = links(job)
    out["progress"] = job.progress.fraction
    if job.state == jobstream.State.SUCCEEDED:
        out["result"] = jobstream.to_python(job.result)
    elif job.error.message:
        out["error"] = job.error.message
    return out
