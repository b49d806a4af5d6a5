"""The rules a landed batch must pass, generated from the model project's spec, as plain
functions over the file's bytes.

Every rule returns a :class:`RuleOutcome` whose problems name the file, the column, the row (as the
file's line number) and the rule, e.g. ``landing/new.csv: column x missing (schema check)``.

Written here rather than with pandera: the cells stay text until each rule has said what is wrong
with them (a pandera coercion failure loses the original cell), and the header is read raw first.
"""

from __future__ import annotations

import csv
import io
import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from scipy import stats

from mlops_assets.ingest.reference import ReferenceStats, category_shares
from mlops_assets.project.rules import (
    FALSE_TOKENS,
    MAX_ABS_VALUE,
    NULL_TOKENS,
    NUMBER_TEXT,
    TRUE_TOKENS,
    Broken,
)
from mlops_assets.project.spec import NUMBER_KINDS, ColumnSpec, ProjectSpec


@dataclass(frozen=True)
class ValidationThresholds:
    hard_mean_shift_sd: float = 4.0  # beyond this the batch is corrupt (e.g. changed units)
    hard_std_ratio: float = 4.0
    min_rows_for_spread: int = 20  # a smaller batch's spread says nothing (a labels file may have 3 rows)
    drift_mean_shift_sd: float = 0.5
    drift_std_ratio: float = 1.5
    drift_ks_pvalue: float = 0.001
    drift_category_shift: float = 0.15  # total variation distance between category shares


@dataclass(frozen=True)
class ParsedBatch:
    """A landed file read as text cells; ``error`` says why it could not be read as CSV."""

    source: str
    cells: pd.DataFrame | None
    error: str | None = None
    _columns: dict = field(default_factory=dict, compare=False, repr=False)  # typed once: see typed()

    def typed(self, name: str, column: ColumnSpec) -> tuple[pd.Series, pd.Series, np.ndarray]:
        """``_typed`` of the column: read once per batch, then shared by every rule and the typed
        frame (a step that checks all the rules and types the batch reads each column once, not
        five times)."""
        key = (name, column.model_dump_json())
        if key not in self._columns:
            assert self.cells is not None
            self._columns[key] = _typed(self.cells[name], name, column)
        return self._columns[key]


@dataclass
class RuleOutcome:
    rule: str
    passed: bool
    problems: list[str] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # what a user should know even when it passes

    @property
    def message(self) -> str:
        if self.passed:
            return "; ".join([f"{self.rule} check passed", *self.notes])
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
    if not text.endswith(("\n", "\r")):
        # A CSV writer ends every row with a line break: without one the last value may be cut
        # (a copy or upload stopped part-way) and still read as a plausible number.
        return ParsedBatch(source, None, "the last line has no line break: the file may be cut short")
    try:
        cells = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        return ParsedBatch(source, None, f"not a well-formed CSV ({str(exc).strip()})")
    cells.columns = [str(c).strip() for c in cells.columns]
    if cells.empty:
        return ParsedBatch(source, None, "no data rows under the header")
    return ParsedBatch(source, cells)


def _typed(cells: pd.Series, name: str, column: ColumnSpec) -> tuple[pd.Series, pd.Series, np.ndarray]:
    """Values of the column's kind, a mask of null cells, and what the rule table
    (``project/rules.py``) finds wrong with each value (a ``Broken`` code per row).

    numeric, integer and boolean become float64 (booleans 1.0/0.0; NaN where a cell is not of the
    kind); categorical stays text.
    """
    stripped = cells.str.strip()
    lowered = stripped.str.lower()
    is_null = lowered.isin(NULL_TOKENS)
    feature = column.rules(name)
    if column.kind == "categorical":
        values = stripped.where(~is_null)
        codes = feature.judge_categories(values.to_numpy(dtype=object), is_null.to_numpy())
        return values, is_null, codes
    numbers = lowered.str.fullmatch(NUMBER_TEXT).fillna(False).to_numpy(dtype=bool) & ~is_null.to_numpy()
    values = np.full(len(cells), np.nan)
    if numbers.any():
        values[numbers] = _numbers(lowered if numbers.all() else lowered[numbers])
    readable = numbers
    if column.kind == "boolean":
        true, false = lowered.isin(TRUE_TOKENS).to_numpy(), lowered.isin(FALSE_TOKENS).to_numpy()
        values[true], values[false] = 1.0, 0.0
        readable = numbers | true | false
    codes = feature.judge_numbers(values, is_null.to_numpy(), ~readable & ~is_null.to_numpy())
    typed = pd.Series(values, index=cells.index)
    return typed.where(~np.isin(codes, _NOT_OF_KIND)), is_null, codes


