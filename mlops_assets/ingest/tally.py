"""What the rules need to know of a landed file, gathered chunk by chunk in memory that does not
grow with the file: per column, how many rows break each rule and the first few of them (by their
line in the file), the moments of the number columns (merged exactly), a bounded sample of them for
the KS test, and the counts of each category. A file read whole is a tally of one chunk.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from mlops_assets.ingest.parsing import NOT_OF_KIND, ParsedBatch
from mlops_assets.project.metrics import label_text
from mlops_assets.project.rules import Broken
from mlops_assets.project.spec import NUMBER_KINDS, ColumnSpec, ProjectSpec

SHOWN_ROWS = 3  # offending rows a message names; the rest are counted
# The KS test's sample of a batch's number column. A batch this small is compared whole; beyond it,
# the p-value barely moves (the reference keeps 2000 values: the test's power is bounded by those).
DRIFT_SAMPLE_ROWS = 50_000
# The reference's sample of a number column (``reference.py``): the batches keep this many each
# (their rows of smallest key), merged the same way (see ``KeyedSample.merge``).
REFERENCE_SAMPLE = 2000


def show(value: object) -> str:
    return repr(value) if isinstance(value, str) else f"{float(value):g}"


@dataclass
class Rows:
    """Rows of one column that break one rule: how many, and the first few with their values."""

    count: int = 0
    shown: list[str] = field(default_factory=list)

    def add(self, broken: np.ndarray, values: pd.Series) -> None:
        if not broken.any():
            return
        index = values.index[broken]
        self.count += len(index)
        for row in index[: SHOWN_ROWS - len(self.shown)]:
            self.shown.append(f"row {row + 2}: {show(values.loc[row])}")  # +2: the header, 1-based

    def examples(self) -> str:
        more = self.count - len(self.shown)
        return ", ".join(self.shown) + (f" and {more} more" if more > 0 else "")


@dataclass
class Moments:
    """Count, mean and sum of squared deviations, merged chunk by chunk (Chan et al.): the same
    mean and standard deviation as of the whole column, to rounding."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0
    min: float = math.inf
    max: float = -math.inf

    def add(self, values: np.ndarray) -> None:
        if not len(values):
            return
        mean = float(values.mean())
        self.merge(
            Moments(
                len(values),
                mean,
                float(((values - mean) ** 2).sum()),
                float(values.min()),
                float(values.max()),
            )
        )

    def merge(self, other: Moments) -> None:
        if not other.count:
            return
        mean, m2 = other.mean, other.m2
        total = self.count + other.count
        delta = mean - self.mean
        self.mean += delta * other.count / total
        self.m2 += m2 + delta * delta * self.count * other.count / total  # not **: inf, not OverflowError
        self.count = total
        self.min, self.max = min(self.min, other.min), max(self.max, other.max)

    def std(self) -> float:
        return float(np.sqrt(self.m2 / (self.count - 1))) if self.count > 1 else float("nan")


def row_keys(rows: np.ndarray, salt: int = 0) -> np.ndarray:
    """A well-mixed 64-bit hash of each row's place in the file and the file's ``salt``
    (splitmix64's finaliser): two files' rows get unrelated keys."""
    with np.errstate(over="ignore"):
        z = rows.astype(np.uint64) + np.uint64(salt) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


