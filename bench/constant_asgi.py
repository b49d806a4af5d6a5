"""The floor: a raw ASGI app that reads the request and answers the same bytes every time.

No JSON parsing, no model: what uvicorn and this machine cost per request (``--floor`` in
bench/scoring.py). Its p99 at 64 connections is the tail nothing above it can beat here. Served
by uvicorn (uvloop + httptools, lifespan off).
"""

JSON_HEADERS = [(b"content-type", b"application/json")]
ANSWER = b'{"result":[0.0]}'


async def app(scope, receive, send) -> None:
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body"):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
    await send({"type": "http.response.body", "body": ANSWER})
