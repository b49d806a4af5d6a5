"""The scoring request log: a non-blocking, batched writer that loses nothing.

``append`` runs on the event loop and only joins bytes into a list: no serialisation of numpy
values, no I/O (DESIGN.md's spike: re-serialising records on the loop cost 40% on 100-row
requests). A thread writes a batch every ``flush_seconds`` as one JSON-lines file under
``scoring-logs/date=YYYY-MM-DD/`` in storage. When storage fails, the batch is spilled to local
disk and delivered later, oldest first; ``close()`` flushes what is left (graceful shutdown).

The writer thread never dies: any failure is logged, counted and retried with backoff. When
neither storage nor the spill folder takes a batch (a full disk does that), the batch stays in
memory and ``stuck`` is set: the service then answers 503 (readiness and /score) rather than take
requests whose records it could keep nowhere, until a retry succeeds. Writers sharing a spill
folder (a service's workers) claim a spilled file by renaming it before delivering it, so each
file is delivered once; a claim or temporary file left by a dead writer is taken back at start.
"""

import contextlib
import logging
import os
import re
import socket
import stat
import threading
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from pathlib import Path

from mlops_assets.storage.fsstore import Storage
from mlops_assets.storage.spill import CLAIM

LOG_PREFIX = "scoring-logs"
# A file this service spilled, relative to its spill folder: the only kind it delivers, and only
# to the same path in storage, under scoring-logs/. Anything else found there (placed by whoever
# can write the folder: an "events/production/…" file, a link, another uid's file) is set aside
# under refused/ and counted, never delivered and never blocking the files behind it.
SPILLED_RECORDS = re.compile(rf"{LOG_PREFIX}/date=\d{{4}}-\d{{2}}-\d{{2}}/\d+-[A-Za-z0-9.-]+-\d{{6}}\.jsonl")
REFUSED_DIR = "refused"
RECORD_START = b'{"request_id":"'
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
    flags: bytes = b"",
) -> bytes:
    """One JSON line; the request and response bodies are embedded as the JSON they already are.
    ``flags``: the JSON list of values scored though out of range (the spec's "flag" policy)."""
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
            b',"request":', body, b',"response":', response,
            *((b',"flags":', flags) if flags else ()), b"}\n",
        )
    )  # fmt: skip


