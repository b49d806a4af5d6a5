"""Reference statistics the distribution checks compare with, kept at a fixed path in storage.

Read by path, never as an asset input: the checks of ``landed_batch`` feed ``training_data``,
which rewrites the reference, so an input would make a cycle.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime

import numpy as np
import pandas as pd

from mlops_assets.ingest.tally import REFERENCE_SAMPLE, KeyedSample, Moments
from mlops_assets.project.spec import NUMBER_KINDS, ProjectSpec
from mlops_assets.storage.fsstore import Storage

REFERENCE_PATH = "reference/stats.json"
SAMPLE_SIZE = REFERENCE_SAMPLE


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


def merged_reference(statistics: list[dict], spec: ProjectSpec, source: str) -> ReferenceStats:
    """The reference of several batches from each one's ``BatchTally.statistics``, never their
    rows: moments merged exactly, the sample a uniform one of all their rows (the smallest keys of
    the union), category shares from the merged counts."""
    columns, categories = {}, {}
    for name, column in spec.columns.items():
        if column.kind not in NUMBER_KINDS:
            counts = Counter()
            for batch in statistics:
                counts.update(batch["counts"].get(name, {}))
            total = sum(counts.values())
            if total:
                categories[name] = {value: count / total for value, count in counts.items()}
            continue
        moments, sample = Moments(), KeyedSample(size=SAMPLE_SIZE)
        for batch in (b["numbers"][name] for b in statistics if name in b["numbers"]):
            moments.merge(Moments(batch["count"], batch["mean"], batch["m2"], batch["min"], batch["max"]))
            sample.merge(
                np.array(batch["keys"], dtype=np.uint64), np.array(batch["values"], dtype=np.float64)
            )
        if moments.count:
            columns[name] = ColumnStats(
                mean=moments.mean,
                std=moments.std() if moments.count > 1 else 0.0,
                min=moments.min,
                max=moments.max,
                sample=sorted(float(v) for v in sample.values),
            )
    created = datetime.now(UTC).isoformat(timespec="seconds")
    rows = sum(batch["rows"] for batch in statistics)
    return ReferenceStats(source=source, created=created, rows=rows, columns=columns, categories=categories)


def write_reference(storage: Storage, reference: ReferenceStats) -> str:
    return storage.write_json(REFERENCE_PATH, asdict(reference))


def read_reference(storage: Storage) -> ReferenceStats | None:
    if not storage.exists(REFERENCE_PATH):
        return None
    raw = storage.read_json(REFERENCE_PATH)
    columns = {name: ColumnStats(**stats) for name, stats in raw.pop("columns").items()}
    return ReferenceStats(columns=columns, **raw)
