"""Immutable training snapshots by reference: a manifest of the kept batches that passed (each by
its path and digest, ``batches.py``), named by the digest of the manifest. Nothing here reads a
row: the trainer reads the files itself (``project/snapshot.py``), wherever it runs.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import pandas as pd

from mlops_assets.core.storage import Storage, load_stored_value, relative_path
from mlops_assets.project.snapshot import MANIFEST_NAME, snapshot_batches

SNAPSHOT_PREFIX = "training-data"


@dataclass(frozen=True)
class TrainingSnapshot:
    data_version: str
    uri: str  # the manifest's
    path: str
    rows: int
    batches: list[str]
    created: str

    def to_dict(self) -> dict:
        return asdict(self)


def lacking_columns(batches: dict[str, dict], columns: list[str]) -> dict[str, list[str]]:
    """Each kept batch that lacks some of ``columns`` (validated before the spec gained them), with those."""
    lacking = {key: [c for c in columns if c not in kept["columns"]] for key, kept in batches.items()}
    return {key: missing for key, missing in sorted(lacking.items()) if missing}


def manifest_of(storage: Storage, batches: dict[str, dict], columns: list[str]) -> dict:
    """``columns`` of every kept batch in partition-key order, each by its URI and digest."""
    if not batches:
        raise ValueError("no validated batch to build training data from")
    entries = [
        {
            "batch": key,
            "uri": storage.uri(batches[key]["path"]),
            "sha256": batches[key]["sha256"],
            "rows": batches[key]["rows"],
        }
        for key in sorted(batches)
    ]
    return {"columns": list(columns), "batches": entries}


def data_version(manifest: dict) -> str:
    """The digest of what the manifest names (columns, batches and their digests, in order): the
    same batches, the same version, wherever the storage is."""
    named = [manifest["columns"], [(entry["batch"], entry["sha256"]) for entry in manifest["batches"]]]
    return hashlib.sha256(json.dumps(named).encode()).hexdigest()[:16]


def write_snapshot(storage: Storage, manifest: dict) -> TrainingSnapshot:
    version = data_version(manifest)
    path = f"{SNAPSHOT_PREFIX}/{version}/{MANIFEST_NAME}"
    if not storage.exists(path):  # immutable: a registered model points at it
        storage.write_json(path, {**manifest, "data_version": version})
    return TrainingSnapshot(
        data_version=version,
        uri=storage.uri(path),
        path=path,
        rows=sum(entry["rows"] for entry in manifest["batches"]),
        batches=[entry["batch"] for entry in manifest["batches"]],
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )


def load_snapshot(storage: Storage, uri: str) -> pd.DataFrame:
    """The rows of the snapshot at ``uri`` (a manifest; a parquet file from before manifests),
    read through ``storage``'s credentials: for the orchestrator's own uses (a candidate's holdout
    from before train.py wrote it)."""
    return pd.concat(_batches(storage, _manifest(storage, uri), uri), ignore_index=True)


def sample_snapshot(storage: Storage, uri: str, rows: int) -> pd.DataFrame:
    """At most about ``rows`` rows of the snapshot at ``uri``, drawn from each batch in proportion
    to its size, a batch at a time: what drift compares production with, in memory that does not
    grow with the training data."""
    manifest = _manifest(storage, uri)
    total = sum(e["rows"] for e in manifest["batches"]) if manifest else 0
    kept = []
    for batch in _batches(storage, manifest, uri):
        share = math.ceil(rows * len(batch) / total) if total else rows
        kept.append(batch.sample(n=share, random_state=0) if len(batch) > share else batch)
    return pd.concat(kept, ignore_index=True)


def _manifest(storage: Storage, uri: str) -> dict | None:
    """The manifest at ``uri``; None for a snapshot from before manifests (one parquet file)."""
    path = relative_path(storage, uri)
    return storage.read_json(path) if path.endswith(".json") else None


def _batches(storage: Storage, manifest: dict | None, uri: str) -> Iterator[pd.DataFrame]:
    if manifest is None:
        yield load_stored_value(storage, relative_path(storage, uri))
        return
    yield from snapshot_batches(
        manifest, lambda file: storage.fs.open(storage.fs_path(relative_path(storage, file)))
    )
