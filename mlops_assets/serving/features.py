"""What a request may hold, from the model project's spec: its rows checked and typed in one pass.

The spec reaches the service as ``serving-spec.json`` beside this module, written from
``project.toml`` into the code part of the release's build context (the package it installs),
never into the model folder, whose manifest a deployer could edit. Rows come as ``{"data": [[v1, v2, ...]]}`` in the spec's feature order (Azure
ML's contract) or ``{"data": [{"feature": value, ...}]}`` by name. Numbers are JSON numbers,
booleans ``true``/``false`` (or 1/0), categories strings; a nullable feature takes ``null``. A value
out of its range or categories is refused (422, naming the feature and the rule) or, where the
spec says ``out_of_range = "flag"``, scored and reported. Standard library and numpy; pandas only
for a model whose features are not all numbers (it takes a named frame).
"""

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

SPEC_NAME = "serving-spec.json"
# Far beyond any measurement, and small enough that a linear model's output stays finite.
MAX_ABS_VALUE = 1e9
NUMBER_KINDS = ("numeric", "integer")
_NUMBER_TYPES = frozenset({int, float})
# What a cell of a data file means, lower-cased and trimmed (ingest and batch scoring read text).
NULL_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})
TRUE_TOKENS = frozenset({"true", "1", "1.0", "yes", "y", "t"})
FALSE_TOKENS = frozenset({"false", "0", "0.0", "no", "n", "f"})


class PayloadError(ValueError):
    """A request the model cannot score; ``status`` is the HTTP status it deserves."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True)
class Feature:
    name: str
    kind: str  # numeric | integer | boolean | categorical
    low: float = -MAX_ABS_VALUE
    high: float = MAX_ABS_VALUE
    categories: tuple[str, ...] = ()
    nullable: bool = False
    flag: bool = False  # out of range or categories: scored and reported instead of refused

    def describe(self) -> str:
        if self.kind == "categorical":
            return f"one of {', '.join(self.categories)}"
        if self.kind == "boolean":
            return "true or false"
        return (
            f"{'a whole number' if self.kind == 'integer' else 'a number'} in [{self.low:g}, {self.high:g}]"
        )


@dataclass(frozen=True, eq=False)
class ServingSpec:
    """The features in order, the task and the types the artifact may hold beyond skops' own."""

    name: str
    task: str  # regression | binary | multiclass
    features: tuple[Feature, ...]
    target_kind: str = "numeric"
    trusted_types: tuple[str, ...] = ()
    names: tuple[str, ...] = field(init=False)
    all_numbers: bool = field(init=False)  # a float matrix carries every row: the fast path
    low: np.ndarray = field(init=False)  # per column, for the vectorised range check
    high: np.ndarray = field(init=False)
    integer_columns: list[int] = field(init=False)  # checked for whole numbers

    def __post_init__(self) -> None:
        numbers = all(f.kind in NUMBER_KINDS and not f.nullable for f in self.features)
        for name, value in (
            ("names", tuple(f.name for f in self.features)),
            ("all_numbers", numbers),
            ("low", np.array([f.low for f in self.features])),
            ("high", np.array([f.high for f in self.features])),
            ("integer_columns", [i for i, f in enumerate(self.features) if f.kind == "integer"]),
        ):
            object.__setattr__(self, name, value)

    @classmethod
    def numbers_only(cls, names: tuple[str, ...]) -> "ServingSpec":
        """What a model folder alone says (a manifest without a spec): numbers, any finite value."""
        return cls("", "regression", tuple(Feature(n, "numeric") for n in names))

    @classmethod
    def from_dict(cls, spec: dict[str, Any]) -> "ServingSpec":
        features = []
        for f in spec["features"]:
            low, high = f.get("min"), f.get("max")
            features.append(
                Feature(
                    f["name"],
                    f["kind"],
                    -MAX_ABS_VALUE if low is None else max(float(low), -MAX_ABS_VALUE),
                    MAX_ABS_VALUE if high is None else min(float(high), MAX_ABS_VALUE),
                    tuple(f.get("categories") or ()),
                    bool(f.get("nullable", False)),
                    f.get("out_of_range", "reject") == "flag",
                )
            )
        return cls(
            spec["name"],
            spec["task"],
            tuple(features),
            spec.get("target", {}).get("kind", "numeric"),
            tuple(spec.get("trusted_types", ())),
        )

    @classmethod
    def load(cls, path: str | Path) -> "ServingSpec":
        return cls.from_dict(json.loads(Path(path).read_text()))


def packaged_spec_path() -> Path | None:
    """The spec the release packaged beside this module, if this code is a release's."""
    path = Path(__file__).with_name(SPEC_NAME)
    return path if path.is_file() else None


@dataclass(frozen=True)
class Rows:
    """A request's rows as the model takes them, and the values scored though flagged."""

    values: Any  # float64 matrix (every feature a number) or a pandas DataFrame
    count: int
    flags: tuple[str, ...] = ()


def rows_from_payload(payload: Any, spec: ServingSpec, max_rows: int) -> Rows:
    """The request's rows for the model, or a PayloadError naming the row, the feature and the rule."""
    n = len(spec.features)
    if not isinstance(payload, dict) or "data" not in payload:
        raise PayloadError(
            422,
            f'body must be a JSON object {{"data": [[{n} values], ...]}} or {{"data": [{{"feature": value}}, ...]}}',
        )
    data = payload["data"]
    if not isinstance(data, list):
        raise PayloadError(422, f'"data" must be a list of rows, got {type(data).__name__}')
    if not data:
        raise PayloadError(422, '"data" is empty: send at least one row')
    if len(data) > max_rows:
        raise PayloadError(413, f'"data" has {len(data)} rows; at most {max_rows} per request')
    if spec.all_numbers and type(data[0]) is list:
        return _number_matrix(data, spec)
    return _checked_frame(data, spec)


