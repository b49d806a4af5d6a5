"""The rules a landed batch must pass, generated from the model project's spec, as plain
functions over the file's tally (``ingest/tally.py``: what its chunks held, gathered in bounded
memory).

Every rule returns a :class:`RuleOutcome` whose problems name the file, the column, the row (as the
file's line number) and the rule, e.g. ``landing/new.csv: column x missing (schema check)``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from scipy import stats

# A project's own tests (``project_template/test_project.py.tmpl``) read a sample file with
# parse_batch and typed_frame from here: a generated project's contract with the platform.
from mlops_assets.ingest.parsing import ParsedBatch
from mlops_assets.ingest.parsing import parse_batch as parse_batch
from mlops_assets.ingest.parsing import typed_frame as typed_frame
from mlops_assets.ingest.reference import ReferenceStats
from mlops_assets.ingest.tally import BatchTally, tally_of
from mlops_assets.project.rules import MAX_ABS_VALUE
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


_KIND_NAMES = {"numeric": "numeric", "integer": "a whole number", "boolean": "true/false"}


def check_parse(
    batch: BatchTally, _: ProjectSpec, __: ValidationThresholds, ___: ReferenceStats | None
) -> RuleOutcome:
    if not batch.parsed:
        return RuleOutcome("parse", False, [f"{batch.source}: {batch.error} (parse check)"])
    return RuleOutcome("parse", True, metadata={"rows": batch.rows})


def _unparsed(batch: BatchTally, rule: str) -> RuleOutcome | None:
    if not batch.parsed:
        return RuleOutcome(rule, False, [f"{batch.source}: not checked, file did not parse ({rule} check)"])
    return None


def check_schema(
    batch: BatchTally, spec: ProjectSpec, _: ValidationThresholds, __: ReferenceStats | None
) -> RuleOutcome:
    if (skipped := _unparsed(batch, "schema")) is not None:
        return skipped
    problems = [f"{batch.source}: column {c} missing (schema check)" for c in batch.missing()]
    for name, tally in batch.columns.items():
        wrong = tally.not_of_kind
        if wrong.count:
            problems.append(
                f"{batch.source}: column {name} must be {_KIND_NAMES[spec.columns[name].kind]}, found "
                f"other values in {wrong.count} row(s): {wrong.examples()} (schema check)"
            )
    extra = batch.unexpected()
    notes = [f"{batch.source}: {unnamed_columns(batch)}"] if extra else []
    return RuleOutcome("schema", not problems, problems, {"unexpected_columns": ", ".join(extra)}, notes)


def unnamed_columns(batch: BatchTally) -> str:
    """The file's columns the spec does not name (left out of everything), in words; "" if none."""
    extra = batch.unexpected()
    if not extra:
        return ""
    return (
        f"{len(extra)} column(s) the spec does not name, left out: {', '.join(extra)} "
        "(add them to project.toml to use them)"
    )


def check_nulls(
    batch: BatchTally, spec: ProjectSpec, _: ValidationThresholds, __: ReferenceStats | None
) -> RuleOutcome:
    if (skipped := _unparsed(batch, "nulls")) is not None:
        return skipped
    problems, fractions = [], {}
    for name, tally in batch.columns.items():
        nulls = tally.nulls
        fractions[name] = nulls.count / batch.rows
        if nulls.count and not spec.columns[name].nullable:
            problems.append(
                f"{batch.source}: column {name} has {nulls.count} empty value(s) "
                f"({nulls.examples()}), and the spec says it is not nullable (nulls check)"
            )
    return RuleOutcome("nulls", not problems, problems, {"null_fraction": fractions})


