"""Compacting a day of the scoring service's request log into one table (no Dagster here).

The service writes JSON-lines batches under ``scoring-logs/date=<flush day>/``. A record belongs
to the day of its own ``time`` (UTC), and a batch flushed just after midnight, or spilled during
an outage and delivered later, sits in a later folder: a day is read from its own folder and the
next one, and the records are chosen by their time. Synthetic traffic (smoke tests, benchmarks)
is left out and a request id seen twice (a batch delivered twice after a spill retry) counts once.
One output row per scored row, keyed by (request_id, row_index), which is what labels join on.
Rows sent by position or by name both land in the model project's columns, typed as training
types them: numbers and booleans as float64 (true = 1.0), categories as text, null as missing.
"""

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import numpy as np
import orjson
import pandas as pd

from mlops_assets.serving.request_log import LOG_PREFIX
from mlops_assets.storage.fsstore import Storage, StoredFile

NEXT_DAY_GRACE_SECONDS = 600
KEY_COLUMNS = ("request_id", "row_index", "time", "model_version", "latency_ms")  # then the features


@dataclass
class DaySummary:
    day: str
    source_files: int = 0
    requests: int = 0
    rows: int = 0
    synthetic_excluded: int = 0
    duplicates_removed: int = 0
    malformed_lines: int = 0
    model_versions: dict[str, int] = field(default_factory=dict)  # requests per version
    latency_ms: dict[str, float] = field(default_factory=dict)


def folder_of(day: date) -> str:
    return f"{LOG_PREFIX}/date={day.isoformat()}"


def _flushed_at(file: StoredFile) -> float | None:
    """The writer names a batch ``<flush time in ms>-<writer>-<seq>.jsonl`` (a spilled batch keeps it)."""
    stem = file.name.split("-", 1)[0]
    return int(stem) / 1000 if stem.isdigit() else None


def source_files(storage: Storage, day: date) -> list[StoredFile]:
    """The files that can hold records of ``day``: its folder, and the next day's batches flushed
    within ``NEXT_DAY_GRACE_SECONDS`` of midnight (a batch holds records received before its flush).
    Filtering by name keeps a finished day's sources fixed while the next day's traffic flows."""
    files = list(storage.list_files(folder_of(day), versions=False))
    _, midnight = _day_bounds(day)
    for file in storage.list_files(folder_of(day + timedelta(days=1)), versions=False):
        flushed = _flushed_at(file)
        if flushed is None or flushed < midnight + NEXT_DAY_GRACE_SECONDS:
            files.append(file)
    return files


def fingerprint(files: list[StoredFile]) -> str:
    """Changes when a file arrives (batches are written once and never rewritten)."""
    digest = hashlib.sha256()
    for file in sorted(files, key=lambda f: f.path):
        digest.update(f"{file.path}\0{file.size}\n".encode())
    return digest.hexdigest()


def _day_bounds(day: date) -> tuple[float, float]:
    start = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    return start, start + 86_400


def _values(row, names: Sequence[str]) -> list | None:
    if type(row) is dict:
        return [row.get(name) for name in names]
    if type(row) is list and len(row) == len(names):
        return row
    return None


def compact_day(
    storage: Storage,
    day: date,
    files: list[StoredFile],
    features: Sequence[str] | Mapping[str, str],
    target_kind: str = "numeric",
) -> tuple[pd.DataFrame, DaySummary]:
    """One row per scored row: the key columns, the model project's features, the prediction.
    ``features``: name -> kind (a plain list: all numbers); ``target_kind``: the prediction's."""
    kinds = dict(features) if isinstance(features, Mapping) else dict.fromkeys(features, "numeric")
    feature_names = list(kinds)
    summary = DaySummary(day.isoformat(), source_files=len(files))
    start, end = _day_bounds(day)
    seen: set[str] = set()
    rows: list[tuple] = []
    versions: dict[str, int] = {}
    latencies: list[float] = []
    for file in sorted(files, key=lambda f: f.path):
        for line in storage.read_bytes(file.path).splitlines():
            if not line.strip():
                continue
            try:
                record = orjson.loads(line)
                received = float(record["time"])
            except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
                summary.malformed_lines += 1
                continue
            if not start <= received < end:
                continue
            if record.get("synthetic"):
                summary.synthetic_excluded += 1
                continue
            request_id = record["request_id"]
            if request_id in seen:
                summary.duplicates_removed += 1
                continue
            seen.add(request_id)
            try:
                inputs = record["request"]["data"]
                outputs = record["response"]["result"]
            except (KeyError, TypeError):
                summary.malformed_lines += 1
                continue
            version = str(record.get("model_version", ""))
            versions[version] = versions.get(version, 0) + 1
            latencies.append(float(record.get("latency_ms", 0.0)))
            for index, (row, prediction) in enumerate(zip(inputs, outputs, strict=False)):
                values = _values(row, feature_names)
                if values is not None:
                    rows.append((request_id, index, received, version, latencies[-1], *values, prediction))
    frame = pd.DataFrame(rows, columns=[*KEY_COLUMNS, *feature_names, "prediction"])
    frame = frame.astype({"row_index": "int32", "time": "float64", "latency_ms": "float64"})
    as_text = [name for name, kind in kinds.items() if kind == "categorical"]
    frame = frame.astype(
        {n: "float64" for n in feature_names if n not in as_text} | dict.fromkeys(as_text, object)
    )
    frame["prediction"] = frame["prediction"].astype(object if target_kind == "categorical" else "float64")
    summary.requests = len(seen)
    summary.rows = len(frame)
    summary.model_versions = dict(sorted(versions.items()))
    if latencies:
        p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
        summary.latency_ms = {
            "p50": round(float(p50), 3),
            "p95": round(float(p95), 3),
            "p99": round(float(p99), 3),
        }
    return frame, summary
