"""Drive an ASGI app in-process: its lifespan started, POST requests timed without any HTTP server.

What is left out (uvicorn's protocol, the socket, the client) costs every app the same; what is
timed is the app's own microseconds per request.
"""

import asyncio
import time
from collections.abc import Callable
from typing import Any

from mlops_assets_tests.serving_support import LoopbackTransport


def post_scope(path: str, body: bytes, headers: dict[bytes, bytes]) -> dict:
    """The scope uvicorn builds for a POST with a JSON body."""
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"127.0.0.1"),
            (b"content-type", b"application/json"),
            *headers.items(),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 5000),
        "server": ("127.0.0.1", 8000),
    }


async def post(app: Any, scope: dict, body: bytes) -> tuple[int, bytes]:
    """One request through ``app``: its status and body."""
    messages = [{"type": "http.request", "body": body, "more_body": False}]
    sent: list[dict] = []

    async def receive() -> dict:
        return messages.pop() if messages else {"type": "http.disconnect"}

    async def send(message: dict) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], b"".join(m.get("body", b"") for m in sent[1:])


async def started(app: Any, ready: Callable[[], Any], timeout: float = 30.0) -> asyncio.Task:
    """Run ``app``'s lifespan startup in a task, then wait until ``await ready()`` is true."""
    startup: asyncio.Queue = asyncio.Queue()
    await startup.put({"type": "lifespan.startup"})

    async def lifespan_send(message: dict) -> None:
        pass

    task = asyncio.create_task(
        app({"type": "lifespan", "asgi": {"version": "3.0"}}, startup.get, lifespan_send)
    )
    deadline = time.monotonic() + timeout
    while not await ready():  # until the model is loaded and verified
        assert time.monotonic() < deadline, "the app never became ready"
        await asyncio.sleep(0.1)
    return task


async def microseconds_per_request(
    app: Any, scope: dict, body: bytes, requests: int, warmup: int = 1000
) -> float:
    for _ in range(warmup):
        await post(app, scope, body)
    begun = time.perf_counter()
    for _ in range(requests):
        await post(app, scope, body)
    return (time.perf_counter() - begun) / requests * 1e6


def raw_post(path: str, body: bytes, headers: dict[bytes, bytes]) -> bytes:
    """A POST's bytes on the wire, as wrk sends it."""
    head = b"".join(name + b": " + value + b"\r\n" for name, value in headers.items())
    return (
        b"POST " + path.encode() + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
        + head + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    )  # fmt: skip


async def http_microseconds_per_request(
    protocol_class: type, app: Any, request: bytes, requests: int, warmup: int = 1000
) -> tuple[float, bytes]:
    """uvicorn's HTTP protocol and ``app`` on one keep-alive connection, fed ``request``'s bytes
    over and over: the microseconds per request (parse, app, response written) and the last
    response. Everything but the socket and the client is the server's real code path."""
    import uvicorn
    from uvicorn.server import ServerState

    class Answered(protocol_class):
        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.answered.done():
                self.answered.set_result(None)

    config = uvicorn.Config(app, http=Answered, lifespan="off", access_log=False, log_config=None)
    config.load()
    loop = asyncio.get_running_loop()
    protocol = Answered(config=config, server_state=ServerState(), app_state={}, _loop=loop)
    transport = LoopbackTransport()
    protocol.connection_made(transport)

    async def one() -> None:
        protocol.answered = loop.create_future()
        protocol.data_received(request)
        await protocol.answered

    for _ in range(warmup):
        await one()
    transport.written.clear()
    begun = time.perf_counter()
    for _ in range(requests):
        await one()
    elapsed = time.perf_counter() - begun
    last = b"".join(transport.written[-2:])
    protocol.connection_lost(None)
    return elapsed / requests * 1e6, last
