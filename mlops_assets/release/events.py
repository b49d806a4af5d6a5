"""The append-only log of production changes: who moved production, when, why, from what, to what.

One JSON file per event under ``events/production/`` in storage, named by time and a random id and
never rewritten: appending is creating a file, which local folders and Blob Storage both do
atomically, and two writers can never overwrite each other.
"""

from __future__ import annotations

import getpass
import json
import socket
import uuid
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from mlops_assets.storage.fsstore import Storage

EVENTS_PREFIX = "events/production"
# Actions that leave production on another version; an automatic rollback or a QA teardown does not.
CHANGES = ("release", "promote", "rollback")
ACTIONS = (*CHANGES, "automatic_rollback", "qa_teardown")
BY_TAG = "mlops/by"  # the self-declared name of whoever started the run


@dataclass(frozen=True)
class ProductionEvent:
    action: str
    to_version: str | None
    from_version: str | None
    reason: str
    by: str
    os_user: str
    host: str
    run_id: str
    time: str = ""

    def line(self) -> str:
        moved = f"{self.from_version or '-'} -> {self.to_version or '-'}"
        who = f"{self.by} ({self.os_user}@{self.host})"
        why = f": {self.reason}" if self.reason else ""
        return f"{self.time}  {self.action:<18} {moved:<10} by {who}, run {self.run_id[:8]}{why}"


def operator() -> tuple[str, str]:
    """The OS user and host of the process recording the event."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's arbitrary user)
        user = "unknown"
    return user, socket.gethostname()


def record(storage: Storage, event: ProductionEvent) -> ProductionEvent:
    """Append ``event`` (its time set now) as a file of its own; never overwrites one."""
    if event.action not in ACTIONS:
        raise ValueError(f"unknown production event {event.action!r}; one of {', '.join(ACTIONS)}")
    now = datetime.now(UTC)
    stamped = ProductionEvent(**{**asdict(event), "time": now.isoformat(timespec="milliseconds")})
    path = f"{EVENTS_PREFIX}/{now.strftime('%Y%m%dT%H%M%S%f')}-{uuid.uuid4().hex[:12]}.json"
    storage.write_bytes(path, json.dumps(asdict(stamped), sort_keys=True).encode())
    return stamped


def history(storage: Storage) -> list[ProductionEvent]:
    """Every event, oldest first."""
    files = sorted(storage.list_files(EVENTS_PREFIX, versions=False), key=lambda f: f.path)
    return [ProductionEvent(**json.loads(storage.read_bytes(f.path))) for f in files]


def version_before_last_change(events: list[ProductionEvent]) -> tuple[str | None, ProductionEvent | None]:
    """The version that served before the last change of production, and that change."""
    last = next((e for e in reversed(events) if e.action in CHANGES), None)
    return (last.from_version if last else None), last