def _number_matrix(data: list, spec: ServingSpec) -> Rows:
    """Every feature a number, rows as arrays: checked in vectorised passes."""
    n = len(spec.features)
    for index, row in enumerate(data):
        if type(row) is dict:
            return _checked_frame(data, spec)  # rows by name among them: checked value by value
        if type(row) is not list or len(row) != n:
            got = f"{len(row)} values" if type(row) is list else f"a {type(row).__name__}"
            raise PayloadError(422, f"row {index} has {got}; the model expects {n} ({', '.join(spec.names)})")
    # bool is an int subclass, and numpy would turn "1.5" into 1.5: only real JSON numbers pass.
    if not {type(value) for row in data for value in row} <= _NUMBER_TYPES:
        for index, row in enumerate(data):
            for column, value in enumerate(row):
                if type(value) not in _NUMBER_TYPES:
                    raise PayloadError(
                        422, f"row {index}, feature {spec.names[column]}: {value!r} is not a number"
                    )
    try:
        rows = np.array(data, dtype=np.float64)
    except OverflowError:
        raise PayloadError(422, "a value is too large for a 64-bit float") from None
    # One pass: NaN fails every comparison, so this catches NaN and inf as well.
    within = (rows >= spec.low) & (rows <= spec.high)
    flags: list[str] = []
    if not within.all():
        for index, column in np.argwhere(~within):
            feature, value = spec.features[column], rows[index, column]
            if not np.isfinite(value):
                raise PayloadError(
                    422, f"row {index}, feature {feature.name}: {value} is not a finite number"
                )
            if abs(value) > MAX_ABS_VALUE or not feature.flag:
                raise PayloadError(422, _out_of_range(index, feature, f"{value:g}"))
            flags.append(_out_of_range(index, feature, f"{value:g}"))
    integers = spec.integer_columns
    if integers:
        whole = rows[:, integers] == np.round(rows[:, integers])
        if not whole.all():
            index, column = (int(i) for i in np.argwhere(~whole)[0])
            feature = spec.features[integers[column]]
            raise PayloadError(
                422,
                f"row {index}, feature {feature.name}: {rows[index, integers[column]]:g} is not a whole number",
            )
    return Rows(rows, len(rows), tuple(flags))


def _out_of_range(index: int, feature: Feature, shown: str) -> str:
    policy = "flagged" if feature.flag else "refused"
    return f"row {index}, feature {feature.name}: {shown} is outside {feature.describe()} ({policy})"


def _checked_frame(data: list, spec: ServingSpec) -> Rows:
    """Any feature kinds, rows as arrays or by name: each value checked, into a named frame of the
    dtypes training used (numbers and booleans as float64, categories as text, null as missing)."""
    columns: list[list] = [[] for _ in spec.features]
    flags: list[str] = []
    n = len(spec.features)
    for index, row in enumerate(data):
        if type(row) is list:
            if len(row) != n:
                raise PayloadError(
                    422, f"row {index} has {len(row)} values; the model expects {n} ({', '.join(spec.names)})"
                )
            values = row
        elif type(row) is dict:
            unknown = [k for k in row if k not in spec.names]
            if unknown:
                raise PayloadError(
                    422,
                    f"row {index}: unknown feature {', '.join(map(str, unknown))}; the features are {', '.join(spec.names)}",
                )
            missing = [name for name in spec.names if name not in row]
            if missing:
                raise PayloadError(422, f"row {index}: feature {', '.join(missing)} missing")
            values = [row[name] for name in spec.names]
        else:
            raise PayloadError(
                422,
                f"row {index} is a {type(row).__name__}; a row is a list of values or an object by feature name",
            )
        for feature, value, column in zip(spec.features, values, columns, strict=True):
            column.append(_value(index, feature, value, flags))
    if spec.all_numbers:
        return Rows(np.array(columns, dtype=np.float64).T.copy(), len(data), tuple(flags))
    import pandas as pd

    frame = pd.DataFrame(
        {
            f.name: pd.Series(column, dtype=object if f.kind == "categorical" else np.float64)
            for f, column in zip(spec.features, columns, strict=True)
        }
    )
    return Rows(frame, len(data), tuple(flags))


def _value(index: int, feature: Feature, value: Any, flags: list[str]) -> Any:
    where = f"row {index}, feature {feature.name}"
    if value is None:
        if feature.nullable:
            return None if feature.kind == "categorical" else math.nan
        raise PayloadError(422, f"{where}: null, and the feature is not nullable")
    if feature.kind == "categorical":
        if type(value) is not str:
            raise PayloadError(422, f"{where}: {value!r} is not text; expected {feature.describe()}")
        if value not in feature.categories:
            problem = _out_of_range(index, feature, repr(value))
            if not feature.flag:
                raise PayloadError(422, problem)
            flags.append(problem)
        return value
    if feature.kind == "boolean":
        if value is True or value is False:
            return float(value)
        if type(value) in _NUMBER_TYPES and value in (0, 1):
            return float(value)
        raise PayloadError(422, f"{where}: {value!r} is not true or false")
    if type(value) not in _NUMBER_TYPES:
        raise PayloadError(422, f"{where}: {value!r} is not a number")
    number = float(value)
    if not math.isfinite(number):
        raise PayloadError(422, f"{where}: {value} is not a finite number")
    if feature.kind == "integer" and number != round(number):
        raise PayloadError(422, f"{where}: {number:g} is not a whole number")
    if not feature.low <= number <= feature.high:
        problem = _out_of_range(index, feature, f"{number:g}")
        if not feature.flag or abs(number) > MAX_ABS_VALUE:
            raise PayloadError(422, problem)
        flags.append(problem)
    return number
