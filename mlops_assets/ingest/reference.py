"""Reference statistics the distribution checks compare with, kept at a fixed path in storage.

Read by path, never as an asset input: the checks of ``landed_batch`` feed ``training_data``,
which rewrites the reference, so an input would make a cycle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from mlops_assets.core.storage import Storage
from mlops_assets.ingest.schema import COLUMNS

REFERENCE_PATH = "reference/stats.json"
SAMPLE_SIZE = 2000


@dataclass(frozen=True)
class ColumnStats:
    mean: float
    std: float
    min: float
    max: float
    sample: list[float]  # for the two-sample KS test


@dataclass(frozen=True)
class ReferenceStats:
    source: str
    created: str
    rows: int
    columns: dict[str, ColumnStats]


def compute_reference(frame: pd.DataFrame, source: str) -> ReferenceStats:
    columns = {}
    for column in (c for c in COLUMNS if c in frame):
        values = frame[column].dropna().to_numpy(dtype="float64")
        # An evenly spaced subsample of the sorted values keeps the shape of the distribution.
        sample = np.sort(values)
        if len(sample) > SAMPLE_SIZE:
            sample = sample[np.linspace(0, len(sample) - 1, SAMPLE_SIZE).astype(int)]
        columns[column] = ColumnStats(
            mean=float(values.mean()),
            std=float(values.std(ddof=1)) if len(values) > 1 else 0.0,
            min=float(values.min()),
            max=float(values.max()),
            sample=[float(v) for v in sample],
        )
    created = datetime.now(UTC).isoformat(timespec="seconds")
    return ReferenceStats(source=source, created=created, rows=len(frame), columns=columns)


def write_reference(storage: Storage, reference: ReferenceStats) -> str:
    return storage.write_json(REFERENCE_PATH, asdict(reference))


def read_reference(storage: Storage) -> ReferenceStats | None:
    if not storage.exists(REFERENCE_PATH):
        return None
    raw = storage.read_json(REFERENCE_PATH)
    columns = {name: ColumnStats(**stats) for name, stats in raw.pop("columns").items()}
    return ReferenceStats(columns=columns, **raw)
