"""The row contract: what a request or a file's rows may hold, from the model project's spec,
checked and typed in one pass into what the model takes.

The spec reaches the service as ``serving-spec.json`` beside this module, written from
``project.toml`` into the code part of the release's build context (the package it installs),
never into the model folder, whose manifest a deployer could edit. Rows come as ``{"data": [[v1,
v2, ...]]}`` in the spec's feature order (Azure ML's contract) or ``{"data": [{"feature": value,
...}]}`` by name. Numbers are JSON numbers, booleans ``true``/``false`` (or 1/0), categories
strings; a nullable feature takes ``null``. What each kind allows is the rule table's
(``project/rules.py``): a value out of its range or categories is refused (naming the row, the
feature and the rule) or, where the spec says ``out_of_range = "flag"``, scored and reported.
Standard library and numpy; pandas only for a model whose features are not all numbers (it takes
a named frame). Change what a request may hold here; a new feature kind starts in the rule table.
"""

import json
import math
from dataclasses import dataclass, field
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from mlops_assets.project.rules import MAX_ABS_VALUE, NUMBER_KINDS, Broken, Feature, cut, shown

SPEC_NAME = "serving-spec.json"
_NUMBER_TYPES = frozenset({int, float})
# Every byte of {"data": [[numbers]]} but its two quote marks.
_NUMBERS_TEXT = b"0123456789.-+eE,[]{}: \t\r\ndat"
# A request reports at most this many flagged values, then how many more: the memory and the log
# line of one request stay bounded whatever it sends (10,000 flagged rows once OOM-killed a worker).
MAX_FLAGS = 100