@dataclass
class KeyedSample:
    """A uniform sample of at most ``size`` values, the same whatever the chunk size: the rows with
    the smallest ``row_keys`` are kept. A column of no more rows is kept whole."""

    size: int = DRIFT_SAMPLE_ROWS
    salt: int = 0
    keys: np.ndarray = field(default_factory=lambda: np.empty(0, dtype=np.uint64))
    values: np.ndarray = field(default_factory=lambda: np.empty(0))

    def add(self, rows: np.ndarray, values: np.ndarray) -> None:
        self.merge(row_keys(rows, self.salt), values)

    def merge(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Keep the smallest keys of these and those kept: the bottom ``size`` of a union is a
        uniform sample of it (how the reference's sample is merged from the batches')."""
        keys = np.concatenate([self.keys, keys.astype(np.uint64)])
        values = np.concatenate([self.values, values])
        if len(keys) > self.size:
            kept = np.argpartition(keys, self.size - 1)[: self.size]
            keys, values = keys[kept], values[kept]
        self.keys, self.values = keys, values


@dataclass
class ColumnTally:
    not_of_kind: Rows = field(default_factory=Rows)  # the text cells that are not of the kind at all
    nulls: Rows = field(default_factory=Rows)
    beyond: Rows = field(default_factory=Rows)  # past the rule table's ±limit
    outside: Rows = field(default_factory=Rows)  # outside the spec's range or categories
    moments: Moments = field(default_factory=Moments)  # number columns: their values of the kind
    sample: KeyedSample = field(default_factory=KeyedSample)
    shares: Counter = field(default_factory=Counter)  # categorical and boolean: each value's count
    classes: Counter = field(default_factory=Counter)  # a classifier's target: each label's count

    def add(self, batch: ParsedBatch, name: str, column: ColumnSpec, is_label: bool = False) -> None:
        assert batch.cells is not None
        values, is_null, codes = batch.typed(name, column)
        self.not_of_kind.add(np.isin(codes, NOT_OF_KIND), batch.cells[name])
        self.nulls.add(is_null.to_numpy(), batch.cells[name])
        self.beyond.add(codes == Broken.BEYOND, values)
        self.outside.add(codes == Broken.OUTSIDE, values)
        present = values.dropna()
        if column.kind in NUMBER_KINDS:
            numbers = present.to_numpy(dtype=np.float64)
            self.moments.add(numbers)
            self.sample.add(present.index.to_numpy(), numbers)
        else:
            self.shares.update(present.astype(str).value_counts().to_dict())
        if is_label:
            counts = present.value_counts()
            self.classes.update({label_text(label, column.kind): int(n) for label, n in counts.items()})

    def share_of_each(self) -> dict[str, float]:
        """Each value's share of the non-empty cells (as ``reference.category_shares``)."""
        total = sum(self.shares.values())
        return {value: count / total for value, count in self.shares.items()} if total else {}


@dataclass
class BatchTally:
    """A landed file as the rules see it, ``add``-ed one parsed chunk at a time."""

    source: str
    spec: ProjectSpec
    error: str | None = None  # why the file is not a CSV: then nothing else was tallied
    rows: int = 0
    header: list[str] | None = None
    columns: dict[str, ColumnTally] = field(default_factory=dict)  # the spec's columns in the file

    salt: int = 0  # the keys of the samples: see ``row_keys``

    def add(self, batch: ParsedBatch) -> None:
        if self.error is not None:
            return
        if batch.error is not None or batch.cells is None:
            self.error = batch.error
            return
        if self.header is None:
            self.header = list(batch.cells.columns)
            self.columns = {
                name: ColumnTally(sample=KeyedSample(salt=self.salt))
                for name in self.spec.columns
                if name in self.header
            }
        self.rows += len(batch.cells)
        labels = self.spec.target.name if self.spec.task != "regression" else None
        for name, tally in self.columns.items():
            tally.add(batch, name, self.spec.columns[name], is_label=name == labels)

    @property
    def parsed(self) -> bool:
        return self.error is None and self.header is not None

    def missing(self) -> list[str]:
        return [name for name in self.spec.columns if name not in (self.header or ())]

    def unexpected(self) -> list[str]:
        return sorted(set(self.header or ()) - set(self.spec.columns))

    def statistics(self) -> dict:
        """What the reference statistics of several batches are merged from (``reference.py``),
        as JSON: per number column its moments and the ``REFERENCE_SAMPLE`` values of smallest
        key, per category column (and a classifier's target) the count of each value."""
        numbers, counts, classes = {}, {}, {}
        for name, tally in self.columns.items():
            if tally.classes:
                classes[name] = dict(tally.classes)
            if self.spec.columns[name].kind not in NUMBER_KINDS:
                counts[name] = dict(tally.shares)
                continue
            moments, sample = tally.moments, tally.sample
            smallest = np.argsort(sample.keys)[:REFERENCE_SAMPLE]
            numbers[name] = {
                **asdict(moments),
                "keys": sample.keys[smallest].tolist(),
                "values": sample.values[smallest].tolist(),
            }
        return {"rows": self.rows, "numbers": numbers, "counts": counts, "classes": classes}


def tally_of(batch: ParsedBatch, spec: ProjectSpec) -> BatchTally:
    """The tally of a file read whole."""
    tally = BatchTally(batch.source, spec)
    tally.add(batch)
    return tally
