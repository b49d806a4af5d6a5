"""What each feature kind allows: the one rule table that every reader of rows applies.

Ingest (pandas over a landed file), batch scoring (pyarrow over a file to score) and the service
(JSON) each read values their own way, into the same three things: the values as numbers (or text
for a category), where a value is null, and where it is not of the feature's kind at all. What is
wrong with a value from there on is decided here, once, in this order (the first rule broken is the
one named):

=============  ============================================================================
``NULL``       null, and the feature is not nullable
``NOT_OF_KIND`` not a number; not true/false (a boolean is also any number equal to 1 or 0); not text
``NOT_FINITE`` NaN or infinite (NaN is null where the feature is nullable)
``BEYOND``     beyond ±1e9, whatever the spec's range: far beyond any measurement, and small
               enough that a linear model's output stays finite; refused even where out-of-range
               values are flagged
``NOT_WHOLE``  an integer feature's value with a fraction
``OUTSIDE``    outside the spec's ``min``/``max`` or categories: refused, or scored and reported
               where the spec says ``out_of_range = "flag"``
=============  ============================================================================

A data file is text: a cell reads as null when it is one of ``NULL_TOKENS``, as a number when it
matches ``NUMBER_TEXT``, as a truth value when it is one of the truth tokens (lower-cased and
trimmed). Standard library and numpy only: the service, ``score.py`` on Azure ML and the AML batch
job load this file.

A new feature kind starts here (its judgement in ``Feature.judge_*``, its name in the spec's
``Kind``), then its reading in each reader: ``model/rows.py`` (JSON), ``ingest/validation.py``
(pandas), ``model/batch_scoring.py`` (pyarrow); ``mlops_assets_tests/test_feature_rules.py`` then
requires one verdict from all three.
"""

import functools
import math
import re
import unicodedata
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np

MAX_ABS_VALUE = 1e9
NUMBER_KINDS = ("numeric", "integer")
NULL_TOKENS = frozenset({"", "na", "n/a", "nan", "null", "none"})
TRUE_TOKENS = frozenset({"true", "yes", "y", "t"})  # and any number equal to 1
FALSE_TOKENS = frozenset({"false", "no", "n", "f"})  # and any number equal to 0
# A number's text, lower-cased and trimmed ("nan" is a null token; "inf" reads, then is not finite).
# ASCII digits only: Python's \d takes other scripts' digits (float("٨0") is 80.0), RE2's (the
# arrow strings ingest matches) does not, and the rule table must mean the same everywhere.
NUMBER_TEXT = r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:e[-+]?[0-9]+)?|[-+]?inf"
_NUMBER = re.compile(NUMBER_TEXT)


class Broken(IntEnum):
    """What is wrong with a value, in the order the table checks (0: nothing)."""

    NOTHING = 0
    NULL = 1
    NOT_OF_KIND = 2
    NOT_FINITE = 3
    BEYOND = 4
    NOT_WHOLE = 5
    OUTSIDE = 6


# A message names at most this many of a feature's categories: a spec may list 10,000, and a
# refusal or a flag per value must not carry them all (one request once wrote 207 MB of log).
DESCRIBED_CATEGORIES = 10
SHOWN_CHARACTERS = 100


def cut(text: str, limit: int = SHOWN_CHARACTERS) -> str:
    """``text``, cut to ``limit`` characters (saying how long it was)."""
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def shown(value: Any, limit: int = SHOWN_CHARACTERS) -> str:
    """``repr(value)``, cut to ``limit`` characters: what a message may echo of a request."""
    return cut(repr(value), limit)


def category_form(value: str) -> str:
    """What a category is once case, surrounding and repeated spaces, and Unicode form are set aside."""
    return " ".join(unicodedata.normalize("NFKC", value).casefold().split())


