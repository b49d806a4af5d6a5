"""For information, not the reference: ``bench/bare_starlette.py``'s endpoint as a raw ASGI app.

The same answer computed the same way (``answerer``), with Starlette's routing, request and
response objects taken out: what is left is uvicorn, the model and orjson. Its p99 shows how much
of a latency tail belongs to this machine (the load generator shares its cores) rather than to a
service. Served by uvicorn (uvloop + httptools, lifespan off). BENCH_MODEL: a joblib file of the
fitted model.
"""

import os

import joblib
import orjson

from bench.bare_starlette import CATEGORIES, NUMPY, answerer

JSON_HEADERS = [(b"content-type", b"application/json")]


def make_app(model, categories: dict[str, list[str]] | None = None):
    answer = answerer(model, categories)

    async def app(scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        chunks = []
        while True:
            message = await receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
        if scope["path"] != "/score" or scope["method"] != "POST":
            await send({"type": "http.response.start", "status": 404, "headers": JSON_HEADERS})
            await send({"type": "http.response.body", "body": b'{"detail":"Not Found"}'})
            return
        body = orjson.dumps(answer(orjson.loads(b"".join(chunks))["data"]), option=NUMPY)
        await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
        await send({"type": "http.response.body", "body": body})

    return app


app = make_app(joblib.load(os.environ["BENCH_MODEL"]), CATEGORIES) if "BENCH_MODEL" in os.environ else None
