"""Reference statistics the distribution checks compare with, kept at a fixed path in storage.

Read by path, never as an asset input: the checks of ``landed_batch`` feed ``training_data``,
which rewrites the reference, so an input would make a cycle.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from mlops_assets.project.spec import NUMBER_KINDS, ProjectSpec
from mlops_assets.storage.fsstore import Storage

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
    columns: dict[str, ColumnStats]  # numeric and integer columns
    categories: dict[str, dict[str, float]] = field(default_factory=dict)  # categorical, boolean: shares


def category_shares(values: pd.Series) -> dict[str, float]:
    """Each value's share of the non-empty cells, keyed by its text."""
    present = values.dropna()
    if present.empty:
        return {}
    return {str(k): float(v) for k, v in present.astype(str).value_counts(normalize=True).items()}


def compute_reference(frame: pd.DataFrame, spec: ProjectSpec, source: str) -> ReferenceStats:
    """Statistics by feature kind: numbers keep their moments and a sample, categories their shares."""
    kinds = {name: column.kind for name, column in spec.columns.items() if name in frame}
    categories = {
        name: category_shares(frame[name]) for name, kind in kinds.items() if kind not in NUMBER_KINDS
    }
    columns = {}
    for column in (name for name, kind in kinds.items() if kind in NUMBER_KINDS):
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
    return ReferenceStats(
        source=source, created=created, rows=len(frame), columns=columns, categories=categories
    )


def write_reference(storage: Storage, reference: ReferenceStats) -> str:
    return storage.write_json(REFERENCE_PATH, asdict(reference))


def read_reference(storage: Storage) -> ReferenceStats | None:
    if not storage.exists(REFERENCE_PATH):
        return None
    raw = storage.read_json(REFERENCE_PATH)
    columns = {name: ColumnStats(**stats) for name, stats in raw.pop("columns").items()}
    return ReferenceStats(columns=columns, **raw)