@dataclass(frozen=True)
class Feature:
    """One feature's rules: its kind, its bounds (the spec's range within ±1e9), its categories,
    whether it may be null and whether a value outside its range or categories is flagged."""

    name: str
    kind: str  # numeric | integer | boolean | categorical
    low: float = -MAX_ABS_VALUE
    high: float = MAX_ABS_VALUE
    categories: tuple[str, ...] = ()
    nullable: bool = False
    flag: bool = False  # out of range or categories: scored and reported instead of refused
    category_set: frozenset = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not (self.low == self.low and self.high == self.high):  # NaN would refuse every value
            raise ValueError(f"feature {self.name}: min and max are finite numbers, not NaN")
        object.__setattr__(self, "category_set", frozenset(self.categories))

    @functools.cached_property
    def _categories_by_form(self) -> dict[str, str]:
        return {category_form(c): c for c in self.categories}

    def near_category(self, value: str) -> str | None:
        """The category ``value`` matches but for case, spaces or Unicode form (None: none)."""
        return self._categories_by_form.get(category_form(value))

    @classmethod
    def from_dict(cls, column: dict[str, Any]) -> "Feature":
        """From a column as ``ProjectSpec.serving_dict`` writes it (name, kind, min, max, ...)."""
        low, high = column.get("min"), column.get("max")
        return cls(
            column["name"],
            column["kind"],
            -MAX_ABS_VALUE if low is None else max(float(low), -MAX_ABS_VALUE),
            MAX_ABS_VALUE if high is None else min(float(high), MAX_ABS_VALUE),
            tuple(column.get("categories") or ()),
            bool(column.get("nullable", False)),
            column.get("out_of_range", "reject") == "flag",
        )

    def describe(self) -> str:
        if self.kind == "categorical":
            listed = ", ".join(cut(c, 40) for c in self.categories[:DESCRIBED_CATEGORIES])
            more = len(self.categories) - DESCRIBED_CATEGORIES
            return f"one of {listed}" + (f", … ({len(self.categories)} categories)" if more > 0 else "")
        if self.kind == "boolean":
            return "true or false"
        return (
            f"{'a whole number' if self.kind == 'integer' else 'a number'} in [{self.low:g}, {self.high:g}]"
        )

    def refuses(self, broken: "Broken | np.ndarray") -> Any:
        """Whether (where) a value so judged is refused: anything broken but a flagged OUTSIDE."""
        if self.flag:
            return (broken != Broken.NOTHING) & (broken != Broken.OUTSIDE)
        return broken != Broken.NOTHING

    def judge_number(self, value: float) -> Broken:
        """One number (a boolean's 1.0 or 0.0), already read as the feature's kind."""
        if value != value:  # NaN
            if self.nullable:
                return Broken.NOTHING
            return Broken.NOT_OF_KIND if self.kind == "boolean" else Broken.NOT_FINITE
        if self.kind == "boolean":
            return Broken.NOTHING if value in (0.0, 1.0) else Broken.NOT_OF_KIND
        if not -math.inf < value < math.inf:
            return Broken.NOT_FINITE
        if abs(value) > MAX_ABS_VALUE:
            return Broken.BEYOND
        if self.kind == "integer" and value != round(value):
            return Broken.NOT_WHOLE
        if not self.low <= value <= self.high:
            return Broken.OUTSIDE
        return Broken.NOTHING

    def judge_category(self, value: str) -> Broken:
        return Broken.NOTHING if value in self.category_set else Broken.OUTSIDE

    def judge_numbers(self, values: np.ndarray, missing: np.ndarray, wrong: np.ndarray) -> np.ndarray:
        """``judge_number`` over a column: ``values`` float64, ``missing`` where null, ``wrong``
        where not readable as the kind (its value is ignored). Returns a Broken code per value."""
        nan = np.isnan(values)
        if self.nullable:
            missing = missing | (nan & ~wrong)
        present = ~missing & ~wrong
        with np.errstate(invalid="ignore"):
            if self.kind == "boolean":
                wrong = wrong | (present & ~((values == 0.0) | (values == 1.0)))
                conditions = [missing & ~np.bool_(self.nullable), wrong]
                codes = [Broken.NULL, Broken.NOT_OF_KIND]
            else:
                finite = present & np.isfinite(values)
                conditions = [
                    missing & ~np.bool_(self.nullable),
                    wrong,
                    present & ~finite,
                    finite & (np.abs(values) > MAX_ABS_VALUE),
                ]
                codes = [Broken.NULL, Broken.NOT_OF_KIND, Broken.NOT_FINITE, Broken.BEYOND]
                if self.kind == "integer":
                    conditions.append(finite & (values != np.round(values)))
                    codes.append(Broken.NOT_WHOLE)
                conditions.append(finite & ((values < self.low) | (values > self.high)))
                codes.append(Broken.OUTSIDE)
        return np.select(conditions, [np.int8(c) for c in codes], np.int8(0)).astype(np.int8)

    def judge_categories(self, values: np.ndarray, missing: np.ndarray) -> np.ndarray:
        """``judge_category`` over a column of text (object array), ``missing`` where null."""
        outside = ~missing & ~np.isin(values, np.array(self.categories, dtype=object))
        return np.select(
            [missing & ~np.bool_(self.nullable), outside],
            [np.int8(Broken.NULL), np.int8(Broken.OUTSIDE)],
            np.int8(0),
        ).astype(np.int8)


def read_number_text(text: str) -> float | None:
    """A cell's number (lower-cased, trimmed), or None when the text is not a number."""
    if _NUMBER.fullmatch(text):
        return float(text)
    return None


def read_truth_text(text: str) -> float | None:
    """A boolean cell (lower-cased, trimmed): 1.0, 0.0, or the number it reads as (the table then
    takes only 1 and 0), or None when the text is neither."""
    if text in TRUE_TOKENS:
        return 1.0
    if text in FALSE_TOKENS:
        return 0.0
    return read_number_text(text)