def check_ranges(
    batch: BatchTally, spec: ProjectSpec, _: ValidationThresholds, __: ReferenceStats | None
) -> RuleOutcome:
    """Values outside a column's range or categories: the batch fails where the spec says
    ``reject``; where it says ``flag``, it passes and the rows are reported. A number beyond ±1e9
    fails it whatever the spec says (the rule table's limit, as in batch scoring and serving)."""
    if (skipped := _unparsed(batch, "ranges")) is not None:
        return skipped
    problems, flagged = [], {}
    for name, tally in batch.columns.items():
        column, beyond, outside = spec.columns[name], tally.beyond, tally.outside
        if beyond.count:
            problems.append(
                f"{batch.source}: column {name} has {beyond.count} value(s) beyond ±{MAX_ABS_VALUE:g}: "
                f"{beyond.examples()} (ranges check)"
            )
        if not outside.count:
            continue
        message = (
            f"{batch.source}: column {name} has {outside.count} value(s) {_allowed(column)}: "
            f"{outside.examples()} (ranges check)"
        )
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
    batch: BatchTally, spec: ProjectSpec, reference: ReferenceStats
) -> dict[str, dict[str, float]]:
    table = {}
    for name, tally in batch.columns.items():
        if spec.columns[name].kind not in NUMBER_KINDS or name not in reference.columns:
            continue
        moments, ref = tally.moments, reference.columns[name]
        if moments.count == 0:
            continue
        scale = ref.std if ref.std > 0 else 1.0
        std = moments.std()
        table[name] = {
            "mean": moments.mean,
            "reference_mean": ref.mean,
            "mean_shift_sd": abs(moments.mean - ref.mean) / scale,
            "std_ratio": std / ref.std if ref.std > 0 and not math.isnan(std) else float("nan"),
            "ks_pvalue": float(stats.ks_2samp(tally.sample.values, ref.sample).pvalue) if ref.sample else 1.0,
        }
    return table


def _compare_with_reference(
    batch: BatchTally, spec: ProjectSpec, reference: ReferenceStats | None, rule: str
) -> RuleOutcome | dict[str, dict[str, float]]:
    """The per-column shift table of the number columns, or the outcome when there is nothing to compare."""
    if (skipped := _unparsed(batch, rule)) is not None:
        return skipped
    if reference is None:
        return RuleOutcome(rule, True, metadata={"note": "no reference statistics yet: not compared"})
    return _shift_table(batch, spec, reference)


def _category_shifts(batch: BatchTally, reference: ReferenceStats) -> dict[str, float]:
    """Total variation distance between each category column's shares and the reference's."""
    shifts = {}
    for name, expected in reference.categories.items():
        if name in batch.columns:
            seen = batch.columns[name].share_of_each()
            labels = set(seen) | set(expected)
            shifts[name] = 0.5 * sum(abs(seen.get(k, 0.0) - expected.get(k, 0.0)) for k in labels)
    return shifts


def _ratio_outside(ratio: float, limit: float) -> bool:
    return not math.isnan(ratio) and not (1 / limit <= ratio <= limit)


def check_distribution_limit(
    batch: BatchTally, spec: ProjectSpec, limits: ValidationThresholds, reference: ReferenceStats | None
) -> RuleOutcome:
    """A shift so large it can only be corruption, such as a column sent in other units."""
    table = _compare_with_reference(batch, spec, reference, "distribution_limit")
    if isinstance(table, RuleOutcome):
        return table
    rows = batch.rows
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
    batch: BatchTally, spec: ProjectSpec, limits: ValidationThresholds, reference: ReferenceStats | None
) -> RuleOutcome:
    """Mean/std shift and a two-sample KS test per number column, the shift in category shares per
    category column: a warning, never a block."""
    table = _compare_with_reference(batch, spec, reference, "drift")
    if isinstance(table, RuleOutcome):
        return table
    problems = []
    assert reference is not None
    shifts = _category_shifts(batch, reference)
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


Rule = Callable[[BatchTally, ProjectSpec, ValidationThresholds, ReferenceStats | None], RuleOutcome]

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
    batch: ParsedBatch | BatchTally,
    spec: ProjectSpec,
    limits: ValidationThresholds,
    reference: ReferenceStats | None,
) -> list[RuleOutcome]:
    """The blocking rules that a file read whole (``parse_batch``), or the tally of one read in
    chunks, fails (see ``blocking_failures``)."""
    tally = tally_of(batch, spec) if isinstance(batch, ParsedBatch) else batch
    return blocking_failures(rule(tally, spec, limits, reference) for rule, _ in BLOCKING_RULES.values())


def blocking_failures(outcomes: Iterable[RuleOutcome]) -> list[RuleOutcome]:
    """The failed ones of the blocking rules' ``outcomes``; a file that does not parse fails that
    rule alone, so the parse problem is the headline, not the rules that could not look at it."""
    failed = [outcome for outcome in outcomes if not outcome.passed]
    return [o for o in failed if o.rule == "parse"] or failed
