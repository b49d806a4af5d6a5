"""The blocking rules and the drift warning, on the bytes a user would land."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_assets.ingest.config import ValidationConfig
from mlops_assets.ingest.reference import compute_reference
from mlops_assets.ingest.tally import tally_of
from mlops_assets.ingest.validation import (
    check_distribution_limit,
    check_drift,
    check_nulls,
    check_parse,
    check_ranges,
    check_schema,
    failed_rules,
    parse_batch,
    typed_frame,
)
from mlops_assets.project.rules import NUMBER_TEXT
from mlops_assets_tests import data_files
from mlops_assets_tests.projects import DIABETES, diabetes_frame, split_seed

pytestmark = pytest.mark.data  # `make data-test`: the sample data's own tests

SOURCE = "landing/new.csv"
SPEC = DIABETES.spec


def read(raw: bytes):
    """The file read whole, as the rules see it."""
    return tally_of(parse_batch(SOURCE, raw), SPEC)


@pytest.fixture(scope="module")
def reference():
    return compute_reference(split_seed(diabetes_frame())[0], SPEC, source="first file")


@pytest.fixture(scope="module")
def limits():
    return ValidationConfig().thresholds()


def test_held_back_file_passes_every_blocking_rule_and_raises_no_drift(limits, reference):
    batch = parse_batch(SOURCE, data_files.csv_bytes(data_files.held_back()))
    assert failed_rules(batch, SPEC, limits, reference) == []
    assert check_drift(tally_of(batch, SPEC), SPEC, limits, reference).passed
    frame = typed_frame(batch, SPEC)
    assert len(frame) == 111
    assert str(frame["s6"].dtype) == "float64"


@pytest.mark.parametrize(
    ("make_bytes", "rule", "expected"),
    [
        (data_files.missing_column, check_schema, "landing/new.csv: column s6 missing (schema check)"),
        (
            data_files.text_value,
            check_schema,
            "column bmi must be numeric, found other values in 1 row(s): row 5: 'twenty-five'",
        ),
        (data_files.nulls, check_nulls, "column bp has 2 empty value(s)"),
        (data_files.out_of_range, check_ranges, "column age has 1 value(s) outside [0, 120]: row 9: 250"),
        (data_files.not_csv, check_parse, "landing/new.csv: binary content, not a CSV file (parse check)"),
        (data_files.changed_units, check_distribution_limit, "column s1 mean"),
    ],
)
def test_each_bad_batch_fails_its_rule_naming_file_column_and_rule(
    make_bytes, rule, expected, limits, reference
):
    batch = read(make_bytes())
    outcome = rule(batch, SPEC, limits, reference)
    assert not outcome.passed
    assert expected in outcome.message
    assert outcome.message.startswith(SOURCE)
    assert f"({outcome.rule} check)" in outcome.message
    assert outcome.rule in {o.rule for o in failed_rules(batch, SPEC, limits, reference)}


def test_unit_change_names_the_column_and_the_limit(limits, reference):
    outcome = check_distribution_limit(read(data_files.changed_units()), SPEC, limits, reference)
    (problem,) = outcome.problems
    assert "column s1" in problem and "the limit is 4" in problem


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        (b"", "empty file"),
        (b"age,sex\n", "no data rows under the header"),
        (b"a,b\n1,2\n3,4,5,6\n", "not a well-formed CSV"),
        (b"\xff\xfe\xfa", "not UTF-8 text"),
    ],
)
def test_unreadable_files_fail_parse_and_every_other_rule_says_why(raw, error, limits, reference):
    batch = read(raw)
    assert error in check_parse(batch, SPEC, limits, reference).message
    (failure,) = failed_rules(batch, SPEC, limits, reference)  # the headline: why it did not parse
    assert failure.rule == "parse" and error in failure.message
    for rule in (check_schema, check_nulls, check_ranges, check_distribution_limit):
        assert "file did not parse" in rule(batch, SPEC, limits, reference).message


@pytest.mark.parametrize("header", ["s6", " s6 ", "s6 "])
def test_a_header_that_repeats_a_column_is_refused_before_pandas_renames_it(header, limits, reference):
    frame = data_files.held_back()
    good = data_files.csv_bytes(frame).decode()
    first, rest = good.split("\n", 1)
    rows = [line + ",1" for line in rest.splitlines()]
    raw = "\n".join([first + "," + header, *rows]).encode()  # a second s6 column
    batch = read(raw)
    outcome = check_parse(batch, SPEC, limits, reference)
    assert not outcome.passed
    assert outcome.message == f"{SOURCE}: column names repeated in the header: 's6' (2 times) (parse check)"
    assert "parse" in {o.rule for o in failed_rules(batch, SPEC, limits, reference)}


def test_json_is_refused_by_the_schema_rule(limits, reference):
    batch = read(b'[\n  {"age": 50, "sex": 1},\n  {"age": 51, "sex": 2}\n]\n')
    outcome = check_schema(batch, SPEC, limits, reference)
    assert not outcome.passed
    assert "column age missing (schema check)" in outcome.message


def test_drifted_but_valid_batch_passes_the_blocking_rules_with_a_warning(limits, reference):
    batch = read(data_files.drifted())
    assert failed_rules(batch, SPEC, limits, reference) == []
    warning = check_drift(batch, SPEC, limits, reference)
    assert not warning.passed
    assert "column bmi drifted: mean moved" in warning.message
    assert all("column bmi" in p for p in warning.problems)


def test_without_reference_the_distribution_rules_pass_and_say_so(limits):
    batch = read(data_files.changed_units())
    outcome = check_distribution_limit(batch, SPEC, limits, None)
    assert outcome.passed
    assert "no reference" in outcome.metadata["note"]


def test_null_tokens_count_as_nulls_not_text(limits):
    frame = data_files.held_back().astype(object)
    frame.loc[0, "s2"] = "NA"
    frame.loc[1, "s2"] = ""
    batch = read(data_files.csv_bytes(frame))
    assert check_schema(batch, SPEC, limits, None).passed
    assert "column s2 has 2 empty value(s)" in check_nulls(batch, SPEC, limits, None).message


def test_a_file_cut_inside_its_last_value_is_refused_by_the_parse_rule(limits, reference):
    whole = data_files.csv_bytes(data_files.held_back())
    cut = whole.rstrip(b"\n")[:-2]  # e.g. "...,151.2" arrives as "...,15": still a plausible number
    batch = read(cut)
    outcome = check_parse(batch, SPEC, limits, reference)
    assert (
        outcome.message
        == f"{SOURCE}: the last line has no line break: the file may be cut short (parse check)"
    )
    assert [o.rule for o in failed_rules(batch, SPEC, limits, reference)] == ["parse"]
    assert failed_rules(read(whole), SPEC, limits, reference) == []


@settings(max_examples=300, deadline=None)
@given(st.lists(st.from_regex(NUMBER_TEXT, fullmatch=True), min_size=1, max_size=20))
def test_number_cells_read_as_python_reads_them(texts):
    """The cells the rule table takes for numbers (pyarrow casts them, pandas where it cannot) read
    as Python's float() reads them, the sign of a zero and infinities included."""
    import numpy as np
    import pandas as pd

    from mlops_assets.ingest.parsing import _numbers

    found = _numbers(pd.Series([t.lower() for t in texts], dtype="str"))
    expected = np.array([float(t) for t in texts])
    assert np.array_equal(found, expected, equal_nan=True)
    assert np.array_equal(np.signbit(found), np.signbit(expected))
