"""Log lines a client can cause, bounded: a flood of refused requests must not fill the disk the
spill folder needs. Every refusal is still counted in the metrics; only the lines are limited."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class LineBudget:
    """At most ``burst`` lines per ``window`` seconds; the lines held back are counted and said by
    the next line let through."""

    def __init__(self, burst: int = 20, window: float = 1.0) -> None:
        self.burst, self.window = burst, window
        self._started = time.monotonic()
        self._used = 0
        self._held_back = 0
        self._lock = threading.Lock()

    def take(self) -> int | None:
        """None: hold this line back. Else how many were held back since the last line let through."""
        with self._lock:
            now = time.monotonic()
            if now - self._started >= self.window:
                self._started, self._used = now, 0
            if self._used >= self.burst:
                self._held_back += 1
                return None
            self._used += 1
            held_back, self._held_back = self._held_back, 0
            return held_back

    def say(self, emit: Callable[..., None], message: str, *args: object) -> None:
        """``emit(message, *args)`` (a logger's method) if the budget allows, saying how many
        lines were held back before it."""
        held_back = self.take()
        if held_back is None:
            return
        if held_back:
            message, args = message + " (%d more like it not logged)", (*args, held_back)
        emit(message, *args)


# One budget for every line a refused request writes in this process (rejected bodies, cut-off heads).
REFUSAL_LINES = LineBudget()
