"""The rules a landed batch must pass, as plain functions over the file's bytes.

Every rule returns a :class:`RuleOutcome` whose problems name the file, the column and the rule,
e.g. ``landing/new.csv: column s6 missing (schema check)``.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from mlops_assets.ingest.reference import ReferenceStats
from mlops_assets.ingest.schema import COLUMNS

NULL_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})


@dataclass(frozen=True)
class ValidationThresholds:
    value_ranges: Mapping[str, tuple[float, float]]
    max_null_fraction: float = 0.0
    hard_mean_shift_sd: float = 4.0  # beyond this the batch is corrupt (e.g. changed units)
    hard_std_ratio: float = 4.0
    min_rows_for_spread: int = 20  # a smaller batch's spread says nothing (a labels file may have 3 rows)
    drift_mean_shift_sd: float = 0.5
    drift_std_ratio: float = 1.5
    drift_ks_pvalue: float = 0.001


@dataclass(frozen=True)
class ParsedBatch:
    """A landed file read as text cells; ``error`` says why it could not be read as CSV."""

    source: str
    cells: pd.DataFrame | None
    error: str | None = None


@dataclass
class RuleOutcome:
    rule: str
    passed: bool
    problems: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def message(self) -> str:
        if self.passed:
            return f"{self.rule} check passed"
        return "; ".join(self.problems)


def repeated_columns(text: str) -> list[str]:
    """Header names given more than once, exactly or once trimmed: read from the raw header, since
    pandas would rename the second ``s6`` to ``s6.1`` and the file would pass without it."""
    header = next(csv.reader(io.StringIO(text)), [])
    counts = Counter(name.strip() for name in header)
    return [f"{name!r} ({count} times)" for name, count in counts.items() if count > 1]


def parse_batch(source: str, raw: bytes) -> ParsedBatch:
    """Read ``raw`` as a CSV with a header; every cell stays text so no value is lost yet."""
    if b"\x00" in raw:
        return ParsedBatch(source, None, "binary content, not a CSV file")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        return ParsedBatch(source, None, f"not UTF-8 text at byte {exc.start}")
    if not text.strip():
        return ParsedBatch(source, None, "empty file")
    repeated = repeated_columns(text)
    if repeated:
        return ParsedBatch(source, None, f"column names repeated in the header: {', '.join(repeated)}")
    try:
        cells = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        return ParsedBatch(source, None, f"not a well-formed CSV ({str(exc).strip()})")
    cells.columns = [str(c).strip() for c in cells.columns]
    if cells.empty:
        return ParsedBatch(source, None, "no data rows under the header")
    return ParsedBatch(source, cells)


def _numeric(cells: pd.Series) -> tuple[pd.Series, pd.Series, pd.Series]:
    """Values as floats, a mask of null cells and a mask of cells that are text, not numbers."""
    stripped = cells.str.strip()
    is_null = stripped.str.lower().isin(NULL_TOKENS)
    values = pd.to_numeric(stripped.where(~is_null), errors="coerce").astype("float64")
    not_number = values.isna() & ~is_null
    # 'inf' parses as a number, but no measurement is infinite.
    not_number |= np.isinf(values.to_numpy())
    return values.where(~not_number), is_null, not_number


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else f"{float(value):g}"


def _examples(index: pd.Index, cells: pd.Series, limit: int = 3) -> str:
    shown = [f"row {i + 2}: {_show(cells.loc[i])}" for i in index[:limit]]  # +2: header, 1-based
    more = f" and {len(index) - limit} more" if len(index) > limit else ""
    return ", ".join(shown) + more


def check_parse(batch: ParsedBatch, _: ValidationThresholds, __: ReferenceStats | None) -> RuleOutcome:
    if batch.error:
        return RuleOutcome("parse", False, [f"{batch.source}: {batch.error} (parse check)"])
    assert batch.cells is not None
    return RuleOutcome("parse", True, metadata={"rows": len(batch.cells)})


def _unparsed(batch: ParsedBatch, rule: str) -> RuleOutcome | None:
    if batch.cells is None:
        return RuleOutcome(rule, False, [f"{batch.source}: not checked, file did not parse ({rule} check)"])
    return None


def check_schema(batch: ParsedBatch, _: ValidationThresholds, __: ReferenceStats | None) -> RuleOutcome:
    if (skipped := _unparsed(batch, "schema")) is not None:
        return skipped
    cells = batch.cells
    problems = [f"{batch.source}: column {c} missing (schema check)" for c in COLUMNS if c not in cells]
    for column in (c for c in COLUMNS if c in cells):
        _, _, not_number = _numeric(cells[column])
        if not_number.any():
            bad = cells.index[not_number.to_numpy()]
            problems.append(
                f"{batch.source}: column {column} must be numeric, found text in {len(bad)} row(s): "
                f"{_examples(bad, cells[column])} (schema check)"
            )
    extra = sorted(set(cells.columns) - set(COLUMNS))
    return RuleOutcome("schema", not problems, problems, {"unexpected_columns": ", ".join(extra)})


def typed_frame(batch: ParsedBatch) -> pd.DataFrame:
    """The schema columns as float64; text cells and null tokens become NaN."""
    assert batch.cells is not None
    return pd.DataFrame({c: _numeric(batch.cells[c])[0] for c in COLUMNS if c in batch.cells})


def check_nulls(batch: ParsedBatch, limits: ValidationThresholds, _: ReferenceStats | None) -> RuleOutcome:
    if (skipped := _unparsed(batch, "nulls")) is not None:
        return skipped
    cells = batch.cells
    problems, fractions = [], {}
    for column in (c for c in COLUMNS if c in cells):
        _, is_null, _ = _numeric(cells[column])
        fractions[column] = float(is_null.mean())
        if fractions[column] > limits.max_null_fraction:
            bad = cells.index[is_null.to_numpy()]
            problems.append(
                f"{batch.source}: column {column} has {int(is_null.sum())} empty value(s) "
                f"({_examples(bad, cells[column])}), at most {limits.max_null_fraction:.0%} allowed "
                "(nulls check)"
            )
    return RuleOutcome("nulls", not problems, problems, {"null_fraction": fractions})


def check_ranges(batch: ParsedBatch, limits: ValidationThresholds, _: ReferenceStats | None) -> RuleOutcome:
    if (skipped := _unparsed(batch, "ranges")) is not None:
        return skipped
    frame = typed_frame(batch)
    problems = []
    for column, (low, high) in limits.value_ranges.items():
        if column not in frame:
            continue
        values = frame[column]
        outside = (values < low) | (values > high)
        if outside.any():
            bad = frame.index[outside.to_numpy()]
            problems.append(
                f"{batch.source}: column {column} has {len(bad)} value(s) outside [{low:g}, {high:g}]: "
                f"{_examples(bad, values)} (ranges check)"
            )
    return RuleOutcome("ranges", not problems, problems)


def _shift_table(frame: pd.DataFrame, reference: ReferenceStats) -> dict[str, dict[str, float]]:
    table = {}
    for column in COLUMNS:
        if column not in frame or column not in reference.columns:
            continue
        values = frame[column].dropna().to_numpy()
        ref = reference.columns[column]
        if len(values) == 0:
            continue
        scale = ref.std if ref.std > 0 else 1.0
        std = float(values.std(ddof=1)) if len(values) > 1 else float("nan")
        table[column] = {
            "mean": float(values.mean()),
            "reference_mean": ref.mean,
            "mean_shift_sd": abs(float(values.mean()) - ref.mean) / scale,
            "std_ratio": std / ref.std if ref.std > 0 and not math.isnan(std) else float("nan"),
            "ks_pvalue": float(stats.ks_2samp(values, ref.sample).pvalue) if ref.sample else 1.0,
        }
    return table


def _compare_with_reference(
    batch: ParsedBatch, reference: ReferenceStats | None, rule: str
) -> RuleOutcome | dict[str, dict[str, float]]:
    """The per-column shift table, or the outcome when there is nothing to compare."""
    if (skipped := _unparsed(batch, rule)) is not None:
        return skipped
    if reference is None:
        return RuleOutcome(rule, True, metadata={"note": "no reference statistics yet: not compared"})
    return _shift_table(typed_frame(batch), reference)


def _ratio_outside(ratio: float, limit: float) -> bool:
    return not math.isnan(ratio) and not (1 / limit <= ratio <= limit)


def check_distribution_limit(
    batch: ParsedBatch, limits: ValidationThresholds, reference: ReferenceStats | None
) -> RuleOutcome:
    """A shift so large it can only be corruption, such as a column sent in other units."""
    table = _compare_with_reference(batch, reference, "distribution_limit")
    if isinstance(table, RuleOutcome):
        return table
    rows = len(batch.cells)
    problems = []
    for column, row in table.items():
        if row["mean_shift_sd"] > limits.hard_mean_shift_sd:
            problems.append(
                f"{batch.source}: column {column} mean {row['mean']:.4g} is "
                f"{row['mean_shift_sd']:.1f} reference standard deviations from "
                f"{row['reference_mean']:.4g}, the limit is {limits.hard_mean_shift_sd:g} "
                "(distribution_limit check)"
            )
        ratio = row["std_ratio"]
        if rows >= limits.min_rows_for_spread and _ratio_outside(ratio, limits.hard_std_ratio):
            problems.append(
                f"{batch.source}: column {column} spread is {ratio:.2f}x the reference, the limit "
                f"is {limits.hard_std_ratio:g}x (distribution_limit check)"
            )
    return RuleOutcome("distribution_limit", not problems, problems, {"shift": table})


def check_drift(
    batch: ParsedBatch, limits: ValidationThresholds, reference: ReferenceStats | None
) -> RuleOutcome:
    """Mean/std shift and a two-sample KS test per column: a warning, never a block."""
    table = _compare_with_reference(batch, reference, "drift")
    if isinstance(table, RuleOutcome):
        return table
    problems = []
    for column, row in table.items():
        reasons = []
        if row["mean_shift_sd"] > limits.drift_mean_shift_sd:
            reasons.append(f"mean moved {row['mean_shift_sd']:.2f} sd")
        ratio = row["std_ratio"]
        if _ratio_outside(ratio, limits.drift_std_ratio):
            reasons.append(f"spread {ratio:.2f}x")
        if row["ks_pvalue"] < limits.drift_ks_pvalue:
            reasons.append(f"KS p={row['ks_pvalue']:.2g}")
        if reasons:
            problems.append(f"{batch.source}: column {column} drifted: {', '.join(reasons)} (drift check)")
    return RuleOutcome("drift", not problems, problems, {"shift": table})


Rule = Callable[[ParsedBatch, ValidationThresholds, ReferenceStats | None], RuleOutcome]

BLOCKING_RULES: dict[str, tuple[Rule, str]] = {
    "parse": (check_parse, "The file reads as a CSV with a header and at least one row."),
    "schema": (
        check_schema,
        "Every column age, sex, bmi, bp, s1..s6, target is there and numeric.",
    ),
    "nulls": (check_nulls, "No column has more empty values than allowed."),
    "ranges": (check_ranges, "Every value lies in its physiologically possible range."),
    "distribution_limit": (
        check_distribution_limit,
        "No column moved so far from the reference that it must be corrupt (e.g. other units).",
    ),
}


def failed_rules(
    batch: ParsedBatch, limits: ValidationThresholds, reference: ReferenceStats | None
) -> list[RuleOutcome]:
    outcomes = (rule(batch, limits, reference) for rule, _ in BLOCKING_RULES.values())
    return [outcome for outcome in outcomes if not outcome.passed]
