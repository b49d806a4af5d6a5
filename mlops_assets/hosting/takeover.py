"""A supervisor becomes its deployment on its own: the release only starts it and watches.

A handover done by the release (start the successor, wait, stop the predecessor, write the record)
is not atomic: a release killed between those steps left both supervisors accepting on one socket,
two versions answering at random, and a record naming the old one. So the new supervisor commits
itself, in this order, whatever becomes of the release that started it:

1. its service answers ``/health/ready`` with its own deployment id and the expected version
   (else, or if the service exits first, or past the deadline: it gives up and exits, and the
   predecessor, which never stopped accepting, serves alone);
2. it writes the deployment's record (``NAME.json``) from the pending one the release left in its
   folder, with its own pid: from here the record names it;
3. it stops its predecessor (the pid that handed it the socket): SIGTERM, the predecessor's service
   drains; SIGKILL to its group past the service's bounded shutdown.

Either the successor owns the socket alone and the record says so, or the predecessor does. The
release's own names for where it may be interrupted are ``STEPS``. Stdlib only: the supervisor
starts in a fraction of a second.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# Where a release can be interrupted, in order (hosting/processes.py names each as it passes it).
STEPS = ("prepared", "spawned", "committed", "retired", "settled")
FAILPOINT_VARIABLE = "MLOPS_HANDOVER_FAILPOINT"


def failpoint(step: str, deployment: str) -> None:
    """Die here, as a SIGKILL would, when MLOPS_HANDOVER_FAILPOINT names ``step`` (or
    ``deployment:step``): how the tests interrupt a release at each step of a handover. Unset, as
    everywhere but there, it does nothing."""
    if os.environ.get(FAILPOINT_VARIABLE) in (step, f"{deployment}:{step}"):
        os.kill(os.getpid(), signal.SIGKILL)


def runs_as(pid: int, marker: str) -> bool:
    """Whether ``pid`` is running with ``marker`` in its command line (a zombie's is empty; a pid
    reused by another program lacks it)."""
    try:
        return marker.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def stop_process(pid: int, marker: str, timeout: float) -> None:
    """SIGTERM ``pid``, then SIGKILL to its process group after ``timeout``: only while it still
    runs as ``marker``."""
    if runs_as(pid, marker):
        with contextlib.suppress(ProcessLookupError):  # it exited between the look and the signal
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while runs_as(pid, marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    if runs_as(pid, marker):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)  # the supervisor and what it runs


def health_answer(host: str, port: int, path: str, timeout: float = 1.0) -> dict | None:
    """The JSON object a 200 answer of ``path`` on ``host:port`` holds; None for anything else
    (no answer within ``timeout``, another status, not JSON)."""
    connection = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        connection.request("GET", path)
        answer = connection.getresponse()
        body = json.loads(answer.read() or b"{}")
        return body if answer.status == 200 and isinstance(body, dict) else None
    except (OSError, ValueError, http.client.HTTPException):
        return None
    finally:
        connection.close()


@dataclass
class Takeover:
    host: str
    port: int
    deployment_id: str
    version: str
    pending: Path  # the record the release wrote in this deployment's folder, pid not yet known
    record: Path  # MLOPS_HOME/deployments/NAME.json
    ready_timeout: float
    predecessor: int | None = None  # the supervisor that handed over the socket
    predecessor_marker: str = ""  # in its command line (its deployment id)
    predecessor_stop_seconds: float = 75.0

    def __post_init__(self) -> None:
        self.committed = threading.Event()
        self.gave_up = ""

    def wait_ready(self, service_exited: threading.Event, stopping: threading.Event) -> bool:
        """Until this deployment's own service answers ready; False (``gave_up`` says why) if it
        exits first, answers another version, or the deadline passes. The predecessor answers too
        meanwhile: it shares the socket."""
        deadline = time.monotonic() + self.ready_timeout
        while not stopping.is_set():
            if service_exited.is_set():
                return False  # the supervisor's loop has said why
            answer = health_answer(self.host, self.port, "/health/ready") or {}
            if answer.get("deployment") == self.deployment_id:
                if answer.get("version") != self.version:
                    self.gave_up = f"serving version {answer.get('version')}, expected {self.version}"
                    return False
                return True
            if time.monotonic() > deadline:
                self.gave_up = f"not ready with version {self.version} within {self.ready_timeout:.0f} s"
                return False
            time.sleep(0.05)
        self.gave_up = "stopped before it was ready"
        return False

    def commit(self) -> None:
        """The record names this supervisor from now on (written whole: a reader sees one or the other)."""
        record = json.loads(self.pending.read_text())
        record["pid"] = os.getpid()
        staging = self.record.with_name(f".{self.record.name}.{os.getpid()}.tmp")
        staging.write_text(json.dumps(record, indent=2))
        os.replace(staging, self.record)
        self.committed.set()

    def retire_predecessor(self) -> None:
        if self.predecessor is not None:
            stop_process(self.predecessor, self.predecessor_marker, self.predecessor_stop_seconds)
