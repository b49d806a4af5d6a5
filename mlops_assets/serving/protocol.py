"""uvicorn's httptools protocol with the request head bounded before any work is done.

httptools parses at C speed but sets no limit on header size or count, and builds each header by
concatenating the pieces it is fed: a client that sends a header of many megabytes costs the
worker memory and quadratic CPU, and slows every other client of that worker. Here the bytes of
a head are counted as they arrive (one addition per read), and measured exactly once it has
ended: a head over ``MLOPS_SCORING_MAX_HEADER_BYTES`` or with more than
``MLOPS_SCORING_MAX_HEADERS`` headers is cut off with 431 and the connection closed. A
response's head and body leave in one write (``HeadWithBody``). Everything else is uvicorn's own
code path.

A plain scoring request (POST /score over HTTP/1.1, its length declared within the limit, its
key valid, no ``Expect``, nothing before it still unanswered, the service not draining) is
answered here directly once its body is whole: ``ScoreHandler.answer`` computes the response in
the parser's callback and it leaves in one write, with no ASGI task, cycle or messages between
them (about a third of a 1-row request's CPU). Anything else takes uvicorn's path to the ASGI
app, which answers it the same way or refuses it with its reason. A wrapper that must see every
request (telemetry's middleware) turns the direct path off.
"""

import os
from typing import Any

import orjson
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from mlops_assets.serving.app import ScoringApp
from mlops_assets.serving.drain import CloseWhileDraining
from mlops_assets.serving.handler import RequestHead, ScoreHandler
from mlops_assets.serving.line_budget import REFUSAL_LINES
from mlops_assets.settings import get_settings


class HeadWithBody:
    """A connection's transport as uvicorn's response cycle sees it: a response's head is held
    until its body is written, and both go in one write: one send(2) and one TCP segment where
    uvicorn makes two. A head whose body does not follow within the same turn of the event loop
    (100 Continue, a slow stream) goes alone at the end of that turn."""

    __slots__ = ("held", "loop", "transport")

    def __init__(self, transport: Any, loop: Any) -> None:
        self.transport = transport
        self.loop = loop
        self.held: bytes | None = None

    def write(self, data: bytes) -> None:
        held = self.held
        if held is None:
            self.held = data
            self.loop.call_soon(self.flush)
        else:
            self.held = None
            self.transport.write(held + data)

    def flush(self) -> None:
        if self.held is not None:
            held, self.held = self.held, None
            self.transport.write(held)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.transport, name)


def direct_handler(app: Any) -> ScoreHandler | None:
    """The scoring handler behind ``app`` if only uvicorn's proxy-headers middleware and the
    drain wrap it (neither needs to see a plain scoring request); None under any other wrapper."""
    while isinstance(app, ProxyHeadersMiddleware | CloseWhileDraining):
        app = app.app
    return app.handler if isinstance(app, ScoringApp) else None


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.max_head_bytes = settings.scoring_max_header_bytes
        self.max_headers = settings.scoring_max_headers
        self._in_head = True  # between a message's first byte and its last header
        self._head_bytes = 0  # received while in the head (a head that never ends)
        self._refused = False
        self._handler = direct_handler(self.app)
        self._direct: tuple | None = None  # (head, model) of the request answered directly
        self._direct_body: list[bytes] = []
        self._closing = False  # the server is shutting down: the direct answer closes the connection

    def connection_made(self, transport: Any) -> None:
        super().connection_made(transport)
        self._cycle_transport = HeadWithBody(transport, self.loop)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        if self._in_head:
            self._head_bytes += len(data)
        super().data_received(data)
        if self._in_head and not self._refused and self._head_bytes > self.max_head_bytes:
            self._refuse_head(f"request head over {self.max_head_bytes} bytes")

    def on_headers_complete(self) -> None:
        # Counted once the head has ended, from what uvicorn kept of it (not per header: that
        # doubled the Python calls of every request), and exactly: the read that ended the head
        # may also hold much of the body, which is no part of it.
        self._in_head = False
        if len(self.headers) > self.max_headers:
            self._refuse_head(f"more than {self.max_headers} headers")
            return  # before any request task exists: the app never sees it
        if (
            len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
            > self.max_head_bytes
        ):
            self._refuse_head(f"request head over {self.max_head_bytes} bytes")
            return
        if self._handler is not None and self._admitted_directly():
            return  # no cycle, no task: answered when its body is whole
        # The request's response cycle writes through HeadWithBody; the protocol keeps the socket.
        transport, self.transport = self.transport, self._cycle_transport
        try:
            super().on_headers_complete()
        finally:
            self.transport = transport

    def _admitted_directly(self) -> bool:
        """Whether this request is answered directly (module docstring); if so, it is held."""
        handler = self._handler
        if (
            self.url != b"/score"
            or self.parser.get_method() != b"POST"
            or self.expect_100_continue
            or handler.state.drain.active
            or (self.cycle is not None and not self.cycle.response_complete)  # answers go in order
            or self.parser.get_http_version() != "1.1"
            or (self.limit_concurrency is not None and len(self.connections) >= self.limit_concurrency)
        ):
            return False
        head = RequestHead(self.headers)
        declared = head.declared
        if declared is None or not declared.isdigit() or int(declared) > handler.config.max_body_bytes:
            return False  # a chunked body, or one the ASGI path refuses unread, with its reason
        model = handler.state.model
        if handler.refusal(head.authorization, model) is not None:
            return False
        self._direct = (head, model)
        return True

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        if self._direct is not None:
            self._direct_body.append(body)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._in_head, self._head_bytes = True, 0
        if self._direct is not None:
            self._answer_directly()
            return
        super().on_message_complete()

    def _answer_directly(self) -> None:
        (head, model), self._direct = self._direct, None
        # The body is exactly the declared length (the parser refuses a chunked one beside it).
        body = b"".join(self._direct_body) if len(self._direct_body) != 1 else self._direct_body[0]
        self._direct_body = []
        status, out, headers = self._handler.answer(head, model, body)
        keep_alive = not self._closing and self.parser.should_keep_alive()
        content = [STATUS_LINE[status]]
        for name, value in (*self.server_state.default_headers, *headers):
            content += (name, b": ", value, b"\r\n")
        content += (b"content-type: application/json\r\ncontent-length: ", str(len(out)).encode(), b"\r\n")
        if not keep_alive:
            content.append(b"connection: close\r\n")
        content += (b"\r\n", out)
        self.transport.write(b"".join(content))
        if not keep_alive:
            self.transport.close()
        self.on_response_complete()  # uvicorn's: pipelined requests, reading resumed, keep-alive timer

    def shutdown(self) -> None:
        if self._direct is not None:
            self._closing = True  # its body is still arriving: answered, then the connection closes
            return
        super().shutdown()

    def connection_lost(self, exc: Exception | None) -> None:
        if self._direct is not None:
            self._handler.gone(self._direct[0])
            self._direct = None
        super().connection_lost(exc)

    def _refuse_head(self, what: str) -> None:
        self._refused = True
        REFUSAL_LINES.say(self.logger.warning, "refused a request: %s", what)
        body = orjson.dumps({"error": what, "request_id": os.urandom(16).hex()})
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        self.transport.close()