class RequestLogWriter:
    def __init__(
        self,
        storage: Storage,
        spill_dir: Path,
        flush_seconds: float = 1.0,
        batch_records: int = 2000,
        max_retry_seconds: float = 30.0,
    ) -> None:
        self.storage = storage
        self.batch_records = batch_records
        self.spill_dir = spill_dir
        self.flush_seconds = flush_seconds
        self.max_retry_seconds = max_retry_seconds
        # deque.append and popleft are atomic: the loop appends, the writer thread pops, no lock.
        self._pending: deque[bytes] = deque()
        self._flush_lock = threading.Lock()  # the thread and close() never flush at once
        self._wake = threading.Event()
        self._stopping = False
        self._sequence = 0
        self._suffix = f"{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._writer_id = f"{socket.gethostname()}-{self._suffix}"
        self.written = 0  # records delivered to storage
        self.spilled = 0  # records written to local disk and not yet delivered
        self.failures = 0  # flushes that kept a batch nowhere (neither storage nor the spill folder)
        self.refused = 0  # files of the spill folder set aside, not this service's records
        self.stuck = False  # the last batch could be kept nowhere: it waits in memory
        self._line_counts: dict[Path, int] = {}  # spilled file -> records (read once)
        self._unmovable: set[Path] = set()  # set aside in place: said once, not at every flush
        self._thread = threading.Thread(target=self._run, name="request-log-writer", daemon=True)

    def start(self) -> "RequestLogWriter":
        self.spill_dir.mkdir(parents=True, exist_ok=True)
        self._release_dead_claims()
        self.spilled = self._count_spilled()
        self._thread.start()
        return self

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

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
        try:
            self._flush()
        except Exception as exc:
            log.error("request log: %d records could be kept nowhere at shutdown (%s)", self.backlog, exc)

    def _run(self) -> None:
        delay = self.flush_seconds
        while not self._stopping:
            self._wake.wait(delay)
            self._wake.clear()
            try:
                self._flush()
                delay = self.flush_seconds
            except Exception as exc:  # never dies: the records wait in memory, the next try comes
                self.failures += 1
                delay = min(max(delay, self.flush_seconds) * 2, self.max_retry_seconds)
                log.error(
                    "request log: %d records kept nowhere (storage and spill folder failed: %s); "
                    "retrying in %.1f s",
                    self.backlog,
                    exc,
                    delay,
                )

    def _take(self) -> list[bytes]:
        pending = self._pending
        return [pending.popleft() for _ in range(len(pending))]

    def _flush(self) -> None:
        with self._flush_lock:
            self._deliver_spilled()
            batch = self._take()
            if not batch:
                self.stuck = False
                return
            parts = _by_day(batch, time.time())
            for index, (day, oldest, records) in enumerate(parts):
                self._sequence += 1
                name = f"{int(oldest * 1000)}-{self._writer_id}-{self._sequence:06d}.jsonl"
                try:
                    self._keep(f"{LOG_PREFIX}/date={day}/{name}", records)
                except Exception:
                    rest = [line for _, _, part in parts[index:] for line in part]
                    self._pending.extendleft(reversed(rest))  # first in line again, in their order
                    self.stuck = True
                    raise
            self.stuck = False

    def _keep(self, path: str, records: list[bytes]) -> None:
        """``records`` delivered to ``path``, or spilled to local disk for later; raises if neither."""
        data = b"".join(records)
        try:
            self.storage.write_bytes(path, data)
            self.written += len(records)
            return
        except Exception as exc:  # any storage failure: keep the records on local disk
            log.warning(
                "scoring log storage failed (%s); spilling %d records to %s",
                exc,
                len(records),
                self.spill_dir,
            )
        self._spill(path, data)
        self.spilled += len(records)

    def _spill(self, path: str, data: bytes) -> None:
        target = self.spill_dir / path
        tmp = target.with_name(f"{target.name}.tmp-{self._suffix}")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(data)
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)  # no partial file left behind (a full disk)
            raise

    def _spilled_files(self) -> list[Path]:
        """This service's spilled files waiting for delivery, oldest name first; anything else
        ending in .jsonl outside refused/ is set aside on the way."""
        waiting = []
        for path in sorted(self.spill_dir.rglob("*.jsonl")):
            relative = path.relative_to(self.spill_dir).as_posix()
            if relative.startswith(f"{REFUSED_DIR}/"):
                continue
            why = _not_ours(path, relative)
            if why is None:
                waiting.append(path)
            elif path.exists() or path.is_symlink():
                self._set_aside(path, relative, why)
        return waiting

    def _set_aside(self, path: Path, relative: str, why: str) -> None:
        target = self.spill_dir / REFUSED_DIR / relative
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        except OSError as exc:  # left where it is, still never delivered; said once
            if path in self._unmovable:
                return
            self._unmovable.add(path)
            why = f"{why}; could not move it ({exc.strerror})"
        self.refused += 1
        log.warning("spill folder: %s set aside, not delivered: %s", relative, why)

    def _count_spilled(self) -> int:
        """Records waiting on disk. Called at every failed delivery while storage is down: a
        spilled file never changes, so each is read once, not at every flush."""
        counts = {}
        for path in self._spilled_files():
            try:
                counts[path] = self._line_counts.get(path) or _count_lines(path)
            except FileNotFoundError:
                continue
        self._line_counts = counts
        return sum(counts.values())

    def _release_dead_claims(self) -> None:
        """A claimed file of a writer that died goes back to the queue; its temp files go."""
        for path in self.spill_dir.rglob("*"):
            found = CLAIM.search(path.name)
            if not found or _running(int(found.group(2))):
                continue
            with contextlib.suppress(FileNotFoundError):
                if found.group(1) == "claim":
                    os.replace(path, path.with_name(path.name[: found.start()]))
                else:
                    path.unlink()

    def _deliver_spilled(self) -> None:
        """Oldest first, each file claimed (renamed) before it is sent: two writers of one folder
        never send one file twice. Files a predecessor left (moved here by the target) included."""
        for spilled in self._spilled_files():
            relative = spilled.relative_to(self.spill_dir).as_posix()
            claimed = spilled.with_name(f"{spilled.name}.claim-{self._suffix}")
            try:
                os.replace(spilled, claimed)
            except FileNotFoundError:
                continue  # another writer of this folder claimed it first
            try:
                data = claimed.read_bytes()
            except OSError as exc:  # this file, not storage: the files behind it go on
                self._set_aside(claimed, relative, f"unreadable ({exc.strerror})")
                continue
            if not (data.startswith(RECORD_START) and data.endswith(b"\n")):
                self._set_aside(claimed, relative, "not request log records")
                continue
            try:
                self.storage.write_bytes(relative, data)
            except Exception:
                with contextlib.suppress(FileNotFoundError):
                    os.replace(claimed, spilled)  # back in the queue: storage is still down
                self.spilled = self._count_spilled()
                return
            claimed.unlink(missing_ok=True)
            lines = data.count(b"\n")
            self.written += lines
            log.info("delivered %d spilled scoring log records (%s)", lines, relative)
        self.spilled = 0


_RECEIVED = re.compile(rb'"time":\s*(-?[0-9][0-9.eE+-]*)')


def _by_day(batch: list[bytes], now: float) -> list[tuple[str, float, list[bytes]]]:
    """The batch as (UTC day, its oldest record's time, records) per day its records were
    received on, oldest day first: a day's compaction reads its own folder, so records held past
    midnight (an outage, a slow flush) must land in their day's, not in the flush's. A record
    without a readable time counts as received ``now``."""
    first, last = _received(batch[0], now), _received(batch[-1], now)
    if _day(first) == _day(last):  # records arrive in order: one day, read two lines (the hot case)
        return [(_day(first), min(first, last), batch)]
    days: dict[str, tuple[float, list[bytes]]] = {}
    for line in batch:
        received = _received(line, now)
        day = _day(received)
        oldest, records = days.setdefault(day, (received, []))
        records.append(line)
        if received < oldest:
            days[day] = (received, records)
    return [(day, oldest, records) for day, (oldest, records) in sorted(days.items())]


def _received(line: bytes, default: float) -> float:
    found = _RECEIVED.search(line, 0, 512)
    try:
        return float(found.group(1)) if found else default
    except ValueError:
        return default


def _day(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _not_ours(path: Path, relative: str) -> str | None:
    """Why ``path`` is not a file this service spilled (None: it is)."""
    if not SPILLED_RECORDS.fullmatch(relative):
        return f"not a request log file of this service (only {LOG_PREFIX}/date=<day>/<batch>.jsonl is)"
    try:
        found = path.lstat()
    except FileNotFoundError:
        return "gone"  # claimed meanwhile by another worker of this folder
    if not stat.S_ISREG(found.st_mode):
        return "not a regular file (a link?)"
    if found.st_uid != os.geteuid():
        return f"owned by uid {found.st_uid}, not this service's ({os.geteuid()})"
    return None


def _count_lines(path: Path) -> int:
    return path.read_bytes().count(b"\n")