class PayloadError(ValueError):
    """Rows the model cannot score; ``status`` says how (413: too many rows, 422: a row or value
    broken), which the service answers as its HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, eq=False)
class ServingSpec:
    """The features in order, the task and the types the artifact may hold beyond skops' own."""

    name: str
    task: str  # regression | binary | multiclass
    features: tuple[Feature, ...]
    target_kind: str = "numeric"
    trusted_types: tuple[str, ...] = ()
    categorical_dtype: str = "object"  # "category": pandas Categorical over the spec's categories
    names: tuple[str, ...] = field(init=False)
    name_set: frozenset = field(init=False)
    all_numbers: bool = field(init=False)  # a float matrix carries every row: the fast path
    low: np.ndarray = field(init=False)  # per column, for the vectorised range check
    high: np.ndarray = field(init=False)
    integer_columns: list[int] = field(init=False)  # checked for whole numbers

    def __post_init__(self) -> None:
        numbers = all(f.kind in NUMBER_KINDS and not f.nullable for f in self.features)
        for name, value in (
            ("names", tuple(f.name for f in self.features)),
            ("name_set", frozenset(f.name for f in self.features)),
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
        features = [Feature.from_dict(f) for f in spec["features"]]
        return cls(
            spec["name"],
            spec["task"],
            tuple(features),
            spec.get("target", {}).get("kind", "numeric"),
            tuple(spec.get("trusted_types", ())),
            spec.get("categorical_dtype", "object"),
        )

    @classmethod
    def load(cls, path: str | Path) -> "ServingSpec":
        return cls.from_dict(json.loads(Path(path).read_text()))

    def frame(self, columns: list) -> Any:
        """Each feature's typed values (float64 with NaN for null; categories as text) as the named
        frame the model was trained on: categories as object columns, or, where the spec says
        ``categorical_dtype = "category"``, as pandas Categorical over the spec's categories (what
        training gave the model: ``project/fitting.as_model_input``; a flagged value is missing)."""
        import pandas as pd

        native = self.categorical_dtype == "category"
        typed = {}
        for f, column in zip(self.features, columns, strict=True):
            if f.kind == "categorical":
                # object, not pandas' inferred arrow-backed text, which the encoders take several times slower
                typed[f.name] = (
                    pd.Categorical(column, categories=f.categories)
                    if native
                    else pd.Series(column, dtype=object)
                )
            elif isinstance(column, np.ndarray) and column.dtype == np.float64:
                typed[f.name] = column
            else:
                typed[f.name] = pd.Series(column, dtype=np.float64)
        return pd.DataFrame(typed, copy=False)


def packaged_spec_path() -> Path | None:
    """The spec the release packaged beside this module, if this code is a release's."""
    path = Path(__file__).with_name(SPEC_NAME)
    return path if path.is_file() else None


def probe_rows(spec: ServingSpec, count: int, seed: int = 0) -> list[list]:
    """Random rows every rule of the spec allows, by position, as JSON values (null for some rows
    of a nullable feature): what a model may be sent, to check at load how it answers."""
    rng = np.random.default_rng(seed)
    columns: list[list] = []
    for f in spec.features:
        if f.kind == "categorical":
            values: list = [str(c) for c in rng.choice(f.categories or ("",), count)]
        elif f.kind == "boolean":
            values = (rng.random(count) < 0.5).tolist()
        else:
            bounded = f.low > -MAX_ABS_VALUE and f.high < MAX_ABS_VALUE
            numbers = (
                rng.uniform(f.low, f.high, count)
                if bounded
                # per value, a scale from a tenth to 1e4: near a decision boundary and far from it
                else (rng.normal(size=count) * rng.choice([0.1, 1.0, 1e2, 1e4], size=count)).clip(
                    f.low, f.high
                )
            )
            if f.kind == "integer":
                numbers = np.clip(np.round(numbers), math.ceil(f.low), math.floor(f.high))
                values = [int(v) for v in numbers]
            else:
                values = numbers.tolist()
        if f.nullable:
            values = [
                None if missing else v for v, missing in zip(values, rng.random(count) < 0.1, strict=True)
            ]
        columns.append(values)
    return [list(row) for row in zip(*columns, strict=True)]


class Rows:
    """A request's rows as the model takes them, and the values scored though flagged.

    ``values``: a float64 matrix (every feature a number) or a pandas DataFrame; a frame is built
    from ``columns`` when first asked for, so a model scored a column at a time never pays for one.
    ``columns``: each feature's values, typed (float64, NaN for null; categories as an object
    array), or None where the rows were checked value by value."""

    __slots__ = ("_columns", "_spec", "_values", "count", "flags")

    def __init__(
        self,
        values: Any,
        count: int,
        flags: tuple[str, ...] = (),
        columns: list[np.ndarray] | None = None,
        spec: ServingSpec | None = None,
    ) -> None:
        self._values, self._columns, self._spec = values, columns, spec
        self.count, self.flags = count, flags

    @property
    def values(self) -> Any:
        if self._values is None:
            self._values = self._spec.frame(self._columns)
        return self._values

    @property
    def columns(self) -> list[np.ndarray] | None:
        if self._columns is None and isinstance(self._values, np.ndarray):
            return list(self._values.T)
        return self._columns

    @property
    def cheapest(self) -> Any:
        """The rows as they already are, for a scorer that takes either (a compiled graph): the
        float matrix, else each feature's values, never a frame built for it."""
        if isinstance(self._values, np.ndarray) or self._columns is None:
            return self.values
        return self._columns


def duplicate_key(payload: Any, text: bytes) -> str | None:
    """A key that an object of the request repeats (the JSON parser keeps its last value without a
    word), or None. Every key is followed by a colon, so when the text holds as many colons as the
    parsed objects hold keys, none repeats: one count in C for nearly every request. Only text with
    colons inside its strings, or a repeat, is parsed again, pair by pair, to find which."""
    colons = text.count(b":")
    if type(payload) is dict and colons == len(payload):
        return None  # no object but the body's own (rows by position): the hot path stops here
    pairs = 0
    if type(payload) is dict:
        pairs = len(payload)
        data = payload.get("data")
        if type(data) is list:
            pairs += sum(len(row) for row in data if type(row) is dict)
    if colons == pairs:
        return None
    repeated: list[str] = []

    def pairs_of(items: list[tuple[str, Any]]) -> dict:
        seen: set[str] = set()
        for key, _ in items:
            if key in seen and not repeated:
                repeated.append(key)
            seen.add(key)
        return dict(items)

    json.loads(text, object_pairs_hook=pairs_of)
    return repeated[0] if repeated else None


def rows_from_payload(payload: Any, spec: ServingSpec, max_rows: int, text: bytes | None = None) -> Rows:
    """The request's rows for the model, or a PayloadError naming the row, the feature and the rule.

    ``text``: the JSON the payload was parsed from, when the caller has it; numbers whose text
    holds no ``true`` or ``false`` need no check value by value that none is a boolean."""
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
        rows = _numbers_at_once(data, n, text)
        return _number_matrix(data, spec) if rows is None else _checked_numbers(rows, spec)
    return _checked_frame(data, spec)


def _numbers_at_once(data: list, n: int, text: bytes | None) -> np.ndarray | None:
    """The rows as a float matrix if they are plainly ``n`` JSON numbers each, else None (then
    each row and value is checked, to say which is wrong). Reading the values as one flat run,
    once every row is seen to hold ``n``, is a third faster than numpy finding the shape itself,
    but either would turn text, null or a boolean into a number. The request's text tells none is
    there: its only string is the key "data" (two quote marks in all) and no other letter than a
    number's exponent is in it (no true, false or null): one C pass over the text deletes every
    byte a number may hold and leaves ``""``. A search for each word took four times as long."""
    if text is None or text.translate(None, _NUMBERS_TEXT) != b'""':
        return None
    try:
        if set(map(len, data)) != {n}:  # a number in place of a row has no length: TypeError
            return None
        return np.fromiter(chain.from_iterable(data), np.float64, len(data) * n).reshape(len(data), n)
    except (ValueError, TypeError, OverflowError):  # a list inside a row
        return None


def _number_matrix(data: list, spec: ServingSpec) -> Rows:
    """Every feature a number, rows as arrays: each row and value checked, then the matrix."""
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
                        422, f"row {index}, feature {spec.names[column]}: {shown(value)} is not a number"
                    )
    try:
        rows = np.array(data, dtype=np.float64)
    except OverflowError:
        raise PayloadError(422, "a value is too large for a 64-bit float") from None
    return _checked_numbers(rows, spec)


