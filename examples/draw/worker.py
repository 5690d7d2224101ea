"""The worker behind examples/flask and examples/fastapi: `draw` jobs make an SVG of the
prompt in a few steps, reporting progress, and attach it as the artifact "drawing.svg".

    python -m jobstream.worker worker:worker        # from this folder; $JOBSTREAM_SERVER
"""

import html
import random
import time

import jobstream

worker = jobstream.Worker(concurrency=4)
STROKES = 12


@worker.task("draw")
def draw(ctx, params):
    prompt = params["prompt"]
    pace = float(params.get("pace", 0.15))  # seconds per stroke: a real model's slowness
    rnd = random.Random(prompt)
    shapes = []
    ctx.step("sketch", index=1, count=2, fraction=0.0)
    for i in range(STROKES):
        if ctx.cancelled:
            raise jobstream.Cancelled()
        x, y, r = rnd.randint(20, 280), rnd.randint(20, 180), rnd.randint(8, 40)
        hue = rnd.randint(0, 359)
        shapes.append('<circle cx="%d" cy="%d" r="%d" fill="hsl(%d,70%%,60%%)"/>' % (x, y, r, hue))
        time.sleep(pace)
        ctx.progress((i + 1) / (STROKES + 1), "stroke %d of %d" % (i + 1, STROKES))
    ctx.step("ink", index=2, count=2, fraction=STROKES / (STROKES + 1))
    svg = ('<svg xmlns="http://www.w3.org/2000/svg" width="300" height="200">%s'
           '<text x="10" y="190" font-family="sans-serif">%s</text></svg>'
           % ("".join(shapes), html.escape(prompt)))
    with ctx.artifact("drawing.svg", "image/svg+xml") as f:
        f.write(svg.encode())
    return {"prompt": prompt, "strokes": STROKES}
