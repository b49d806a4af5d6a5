"""Graceful stop on SIGTERM: stop accepting, have keep-alive clients reconnect, then let uvicorn exit.

uvicorn's own shutdown closes idle keep-alive connections at once; a client that is sending its
next request on one at that moment gets a broken connection, so a plain SIGTERM under load fails
a few requests. Draining first avoids that. When a newer process shares the listening socket (a
process handover, see ``listener.py``) or a load balancer has stopped routing here (Kubernetes):

1. this worker stops accepting — the kernel's accept queue stays with the other listeners;
2. every response carries ``Connection: close``, so each client's next request opens a new
   connection, which lands on the newer process;
3. when no request has arrived for ``quiet_seconds`` (or ``grace_seconds`` have passed), uvicorn's
   normal shutdown runs: in-flight requests finish, the request log is flushed.
"""

import asyncio
import logging
import signal
import threading
import time

log = logging.getLogger("mlops_assets.serving")


class Drain:
    """One per worker process; ``active`` is read on every request, so it is a plain attribute."""

    def __init__(self) -> None:
        self.active = False
        self.last_request = 0.0

    def install(self, grace_seconds: float, quiet_seconds: float = 0.3) -> None:
        """Wrap the SIGTERM handler uvicorn installed; call from the app's startup, on the loop."""
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if not callable(previous) or grace_seconds <= 0:
            return  # not under a server that handles SIGTERM itself, or draining switched off
        loop = asyncio.get_running_loop()

        def on_sigterm(signum: int, frame) -> None:
            if self.active:
                return  # the supervisor forwards SIGTERM again: one drain is enough
            self.active = True
            loop.call_soon_threadsafe(self._begin, loop, previous, signum, grace_seconds, quiet_seconds)

        signal.signal(signal.SIGTERM, on_sigterm)

    def _begin(self, loop, exit_handler, signum: int, grace_seconds: float, quiet_seconds: float) -> None:
        stopped = stop_accepting(exit_handler)
        log.info("draining: stopped accepting on %d listener(s); answering with Connection: close", stopped)
        started = time.monotonic()

        def check() -> None:
            now = time.monotonic()
            if now - self.last_request >= quiet_seconds or now - started >= grace_seconds:
                exit_handler(signum, None)  # uvicorn's handler: its normal graceful shutdown
            else:
                loop.call_later(0.05, check)

        self.last_request = time.monotonic()  # give in-flight clients one quiet period to send again
        loop.call_later(0.05, check)


def stop_accepting(exit_handler) -> int:
    """Close this process's listening servers; the shared socket and its queue stay with the others.

    uvicorn keeps its asyncio servers on the Server whose ``handle_exit`` is the SIGTERM handler.
    Closing one (asyncio or uvloop) stops accepting and leaves open connections alone.
    """
    servers = getattr(getattr(exit_handler, "__self__", None), "servers", None) or []
    for server in servers:
        server.close()
    return len(servers)


class CloseWhileDraining:
    """ASGI middleware: while draining, note each request and answer it with ``Connection: close``."""

    def __init__(self, app, drain: Drain) -> None:
        self.app = app
        self.drain = drain

    async def __call__(self, scope, receive, send) -> None:
        if not self.drain.active or scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.drain.last_request = time.monotonic()

        async def send_closing(message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", ()), (b"connection", b"close")]}
            await send(message)

        await self.app(scope, receive, send_closing)
