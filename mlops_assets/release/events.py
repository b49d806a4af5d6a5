"""The append-only log of production changes: who moved production, when, why, from what, to what.

Rollback follows this log, so it is a chain nobody can forge without a key. Each event is a JSON
file ``events/production/seq-<n>.json`` holding its sequence number, the MAC of the event before
it and its own MAC: HMAC-SHA256 over its canonical JSON under the event-log key (a file in
``MLOPS_HOME/secrets`` or a Key Vault secret, never in storage). Whoever can write the log but not
the key can neither forge an event nor recompute the chain after editing one, as a plain hash
chain would let them. An event is appended by creating its sequence number's file only if it does
not exist yet (a conditional create, locally and on Blob Storage alike), so two writers racing for
one number never fork the chain: the loser reads again and takes the next. Reading validates
every entry: a malformed one is named, never a crash. Files named by time (before the chain) are
read as unverified history and count for nothing once the chain has begun.
"""

from __future__ import annotations

import dataclasses
import getpass
import hashlib
import hmac
import json
import re
import secrets
import socket
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from mlops_assets.settings import make_secret_file
from mlops_assets.storage.fsstore import Storage

EVENTS_PREFIX = "events/production"
# Actions that leave production on another version; an automatic rollback, a QA teardown or
# production stopped by hand (down: nothing serves until the next release) does not.
CHANGES = ("release", "promote", "rollback")
ACTIONS = (*CHANGES, "automatic_rollback", "qa_teardown", "down")
BY_TAG = "mlops/by"  # the self-declared name of whoever started the run
CHAINED = re.compile(r"seq-(\d{10})\.json")
APPEND_ATTEMPTS = 50


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
    seq: int = 0  # 0: from before the chain
    previous: str = ""  # the MAC of event seq - 1 ("" for the first)
    mac: str = ""

    def line(self) -> str:
        moved = f"{self.from_version or '-'} -> {self.to_version or '-'}"
        who = f"{self.by} ({self.os_user}@{self.host})"
        why = f": {self.reason}" if self.reason else ""
        ran = f"run {self.run_id[:8]}" if self.run_id else "outside any run"
        return f"{self.time}  {self.action:<18} {moved:<10} by {who}, {ran}{why}"


_TEXT_FIELDS = ("action", "reason", "by", "os_user", "host", "run_id", "time", "previous", "mac")
_FIELDS = {f.name for f in dataclasses.fields(ProductionEvent)}


class EventLogError(ValueError):
    """The event log cannot be trusted as it is; the message says which entry and why."""


@dataclass
class EventLog:
    events: list[ProductionEvent]  # every readable event, oldest first (unverified ones included)
    problems: list[str]  # entries that are malformed or break the chain, by file
    chained: int  # events in the chain

    def require_intact(self) -> None:
        if self.problems:
            raise EventLogError(
                "the production event log does not verify, so nothing follows it: "
                + "; ".join(self.problems[:5])
                + (f" (and {len(self.problems) - 5} more)" if len(self.problems) > 5 else "")
            )

    @property
    def trusted(self) -> list[ProductionEvent]:
        """The chain once it has begun, else the history from before it."""
        return [e for e in self.events if e.seq] if self.chained else self.events


def event_log_key(settings) -> bytes:
    """The settings' key (MLOPS_EVENT_LOG_KEY, or a secret file), else MLOPS_HOME's key file, made
    (random, mode 0600) the first time."""
    if settings.event_log_key is not None:
        return settings.event_log_key.get_secret_value().encode()
    if settings.profile == "azure":  # pods and laptops write one log: a key of their own would break it
        raise EventLogError(
            "the azure profile needs MLOPS_EVENT_LOG_KEY (a Key Vault secret, mounted into "
            "MLOPS_SECRETS_DIR): every writer of the production event log shares one key"
        )
    path: Path = settings.event_log_key_file
    if not path.exists():
        make_secret_file(path, secrets.token_hex(32) + "\n")
    return path.read_text().strip().encode()


def operator() -> tuple[str, str]:
    """The OS user and host of the process recording the event."""
    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # no name for this uid (a container's arbitrary user)
        user = "unknown"
    return user, socket.gethostname()