class Flags:
    """The values scored though outside their feature's range or categories: the first
    ``MAX_FLAGS`` described, the rest counted."""

    __slots__ = ("described", "more")

    def __init__(self) -> None:
        self.described: list[str] = []
        self.more = 0

    def add(self, index: int, feature: Feature, value: str, hint: str = "") -> None:
        if len(self.described) < MAX_FLAGS:
            self.described.append(_out_of_range(index, feature, value) + hint)
        else:
            self.more += 1

    def result(self) -> tuple[str, ...]:
        if self.more:
            return (*self.described, f"… and {self.more} more values flagged")
        return tuple(self.described)


def _checked_numbers(rows: np.ndarray, spec: ServingSpec) -> Rows:
    """A float matrix in the spec's ranges (or flagged), whole where the spec says integer."""
    if len(rows) == 1 and _plain_row(rows[0].tolist(), spec):
        return Rows(rows, 1)  # one row: a loop of Python comparisons beats five numpy calls
    # One pass: NaN fails every comparison, so this catches NaN and inf as well.
    within = (rows >= spec.low) & (rows <= spec.high)
    flags = Flags()
    if not within.all():
        for index, column in np.argwhere(~within):
            feature, value = spec.features[column], rows[index, column]
            if not np.isfinite(value):
                raise PayloadError(
                    422, f"row {index}, feature {feature.name}: {value} is not a finite number"
                )
            if abs(value) > MAX_ABS_VALUE or not feature.flag:
                raise PayloadError(422, _out_of_range(index, feature, f"{value:g}"))
            flags.add(index, feature, f"{value:g}")
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
    return Rows(rows, len(rows), flags.result())


def _plain_row(row: list[float], spec: ServingSpec) -> bool:
    """Whether every value is within its feature's range and whole where it must be."""
    for value, feature in zip(row, spec.features, strict=True):
        if not feature.low <= value <= feature.high:  # NaN fails this too
            return False
        if feature.kind == "integer" and value != round(value):
            return False
    return True


def _out_of_range(index: int, feature: Feature, shown: str) -> str:
    policy = "flagged" if feature.flag else "refused"
    return f"row {index}, feature {feature.name}: {shown} is outside {feature.describe()} ({policy})"


def _checked_frame(data: list, spec: ServingSpec) -> Rows:
    """Any feature kinds, rows as arrays or by name, into a named frame of the dtypes training used
    (numbers and booleans as float64, categories as text, null as missing): checked a column at a
    time when every row is plainly valid, else value by value, to name the first thing wrong."""
    columns = _columns_at_once(data, spec)
    if columns is None:
        return _frame_by_value(data, spec)
    if spec.all_numbers:
        return Rows(np.column_stack(columns), len(data))
    return Rows(None, len(data), columns=columns, spec=spec)


_NONE = type(None)
FEW_ROWS = 8  # up to this many, a column's values are checked one by one (``_few_values``)
_BOOLEAN_TYPES = frozenset({bool, int, float})


def _columns_at_once(data: list, spec: ServingSpec) -> list | None:
    """Each feature's values, typed (float64 arrays; categories as an object array), if every row
    holds every feature and every value passes its feature's rules with no flag; else None."""
    if type(data[0]) is dict:
        names = spec.name_set
        if not all(type(row) is dict and row.keys() == names for row in data):
            return None
        raw = [[row[name] for row in data] for name in spec.names]
    else:
        n = len(spec.features)
        if not all(type(row) is list and len(row) == n for row in data):
            return None
        raw = [list(column) for column in zip(*data, strict=True)]
    columns = []
    for feature, values in zip(spec.features, raw, strict=True):
        column = _column_at_once(feature, values)
        if column is None:
            return None
        columns.append(column)
    return columns


