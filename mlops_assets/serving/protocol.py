"""uvicorn's httptools protocol with the request head bounded before any work is done.

httptools parses at C speed but sets no limit on header size or count, and builds each header by
concatenating the pieces it is fed: a client that sends a header of many megabytes costs the
worker memory and quadratic CPU, and slows every other client of that worker. Here the bytes of
a head are counted as they arrive (one addition per read), and measured exactly once it has
ended: a head over ``MLOPS_SCORING_MAX_HEADER_BYTES`` or with more than
``MLOPS_SCORING_MAX_HEADERS`` headers is cut off with 431 and the connection closed. A
response's head and body leave in one write (``HeadWithBody``). Everything else is uvicorn's own
code path.
"""

import os
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

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


class BoundedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        settings = get_settings()
        self.max_head_bytes = settings.scoring_max_header_bytes
        self.max_headers = settings.scoring_max_headers
        self._in_head = True  # between a message's first byte and its last header
        self._head_bytes = 0  # received while in the head (a head that never ends)
        self._refused = False

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
        # The request's response cycle writes through HeadWithBody; the protocol keeps the socket.
        transport, self.transport = self.transport, self._cycle_transport
        try:
            super().on_headers_complete()
        finally:
            self.transport = transport

    def on_body(self, body: bytes) -> None:
        if not self._refused:
            super().on_body(body)

    def on_message_complete(self) -> None:
        if self._refused:
            return
        self._in_head, self._head_bytes = True, 0
        super().on_message_complete()

    def _refuse_head(self, what: str) -> None:
        self._refused = True
        REFUSAL_LINES.say(self.logger.warning, "refused a request: %s", what)
        body = orjson.dumps({"error": what, "request_id": os.urandom(16).hex()})
        self.transport.write(
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-type: application/json\r\n"
            b"connection: close\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body
        )
        self.transport.close()