def _numbers(text: pd.Series) -> np.ndarray:
    """Cells that all match ``NUMBER_TEXT``, as float64: cast by pyarrow (a tenth of pandas'
    to_numeric on a million cells), pandas for what pyarrow's parser does not take."""
    try:
        return pc.cast(pa.array(text), pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pd.to_numeric(text).to_numpy(dtype=np.float64)


# What the schema check reports: a value that is not of its column's kind at all.
_NOT_OF_KIND = (Broken.NOT_OF_KIND, Broken.NOT_FINITE, Broken.NOT_WHOLE)

_KIND_NAMES = {"numeric": "numeric", "integer": "a whole number", "boolean": "true/false"}


def _show(value: object) -> str:
    return repr(value) if isinstance(value, str) else f"{float(value):g}"


def _examples(index: pd.Index, cells: pd.Series, limit: int = 3) -> str:
    shown = [f"row {i + 2}: {_show(cells.loc[i])}" for i in index[:limit]]  # +2: header, 1-based
    more = f" and {len(index) - limit} more" if len(index) > limit else ""
    return ", ".join(shown) + more


def check_parse(
    batch: ParsedBatch, _: ProjectSpec, __: ValidationThresholds, ___: ReferenceStats | None
) -> RuleOutcome:
    if batch.error:
        return RuleOutcome("parse", False, [f"{batch.source}: {batch.error} (parse check)"])
    assert batch.cells is not None
    return RuleOutcome("parse", True, metadata={"rows": len(batch.cells)})


def _unparsed(batch: ParsedBatch, rule: str) -> RuleOutcome | None:
    if batch.cells is None:
        return RuleOutcome(rule, False, [f"{batch.source}: not checked, file did not parse ({rule} check)"])
    return None


def _present(batch: ParsedBatch, spec: ProjectSpec) -> dict[str, ColumnSpec]:
    assert batch.cells is not None
    return {name: column for name, column in spec.columns.items() if name in batch.cells}


def check_schema(
    batch: ParsedBatch, spec: ProjectSpec, _: ValidationThresholds, __: ReferenceStats | None
) -> RuleOutcome:
    if (skipped := _unparsed(batch, "schema")) is not None:
        return skipped
    cells = batch.cells
    problems = [f"{batch.source}: column {c} missing (schema check)" for c in spec.columns if c not in cells]
    for name, column in _present(batch, spec).items():
        _, _, codes = batch.typed(name, column)
        wrong = np.isin(codes, _NOT_OF_KIND)
        if wrong.any():
            bad = cells.index[wrong]
            problems.append(
                f"{batch.source}: column {name} must be {_KIND_NAMES[column.kind]}, found other values in "
                f"{len(bad)} row(s): {_examples(bad, cells[name])} (schema check)"
            )
    extra = sorted(set(cells.columns) - set(spec.columns))
    notes = [f"{batch.source}: {unnamed_columns(batch, spec)}"] if extra else []
    return RuleOutcome("schema", not problems, problems, {"unexpected_columns": ", ".join(extra)}, notes)


def unnamed_columns(batch: ParsedBatch, spec: ProjectSpec) -> str:
    """The file's columns the spec does not name (left out of everything), in words; "" if none."""
    extra = sorted(set(batch.cells.columns) - set(spec.columns)) if batch.cells is not None else []
    if not extra:
        return ""
    return (
        f"{len(extra)} column(s) the spec does not name, left out: {', '.join(extra)} "
        "(add them to project.toml to use them)"
    )


def typed_frame(batch: ParsedBatch, spec: ProjectSpec) -> pd.DataFrame:
    """The spec's columns, typed by kind (see ``_typed``); bad cells and null tokens become NaN."""
    return pd.DataFrame(
        {name: batch.typed(name, column)[0] for name, column in _present(batch, spec).items()}
    )


def check_nulls(
    batch: ParsedBatch, spec: ProjectSpec, _: ValidationThresholds, __: ReferenceStats | None
) -> RuleOutcome:
    if (skipped := _unparsed(batch, "nulls")) is not None:
        return skipped
    cells = batch.cells
    problems, fractions = [], {}
    for name, column in _present(batch, spec).items():
        _, is_null, _ = batch.typed(name, column)
        fractions[name] = float(is_null.mean())
        if is_null.any() and not column.nullable:
            bad = cells.index[is_null.to_numpy()]
            problems.append(
                f"{batch.source}: column {name} has {int(is_null.sum())} empty value(s) "
                f"({_examples(bad, cells[name])}), and the spec says it is not nullable (nulls check)"
            )
    return RuleOutcome("nulls", not problems, problems, {"null_fraction": fractions})


def check_ranges(
    batch: ParsedBatch, spec: ProjectSpec, _: ValidationThresholds, __: ReferenceStats | None
) -> RuleOutcome:
    """Values outside a column's range or categories: the batch fails where the spec says
    ``reject``; where it says ``flag``, it passes and the rows are reported. A number beyond ±1e9
    fails it whatever the spec says (the rule table's limit, as in batch scoring and serving)."""
    if (skipped := _unparsed(batch, "ranges")) is not None:
        return skipped
    problems, flagged = [], {}
    for name, column in _present(batch, spec).items():
        values, _, codes = batch.typed(name, column)
        beyond = codes == Broken.BEYOND
        if beyond.any():
            bad = values.index[beyond]
            problems.append(
                f"{batch.source}: column {name} has {len(bad)} value(s) beyond ±{MAX_ABS_VALUE:g}: "
                f"{_examples(bad, values)} (ranges check)"
            )
        outside = codes == Broken.OUTSIDE
        if not outside.any():
            continue
        bad = values.index[outside]
        message = f"{batch.source}: column {name} has {len(bad)} value(s) {_allowed(column)}: {_examples(bad, values)} (ranges check)"
        if column.out_of_range == "flag":
            flagged[name] = message
        else:
            problems.append(message)
    metadata = {"flagged": "; ".join(flagged.values())} if flagged else {}
    return RuleOutcome("ranges", not problems, problems, metadata)


def _allowed(column: ColumnSpec) -> str:
    """What a column's range or categories allow, in words (the spec's own bounds)."""
    if column.kind == "categorical":
        return f"not one of {', '.join(column.categories or ())}"
    low, high = column.value_range or (-math.inf, math.inf)
    return f"outside [{low:g}, {high:g}]"


def _shift_table(
    frame: pd.DataFrame, spec: ProjectSpec, reference: ReferenceStats
) -> dict[str, dict[str, float]]:
    table = {}
    for column in (n for n, c in spec.columns.items() if c.kind in NUMBER_KINDS):
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
    batch: ParsedBatch, spec: ProjectSpec, reference: ReferenceStats | None, rule: str
) -> RuleOutcome | dict[str, dict[str, float]]:
    """The per-column shift table of the number columns, or the outcome when there is nothing to compare."""
    if (skipped := _unparsed(batch, rule)) is not None:
        return skipped
    if reference is None:
        return RuleOutcome(rule, True, metadata={"note": "no reference statistics yet: not compared"})
    return _shift_table(typed_frame(batch, spec), spec, reference)


