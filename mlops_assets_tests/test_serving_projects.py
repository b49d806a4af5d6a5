"""The service follows the model project's spec: the churn classifier (categories, booleans, a
nullable integer, a flagged category) served by a real `mlops-assets serve`, by array and by name,
with labels and probabilities; wrong values refused naming the feature and the rule; trust in the
artifact's types from the spec, never from the manifest."""

import json
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from mlops_assets.model.rows import SPEC_NAME
from mlops_assets.release.build_context import assemble
from mlops_assets_tests.projects import (
    CHURN,
    CHURN_ROWS,
    fit_project,
    typed_rows,
    typed_seed,
    write_project_release,
)
from mlops_assets_tests.serving_support import Service

pytestmark = pytest.mark.slow

FEATURES = list(CHURN.spec.feature_names)
KEY = {"Authorization": "Bearer key-one"}


@pytest.fixture(scope="module")
def churn(tmp_path_factory):
    """The churn model trained as the trainer trains it (on validated, typed rows), released."""
    work = tmp_path_factory.mktemp("churn")
    frame = typed_seed(CHURN)
    model = fit_project(CHURN, frame)
    release = work / "release"
    artifact, manifest = write_project_release(release, CHURN, model)
    spec = work / SPEC_NAME
    spec.write_text(json.dumps(CHURN.spec.serving_dict()))
    service = Service(work / "home", release, env={"MLOPS_SERVING_SPEC": str(spec)}).wait_live()
    service.wait_version("1")
    yield {
        "service": service,
        "model": model,
        "frame": frame,
        "work": work,
        "artifact": artifact,
        "manifest": manifest,
    }
    service.stop()


def _expected(model, rows_by_name):
    typed = typed_rows(CHURN, rows_by_name)
    return [bool(v) for v in model.predict(typed)], model.predict_proba(typed)


def test_rows_by_name_and_by_position_get_labels_and_probabilities(churn):
    service = churn["service"]
    by_name = httpx.post(f"{service.url}/score", json={"data": CHURN_ROWS}, headers=KEY)
    assert by_name.status_code == 200, by_name.text
    by_position = httpx.post(
        f"{service.url}/score", json={"data": [[r[f] for f in FEATURES] for r in CHURN_ROWS]}, headers=KEY
    )
    assert by_position.json() == by_name.json()
    labels, probabilities = _expected(churn["model"], CHURN_ROWS)
    answer = by_name.json()
    assert answer["result"] == labels  # JSON true/false: the target is boolean
    assert [set(p) for p in answer["probabilities"]] == [{"false", "true"}] * 2
    np.testing.assert_allclose(
        [[p["false"], p["true"]] for p in answer["probabilities"]], probabilities, rtol=1e-12
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"plan": "gold"},
            "row 0, feature plan: 'gold' is outside one of basic, standard, premium (refused)",
        ),
        ({"tenure_months": "ten"}, "row 0, feature tenure_months: 'ten' is not a number"),
        ({"tenure_months": 3.5}, "row 0, feature tenure_months: 3.5 is not a whole number"),
        (
            {"monthly_charge": 900},
            "row 0, feature monthly_charge: 900 is outside a number in [0, 500] (refused)",
        ),
        ({"plan": None}, "row 0, feature plan: null, and the feature is not nullable"),
        ({"paperless": "yes"}, "row 0, feature paperless: 'yes' is not true or false"),
        ({"plan": 3}, "row 0, feature plan: 3 is not text; expected one of basic, standard, premium"),
        ({"monthly_charge": None, "extra": 1}, "row 0: unknown feature extra"),
    ],
)
def test_a_wrong_value_is_refused_naming_the_feature_and_the_rule(churn, change, message):
    row = {**CHURN_ROWS[0], **change}
    answer = httpx.post(f"{churn['service'].url}/score", json={"data": [row]}, headers=KEY)
    assert answer.status_code == 422 and answer.json()["error"].startswith(message), answer.text


