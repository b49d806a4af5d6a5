"""One rule table per feature kind: ingest (pandas over a CSV), batch scoring (pyarrow over the same
CSV) and the service (JSON, rows by position and by name, one row and many) give every value the
same verdict.

Hypothesis draws a feature (kind, range or categories, nullable, reject or flag) and a value, writes
the value as each format writes it (a CSV cell: ``""`` for null, ``true``/``false``, the number's
shortest text; JSON: the value itself) and requires one verdict: accepted, flagged or refused.
Words a data file reads as null or as a truth value (``NA``, ``none``, ``yes``, ``t``...) and the
text of a number are drawn only where the formats mean the same by them: in JSON ``"NA"`` is a word
and ``"5"`` is text, in a CSV cell both are what they read as. A number is never a category.
"""

import csv
import io
import json
from typing import Any

import fsspec
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mlops_assets.ingest.tally import tally_of
from mlops_assets.ingest.validation import ValidationThresholds, check_ranges, failed_rules, parse_batch
from mlops_assets.model.batch_scoring import check_chunk, read_chunks
from mlops_assets.model.rows import FEW_ROWS, PayloadError, ServingSpec, rows_from_payload
from mlops_assets.project.spec import ProjectSpec

CATEGORIES = ("red", "green", "blue")
WORDS = ("purple", "Red", "twenty", "abc")  # no format reads these as null, a truth value or a number
BOUNDS = (None, -5.0, 0.0, 10.0, 1e9, -2e9, 2e9, 1e12)


@st.composite
def features(draw) -> dict[str, Any]:
    kind = draw(st.sampled_from(("numeric", "integer", "boolean", "categorical")))
    column: dict[str, Any] = {
        "kind": kind,
        "nullable": draw(st.booleans()),
        "out_of_range": draw(st.sampled_from(("reject", "flag"))),
    }
    if kind in ("numeric", "integer"):
        low, high = draw(st.sampled_from(BOUNDS)), draw(st.sampled_from(BOUNDS))
        if low is not None and high is not None and low > high:
            low, high = high, low
        column |= {"min": low, "max": high}
    elif kind == "categorical":
        column["categories"] = draw(
            st.lists(st.sampled_from(CATEGORIES), min_size=1, max_size=3, unique=True)
        )
    return column


def values_for(column: dict[str, Any]) -> st.SearchStrategy:
    if column["kind"] == "categorical":
        return st.one_of(st.none(), st.sampled_from(CATEGORIES + WORDS))
    return st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(10**13), 10**13),
        st.floats(allow_nan=False, allow_infinity=True),
        st.sampled_from((0, 1, 0.0, 1.0, -0.0, 0.5, 1e9, -1e9, 1e9 + 1, 2e9, -5.0, 10.0, 10.5)),
        st.sampled_from(WORDS),
    )


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def csv_bytes(value: Any) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerows([["x", "y"], [cell(value), "1"]])
    return out.getvalue().encode()


def project_spec(column: dict[str, Any]) -> ProjectSpec:
    return ProjectSpec.model_validate(
        {
            "name": "rules",
            "task": "regression",
            "target": {"name": "y", "kind": "numeric"},
            "features": {"x": column},
            "evaluation": {"primary_metric": "mse"},
        }
    )


def ingest_verdict(spec: ProjectSpec, data: bytes) -> str:
    batch = tally_of(parse_batch("landing/x.csv", data), spec)
    if failed_rules(batch, spec, ValidationThresholds(), None):
        return "refused"
    return (
        "flagged"
        if check_ranges(batch, spec, ValidationThresholds(), None).metadata.get("flagged")
        else "accepted"
    )


def batch_verdict(spec: ServingSpec, data: bytes) -> str:
    fs = fsspec.filesystem("memory")
    fs.pipe("/rules/x.csv", data)
    (chunk,) = read_chunks(fs, "/rules/x.csv")
    _, passed, _, flagged = check_chunk(chunk, spec)
    if not passed.all():
        return "refused"
    return "flagged" if flagged else "accepted"


def serving_verdict(spec: ServingSpec, row: Any, copies: int = 1) -> str:
    payload = {"data": [row] * copies}
    try:
        rows = rows_from_payload(payload, spec, copies, json.dumps(payload).encode())
    except PayloadError:
        return "refused"
    return "flagged" if rows.flags else "accepted"


def verdicts(column: dict[str, Any], value: Any) -> dict[str, str]:
    spec = project_spec(column)
    serving = ServingSpec.from_dict(spec.serving_dict())
    data = csv_bytes(value)
    return {
        "ingest (pandas)": ingest_verdict(spec, data),
        "batch (pyarrow)": batch_verdict(serving, data),
        "serving, by position": serving_verdict(serving, [value]),
        "serving, by name": serving_verdict(serving, {"x": value}),
        # a few rows are judged value by value in Python, more a column at a time in numpy
        "serving, by name, many rows": serving_verdict(serving, {"x": value}, FEW_ROWS + 1),
    }


@st.composite
def features_and_values(draw) -> tuple[dict[str, Any], Any]:
    column = draw(features())
    return column, draw(values_for(column))


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(features_and_values())
@example(({"kind": "numeric", "nullable": False, "out_of_range": "reject", "min": None, "max": None}, 2e9))
@example(({"kind": "numeric", "nullable": False, "out_of_range": "flag", "min": 0.0, "max": 10.0}, 1e12))
@example(({"kind": "boolean", "nullable": False, "out_of_range": "reject"}, -0.0))
def test_every_format_gives_a_value_the_same_verdict(feature_and_value):
    column, value = feature_and_value
    found = verdicts(column, value)
    assert len(set(found.values())) == 1, f"{column} {value!r}: {found}"


@pytest.mark.parametrize(
    ("column", "value", "verdict"),
    [
        ({"kind": "numeric"}, 1e9, "accepted"),
        ({"kind": "numeric"}, 1e9 + 1, "refused"),  # ±1e9 holds without min/max
        ({"kind": "numeric", "min": 0, "max": 10, "out_of_range": "flag"}, 11, "flagged"),
        ({"kind": "numeric", "min": 0, "max": 10, "out_of_range": "flag"}, 2e9, "refused"),
        ({"kind": "integer"}, 2.5, "refused"),
        ({"kind": "numeric"}, "\u0668\u0660", "refused"),  # Arabic-Indic digits: ASCII only
        ({"kind": "boolean"}, 1, "accepted"),
        ({"kind": "boolean"}, 2, "refused"),
        ({"kind": "categorical", "categories": ["red"], "nullable": True}, None, "accepted"),
        ({"kind": "categorical", "categories": ["red"], "out_of_range": "flag"}, "blue", "flagged"),
    ],
)
def test_a_few_verdicts_stated(column, value, verdict):
    assert set(verdicts(column, value).values()) == {verdict}