def _category_shifts(batch: ParsedBatch, spec: ProjectSpec, reference: ReferenceStats) -> dict[str, float]:
    """Total variation distance between each category column's shares and the reference's."""
    frame = typed_frame(batch, spec)
    shifts = {}
    for name, expected in reference.categories.items():
        if name in frame:
            seen = category_shares(frame[name])
            labels = set(seen) | set(expected)
            shifts[name] = 0.5 * sum(abs(seen.get(k, 0.0) - expected.get(k, 0.0)) for k in labels)
    return shifts


def _ratio_outside(ratio: float, limit: float) -> bool:
    return not math.isnan(ratio) and not (1 / limit <= ratio <= limit)


def check_distribution_limit(
    batch: ParsedBatch, spec: ProjectSpec, limits: ValidationThresholds, reference: ReferenceStats | None
) -> RuleOutcome:
    """A shift so large it can only be corruption, such as a column sent in other units."""
    table = _compare_with_reference(batch, spec, reference, "distribution_limit")
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
    batch: ParsedBatch, spec: ProjectSpec, limits: ValidationThresholds, reference: ReferenceStats | None
) -> RuleOutcome:
    """Mean/std shift and a two-sample KS test per number column, the shift in category shares per
    category column: a warning, never a block."""
    table = _compare_with_reference(batch, spec, reference, "drift")
    if isinstance(table, RuleOutcome):
        return table
    problems = []
    assert reference is not None
    shifts = _category_shifts(batch, spec, reference)
    for column, shift in shifts.items():
        if shift > limits.drift_category_shift:
            problems.append(
                f"{batch.source}: column {column} drifted: category shares moved {shift:.2f} "
                f"(total variation; warning above {limits.drift_category_shift:g}) (drift check)"
            )
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
    return RuleOutcome("drift", not problems, problems, {"shift": table, "category_shift": shifts})


Rule = Callable[[ParsedBatch, ProjectSpec, ValidationThresholds, ReferenceStats | None], RuleOutcome]

BLOCKING_RULES: dict[str, tuple[Rule, str]] = {
    "parse": (check_parse, "The file reads as a CSV with a header and at least one row."),
    "schema": (check_schema, "Every column of the model project's spec is there, of its kind."),
    "nulls": (check_nulls, "No column the spec says is not nullable has an empty value."),
    "ranges": (
        check_ranges,
        "Every value lies in its column's range or categories (reject); flag: reported.",
    ),
    "distribution_limit": (
        check_distribution_limit,
        "No column moved so far from the reference that it must be corrupt (e.g. other units).",
    ),
}


def failed_rules(
    batch: ParsedBatch, spec: ProjectSpec, limits: ValidationThresholds, reference: ReferenceStats | None
) -> list[RuleOutcome]:
    """The blocking rules that fail (see ``blocking_failures``)."""
    return blocking_failures(rule(batch, spec, limits, reference) for rule, _ in BLOCKING_RULES.values())


def blocking_failures(outcomes: Iterable[RuleOutcome]) -> list[RuleOutcome]:
    """The failed ones of the blocking rules' ``outcomes``; a file that does not parse fails that
    rule alone, so the parse problem is the headline, not the rules that could not look at it."""
    failed = [outcome for outcome in outcomes if not outcome.passed]
    return [o for o in failed if o.rule == "parse"] or failed
