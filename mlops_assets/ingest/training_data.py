"""Immutable training snapshots: the batches that passed, concatenated, named by their content hash."""

from __future__ import annotations

import hashlib
import io
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import pandas as pd

from mlops_assets.core.storage import Storage

SNAPSHOT_PREFIX = "training-data"
BATCH_COLUMN = "batch"


@dataclass(frozen=True)
class TrainingSnapshot:
    data_version: str
    uri: str
    path: str
    rows: int
    batches: list[str]
    created: str

    def to_dict(self) -> dict:
        return asdict(self)


def data_version(frame: pd.DataFrame) -> str:
    """A hash of the values, column names and row order: same content, same version."""
    digest = hashlib.sha256()
    digest.update(",".join(frame.columns).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


def lacking_columns(batches: dict[str, pd.DataFrame], columns: list[str]) -> dict[str, list[str]]:
    """Each batch that lacks some of ``columns`` (validated before the spec gained them), with those."""
    lacking = {key: [c for c in columns if c not in frame.columns] for key, frame in batches.items()}
    return {key: missing for key, missing in sorted(lacking.items()) if missing}


def combine_batches(batches: dict[str, pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    """``columns`` of every batch in partition-key order, each row tagged with the batch it came from."""
    frames = [batches[key][columns].assign(**{BATCH_COLUMN: key}) for key in sorted(batches)]
    if not frames:
        raise ValueError("no validated batch to build training data from")
    return pd.concat(frames, ignore_index=True)


def write_snapshot(storage: Storage, frame: pd.DataFrame) -> TrainingSnapshot:
    version = data_version(frame)
    path = f"{SNAPSHOT_PREFIX}/{version}/training_data.parquet"
    if not storage.exists(path):  # immutable: a registered model points at it
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        storage.write_bytes(path, buffer.getvalue())
    return TrainingSnapshot(
        data_version=version,
        uri=storage.uri(path),
        path=path,
        rows=len(frame),
        batches=sorted(frame[BATCH_COLUMN].unique().tolist()),
        created=datetime.now(UTC).isoformat(timespec="seconds"),
    )