def _column_at_once(feature: Feature, values: list) -> np.ndarray | None:
    if len(values) <= FEW_ROWS:
        return _few_values(feature, values)
    types = set(map(type, values))
    nulls = _NONE in types
    if nulls:
        if not feature.nullable:
            return None
        types.discard(_NONE)
    if feature.kind == "categorical":
        if not types <= {str} or not set(values) - {None} <= feature.category_set:
            return None
        return np.array(values, dtype=object)
    if not types <= (_BOOLEAN_TYPES if feature.kind == "boolean" else _NUMBER_TYPES):
        return None
    try:
        column = np.array(
            [math.nan if v is None else v for v in values] if nulls else values, dtype=np.float64
        )
    except OverflowError:
        return None
    known = column[~np.isnan(column)] if nulls else column
    if feature.kind == "boolean":
        return column if ((known == 0) | (known == 1)).all() else None
    if not ((known >= feature.low) & (known <= feature.high)).all():
        return None  # NaN and inf among them, or out of range: refused or flagged, value by value
    if feature.kind == "integer" and not (known == np.round(known)).all():
        return None
    return column


def _few_values(feature: Feature, values: list) -> np.ndarray | None:
    """``_column_at_once`` for a few values, judged one by one in Python by the same rules: for a
    request of a row or two, numpy's cost per call was most of the check."""
    kind, nullable = feature.kind, feature.nullable
    if kind == "categorical":
        categories = feature.category_set
        for value in values:
            if (value is None and not nullable) or (
                value is not None and (type(value) is not str or value not in categories)
            ):
                return None
        return np.array(values, dtype=object)
    allowed = _BOOLEAN_TYPES if kind == "boolean" else _NUMBER_TYPES
    low, high = feature.low, feature.high
    for value in values:
        if value is None:
            if not nullable:
                return None
        elif type(value) not in allowed:
            return None
        elif kind == "boolean":
            if value != 0 and value != 1:
                return None
        elif not low <= value <= high or (  # NaN fails the range too
            kind == "integer" and type(value) is float and not value.is_integer()
        ):
            return None
    try:
        return np.array([math.nan if value is None else value for value in values], dtype=np.float64)
    except OverflowError:  # a whole number beyond a float's range, within an unbounded feature's
        return None


def _frame_by_value(data: list, spec: ServingSpec) -> Rows:
    """Rows checked value by value: the first row, feature and rule broken is named."""
    columns: list[list] = [[] for _ in spec.features]
    flags = Flags()
    n = len(spec.features)
    for index, row in enumerate(data):
        if type(row) is list:
            if len(row) != n:
                raise PayloadError(
                    422, f"row {index} has {len(row)} values; the model expects {n} ({', '.join(spec.names)})"
                )
            values = row
        elif type(row) is dict:
            unknown = [k for k in row if k not in spec.name_set]
            if unknown:
                named = ", ".join(cut(str(k), 40) for k in unknown[:5]) + (
                    f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
                )
                raise PayloadError(
                    422, f"row {index}: unknown feature {named}; the features are {', '.join(spec.names)}"
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
        return Rows(np.array(columns, dtype=np.float64).T.copy(), len(data), flags.result())
    return Rows(spec.frame(columns), len(data), flags.result())


def _value(index: int, feature: Feature, value: Any, flags: Flags) -> Any:
    """One JSON value read as the feature's kind, then judged by the rule table."""
    where = f"row {index}, feature {feature.name}"
    if value is None:
        if feature.nullable:
            return None if feature.kind == "categorical" else math.nan
        raise PayloadError(422, f"{where}: null, and the feature is not nullable")
    if feature.kind == "categorical":
        if type(value) is not str:
            raise PayloadError(422, f"{where}: {shown(value)} is not text; expected {feature.describe()}")
        if feature.judge_category(value) == Broken.OUTSIDE:
            near = feature.near_category(value)
            hint = f"; it differs from {shown(near, 40)} only in case, spaces or Unicode form" if near else ""
            if not feature.flag:
                raise PayloadError(422, _out_of_range(index, feature, shown(value)) + hint)
            flags.add(index, feature, shown(value), hint)
        return value
    # JSON has null for a missing value: NaN (which Python's json module reads) is never one.
    if feature.kind == "boolean":
        if type(value) is bool or (type(value) in _NUMBER_TYPES and value in (0, 1)):
            return float(value)
        raise PayloadError(422, f"{where}: {shown(value)} is not true or false")
    if type(value) not in _NUMBER_TYPES:
        raise PayloadError(422, f"{where}: {shown(value)} is not a number")
    try:
        number = float(value)
    except OverflowError:
        raise PayloadError(422, f"{where}: {value} is not a finite number") from None
    broken = Broken.NOT_FINITE if number != number else feature.judge_number(number)
    if broken == Broken.NOTHING:
        return number
    if broken == Broken.NOT_FINITE:
        raise PayloadError(422, f"{where}: {value} is not a finite number")
    if broken == Broken.NOT_WHOLE:
        raise PayloadError(422, f"{where}: {number:g} is not a whole number")
    if broken == Broken.BEYOND or not feature.flag:
        raise PayloadError(422, _out_of_range(index, feature, f"{number:g}"))
    flags.add(index, feature, f"{number:g}")
    return number