def _mac(event: ProductionEvent, key: bytes) -> str:
    body = json.dumps({**asdict(event), "mac": ""}, sort_keys=True).encode()
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def record(storage: Storage, event: ProductionEvent, key: bytes) -> ProductionEvent:
    """Append ``event`` (its time, place in the chain and MAC set now) as a file of its own."""
    if event.action not in ACTIONS:
        raise ValueError(f"unknown production event {event.action!r}; one of {', '.join(ACTIONS)}")
    for _ in range(APPEND_ATTEMPTS):
        chain = [e for e in read_log(storage, key).events if e.seq]
        head = chain[-1] if chain else None
        stamped = dataclasses.replace(
            event,
            time=datetime.now(UTC).isoformat(timespec="milliseconds"),
            seq=head.seq + 1 if head else 1,
            previous=head.mac if head else "",
            mac="",
        )
        stamped = dataclasses.replace(stamped, mac=_mac(stamped, key))
        data = json.dumps(asdict(stamped), sort_keys=True).encode()
        if storage.create_bytes(f"{EVENTS_PREFIX}/seq-{stamped.seq:010d}.json", data):
            return stamped
    raise EventLogError(f"could not append to the event log: {APPEND_ATTEMPTS} writers got there first")


def _parsed(name: str, raw: bytes) -> ProductionEvent | str:
    """The event in ``raw``, or why it is not one."""
    try:
        found = json.loads(raw)
    except ValueError:
        return f"{name}: not JSON"
    if not isinstance(found, dict):
        return f"{name}: not a JSON object"
    extra, missing = set(found) - _FIELDS, {"action", "to_version", "from_version", "run_id"} - set(found)
    if extra or missing:
        said = [
            f"unexpected {', '.join(sorted(extra))}" if extra else "",
            f"lacks {', '.join(sorted(missing))}" if missing else "",
        ]
        return f"{name}: {'; '.join(s for s in said if s)}"
    for field in _TEXT_FIELDS:
        if field in found and not isinstance(found[field], str):
            return f"{name}: {field} is not text"
    for field in ("to_version", "from_version"):
        if found[field] is not None and not isinstance(found[field], str):
            return f"{name}: {field} is neither text nor null"
    if not isinstance(found.get("seq", 0), int) or isinstance(found.get("seq"), bool):
        return f"{name}: seq is not a whole number"
    if found["action"] not in ACTIONS:
        return f"{name}: unknown action {found['action']!r}"
    defaults = {"reason": "", "by": "", "os_user": "", "host": ""}
    return ProductionEvent(**{**defaults, **found})


def read_log(storage: Storage, key: bytes | None) -> EventLog:
    """Every event, oldest first, each entry validated and the chain checked under ``key``
    (None: not checked, the reader has no key)."""
    files = sorted(storage.list_files(EVENTS_PREFIX, versions=False), key=lambda f: f.path)
    legacy, chain, problems = [], [], []
    for stored in files:
        name = stored.path.rsplit("/", 1)[-1]
        parsed = _parsed(stored.path, storage.read_bytes(stored.path))
        if isinstance(parsed, str):
            problems.append(parsed)
            continue
        numbered = CHAINED.fullmatch(name)
        if numbered is None:
            if parsed.seq or parsed.mac:
                problems.append(f"{stored.path}: a chained event under a name outside the chain")
            else:
                legacy.append(parsed)
            continue
        if parsed.seq != int(numbered.group(1)):
            problems.append(f"{stored.path}: says it is event {parsed.seq}")
            continue
        chain.append(parsed)
    if chain and key is not None:
        problems += _chain_problems(chain, key)
    return EventLog([*legacy, *chain], problems, len(chain))


def _chain_problems(chain: list[ProductionEvent], key: bytes) -> list[str]:
    problems, previous = [], ""
    for expected, event in enumerate(chain, 1):
        where = f"{EVENTS_PREFIX}/seq-{event.seq:010d}.json"
        if event.seq != expected:
            problems.append(f"event {expected} is missing (the chain jumps to {event.seq})")
            break
        if not hmac.compare_digest(event.mac, _mac(event, key)):
            problems.append(f"{where}: its MAC does not match (edited, or written without the key)")
        elif event.previous != previous:
            problems.append(f"{where}: does not follow event {expected - 1}")
        previous = event.mac
    return problems


def version_before_last_change(events: list[ProductionEvent]) -> tuple[str | None, ProductionEvent | None]:
    """The version that served before the last change of production, and that change."""
    last = next((e for e in reversed(events) if e.action in CHANGES), None)
    return (last.from_version if last else None), last
