"""The scoring request log: a non-blocking, batched writer that loses nothing.

``append`` runs on the event loop and only joins bytes into a list: no serialisation of numpy
values, no I/O (DESIGN.md's spike: re-serialising records on the loop cost 40% on 100-row
requests). A thread writes a batch every ``flush_seconds`` as one JSON-lines file under
``scoring-logs/date=YYYY-MM-DD/`` in storage. When storage fails, the batch is spilled to local
disk and delivered later, oldest first; ``close()`` flushes what is left (graceful shutdown).
"""

import logging
import os
import socket
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

from mlops_assets.core.fsstore import Storage

LOG_PREFIX = "scoring-logs"
log = logging.getLogger("mlops_assets.serving.request_log")


def record_line(
    request_id: str,
    received: float,
    model_version: str,
    body: bytes,
    response: bytes,
    latency_ms: float,
    synthetic: bool,
    traceparent: str | None,
) -> bytes:
    """One JSON line; the request and response bodies are embedded as the JSON they already are."""
    # In valid JSON a raw newline can only be whitespace, so replacing it keeps the document intact.
    body = body.replace(b"\n", b" ").replace(b"\r", b" ")
    trace = (
        b"null"
        if traceparent is None
        else b'"' + traceparent.encode("ascii", "replace").replace(b'"', b"") + b'"'
    )
    return b"".join(
        (
            b'{"request_id":"', request_id.encode(), b'","time":', repr(received).encode(),
            b',"model_version":"', model_version.encode(), b'","latency_ms":', f"{latency_ms:.3f}".encode(),
            b',"synthetic":', b"true" if synthetic else b"false", b',"traceparent":', trace,
            b',"request":', body, b',"response":', response, b"}\n",
        )
    )  # fmt: skip


class RequestLogWriter:
    def __init__(
        self, storage: Storage, spill_dir: Path, flush_seconds: float = 1.0, batch_records: int = 2000
    ) -> None:
        self.storage = storage
        self.batch_records = batch_records
        self.spill_dir = spill_dir
        self.flush_seconds = flush_seconds
        # deque.append and popleft are atomic: the loop appends, the writer thread pops, no lock.
        self._pending: deque[bytes] = deque()
        self._flush_lock = threading.Lock()  # the thread and close() never flush at once
        self._wake = threading.Event()
        self._stopping = False
        self._sequence = 0
        self._writer_id = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.written = 0  # records delivered to storage
        self.spilled = 0  # records written to local disk and not yet delivered
        self._thread = threading.Thread(target=self._run, name="request-log-writer", daemon=True)

    def start(self) -> "RequestLogWriter":
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        self.spilled = sum(_count_lines(p) for p in self._spilled_files())
        self._thread.start()
        return self

    @property
    def backlog(self) -> int:
        return len(self._pending)

    def append(self, line: bytes) -> None:
        self._pending.append(line)
        if len(self._pending) == self.batch_records:  # a busy second: write now, keep memory flat
            self._wake.set()

    def close(self, timeout: float = 30.0) -> None:
        """Write everything still pending; what storage refuses stays spilled on disk."""
        self._stopping = True
        self._wake.set()
        self._thread.join(timeout)
        self._flush()

    def _run(self) -> None:
        while not self._stopping:
            self._wake.wait(self.flush_seconds)
            self._wake.clear()
            self._flush()

    def _take(self) -> list[bytes]:
        pending = self._pending
        return [pending.popleft() for _ in range(len(pending))]

    def _flush(self) -> None:
        with self._flush_lock:
            self._deliver_spilled()
            batch = self._take()
            if not batch:
                return
            self._sequence += 1
            day = datetime.now(UTC).strftime("%Y-%m-%d")
            name = f"{int(time.time() * 1000)}-{self._writer_id}-{self._sequence:06d}.jsonl"
            path = f"{LOG_PREFIX}/date={day}/{name}"
            data = b"".join(batch)
            try:
                self.storage.write_bytes(path, data)
                self.written += len(batch)
            except Exception as exc:  # any storage failure: keep the records on local disk
                log.warning(
                    "scoring log storage failed (%s); spilling %d records to %s",
                    exc,
                    len(batch),
                    self.spill_dir,
                )
                self._spill(path, data)
                self.spilled += len(batch)

    def _spill(self, path: str, data: bytes) -> None:
        target = self.spill_dir / path
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(".tmp")
        tmp.write_bytes(data)
        os.replace(tmp, target)

    def _spilled_files(self) -> list[Path]:
        return sorted(p for p in self.spill_dir.rglob("*.jsonl") if p.is_file())

    def _deliver_spilled(self) -> None:
        """Oldest first; files a predecessor left (moved here by its successor's target) included."""
        for spilled in self._spilled_files():
            relative = spilled.relative_to(self.spill_dir).as_posix()
            try:
                data = spilled.read_bytes()
            except FileNotFoundError:
                continue  # delivered by another writer of this folder meanwhile
            try:
                self.storage.write_bytes(relative, data)
            except Exception:
                # storage still down: try again next time; count what waits, adopted files too
                self.spilled = sum(_count_lines(p) for p in self._spilled_files())
                return
            spilled.unlink(missing_ok=True)
            lines = data.count(b"\n")
            self.written += lines
            log.info("delivered %d spilled scoring log records (%s)", lines, relative)
        self.spilled = 0


def _count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n")