def test_a_missing_named_feature_is_refused_and_a_nullable_one_may_be_null(churn):
    url = churn["service"].url
    row = {k: v for k, v in CHURN_ROWS[0].items() if k != "monthly_charge"}
    missing = httpx.post(f"{url}/score", json={"data": [row]}, headers=KEY)
    assert missing.status_code == 422 and missing.json()["error"] == "row 0: feature monthly_charge missing"
    assert httpx.post(f"{url}/score", json={"data": [CHURN_ROWS[1]]}, headers=KEY).status_code == 200


def test_a_flagged_category_is_scored_and_its_record_says_so(churn):
    service = churn["service"]
    row = {**CHURN_ROWS[0], "region": "central"}  # a region opened after training: flag, not refuse
    near = {**CHURN_ROWS[0], "region": "North "}  # a known region but for case and a space
    answer = httpx.post(f"{service.url}/score", json={"data": [row, near]}, headers=KEY)
    assert answer.status_code == 200, answer.text
    expected = [
        "row 0, feature region: 'central' is outside one of north, south, east, west (flagged)",
        "row 1, feature region: 'North ' is outside one of north, south, east, west (flagged); "
        "it differs from 'north' only in case, spaces or Unicode form",
    ]
    assert answer.json()["flags"] == expected  # the caller is told, not only the log
    request_id = answer.headers["x-request-id"]
    logs = Path(service.home) / "storage" / "scoring-logs"
    deadline = time.monotonic() + 20
    while True:
        records = [json.loads(line) for p in logs.rglob("*.jsonl") for line in p.read_text().splitlines()]
        mine = [r for r in records if r["request_id"] == request_id]
        if mine:
            break
        assert time.monotonic() < deadline, "the record was never written"
        time.sleep(0.1)
    assert mine[0]["flags"] == expected


def test_the_openapi_document_is_the_spec_s(churn):
    schema = httpx.get(f"{churn['service'].url}/openapi.json").json()
    post = schema["paths"]["/score"]["post"]
    by_position, by_name = post["requestBody"]["content"]["application/json"]["schema"]["properties"]["data"][
        "items"
    ]["oneOf"]
    assert [s["description"].split(":")[0] for s in by_position["prefixItems"]] == FEATURES
    assert by_name["required"] == FEATURES and by_name["additionalProperties"] is False
    assert by_name["properties"]["plan"]["enum"] == ["basic", "standard", "premium"]
    assert "enum" not in by_name["properties"]["region"]  # flagged: any text is scored
    assert by_name["properties"]["support_calls"]["type"] == ["integer", "null"]
    answer = post["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
    assert answer["result"]["items"] == {"type": "boolean"} and "probabilities" in answer


def test_trust_in_the_artifact_s_types_comes_from_the_spec_never_from_the_manifest(churn, tmp_path):
    release = tmp_path / "release"
    release.mkdir()
    (release / "model.skops").write_bytes(churn["artifact"])
    # A deployer editing the manifest to widen trust changes nothing: the loader never reads it.
    (release / "manifest.json").write_text(
        json.dumps({**churn["manifest"], "trusted_types": ["numpy.dtype"]})
    )
    service = Service(tmp_path / "home", release).wait_live()  # no spec: skops' defaults only
    try:
        service.wait_logged("refusing to load untrusted types")
        ready = httpx.get(f"{service.url}/health/ready")
        assert ready.status_code == 503 and ready.json()["reason"] == "no verified model loaded"
        assert "refusing to load untrusted types ['numpy.dtype']" in service.log()
    finally:
        service.stop()


def test_the_build_context_packages_the_spec_with_the_code(churn, tmp_path):
    spec = CHURN.spec.serving_dict()
    context, _ = assemble(tmp_path, "model.skops", churn["artifact"], churn["manifest"], b"", b"", spec)
    packaged = context.path / "project" / "mlops_assets" / "model" / SPEC_NAME
    assert json.loads(packaged.read_text()) == spec
    edited = {**spec, "features": [{**spec["features"][0], "out_of_range": "flag"}, *spec["features"][1:]]}
    other, _ = assemble(tmp_path, "model.skops", churn["artifact"], churn["manifest"], b"", b"", edited)
    assert other.code_digest != context.code_digest  # the spec is code: a change hands over the process
