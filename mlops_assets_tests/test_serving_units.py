"""The serving core without a server: release lookup, the affine fast path, payload rules, the log writer."""

import json

import numpy as np
import pandas as pd
import pytest

from mlops_assets.core.fsstore import Storage
from mlops_assets.serving import score
from mlops_assets.serving.artifact import ArtifactError, find_manifest, load_release
from mlops_assets.serving.features import PayloadError, ServingSpec, rows_from_payload
from mlops_assets.serving.request_log import RequestLogWriter, record_line
from mlops_assets_tests.projects import FEATURES
from mlops_assets_tests.serving_support import SAMPLE, predictions, write_release


def test_release_is_found_in_a_subfolder_as_azure_ml_mounts_it(tmp_path):
    model = write_release(tmp_path / "diabetes" / "3", version=3)
    loaded = load_release(tmp_path)
    assert (loaded.name, loaded.version, loaded.features[0]) == ("diabetes", "3", "age")
    rows = np.asarray(SAMPLE["data"], dtype=float)
    assert loaded.fast_path
    expected = model.predict(pd.DataFrame(rows, columns=FEATURES))  # as it was fitted: named columns
    np.testing.assert_allclose(loaded.predict(rows), expected, rtol=1e-12)


def test_no_manifest_or_two_manifests_are_errors(tmp_path):
    with pytest.raises(ArtifactError, match=r"no manifest\.json"):
        find_manifest(tmp_path)
    write_release(tmp_path / "a", version=1)
    write_release(tmp_path / "b", version=2)
    with pytest.raises(ArtifactError, match="2 manifests"):
        find_manifest(tmp_path)


def test_tampered_artifact_and_broken_manifest_are_refused(tmp_path):
    write_release(tmp_path / "t", version=1, tamper=True)
    with pytest.raises(ArtifactError, match="does not match the expected"):
        load_release(tmp_path / "t")
    write_release(tmp_path / "m", version=1)
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    del manifest["sha256"]
    (tmp_path / "m" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match="manifest lacks sha256"):
        load_release(tmp_path / "m")


@pytest.mark.parametrize("kind", ["bare linear model", "polynomial"])
def test_only_a_model_that_is_affine_gets_the_collapsed_predictor(tmp_path, kind):
    import skops.io as sio
    from sklearn.linear_model import LinearRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import PolynomialFeatures

    from mlops_assets.serving.artifact import sha256_hex
    from mlops_assets_tests.projects import FEATURES, TARGET, diabetes_frame

    frame = diabetes_frame()
    estimator = (
        LinearRegression() if kind == "bare linear model" else make_pipeline(PolynomialFeatures(2), Ridge())
    )
    fitted = estimator.fit(frame[FEATURES].to_numpy(), frame[TARGET].to_numpy())
    artifact = sio.dumps(fitted)
    (tmp_path / "model.skops").write_bytes(artifact)
    manifest = {
        "model_name": "m",
        "version": 1,
        "artifact": "model.skops",
        "sha256": sha256_hex(artifact),
        "features": FEATURES,
    }
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    loaded = load_release(tmp_path)
    assert loaded.fast_path == (kind == "bare linear model")
    rows = frame[FEATURES].to_numpy()[:50]
    np.testing.assert_allclose(loaded.predict(rows), fitted.predict(rows), rtol=1e-9)


@pytest.mark.parametrize(
    ("payload", "status", "message"),
    [
        ({"data": [[1.0] * 10]}, None, None),
        ({"data": [[1] * 10, [2.5] * 10]}, None, None),
        ([], 422, "body must be a JSON object"),
        ({"data": "x"}, 422, "got str"),
        ({"data": [[1] * 9]}, 422, "row 0 has 9 values"),
        ({"data": [[1] * 10, None]}, 422, "row 1 has a NoneType"),
        ({"data": [[float("nan")] + [1] * 9]}, 422, "row 0, feature age: nan is not a finite number"),
        ({"data": [[1] * 9 + [float("-inf")]]}, 422, "row 0, feature s6: -inf is not a finite number"),
        ({"data": [[1] * 10] * 4}, 413, "at most 3 per request"),
        ({"data": [[False] + [1] * 9]}, 422, "row 0, feature age: False is not a number"),
        (
            {"data": [[1] * 9 + [2e9]]},
            422,
            r"row 0, feature s6: 2e\+09 is outside a number in \[-1e\+09, 1e\+09\]",
        ),
        ({"data": [dict(zip(FEATURES, [1] * 10, strict=True))]}, None, None),
        ({"data": [dict(zip(FEATURES[1:], [1] * 9, strict=True))]}, 422, "row 0: feature age missing"),
    ],
)
def test_payload_rules(payload, status, message):
    spec = ServingSpec.numbers_only(tuple(FEATURES))
    if status is None:
        assert rows_from_payload(payload, spec, 3).values.dtype == np.float64
        return
    with pytest.raises(PayloadError, match=message) as raised:
        rows_from_payload(payload, spec, 3)
    assert raised.value.status == status


def test_score_py_keeps_azure_ml_s_contract(tmp_path, monkeypatch):
    model = write_release(tmp_path / "models" / "diabetes" / "1", version=1)
    monkeypatch.setenv("AZUREML_MODEL_DIR", str(tmp_path / "models"))
    score.init()
    assert score.run(json.dumps(SAMPLE)) == {"result": pytest.approx(predictions(model), rel=1e-12)}
    assert score.run(json.dumps({"data": [[1, 2]]})) == {
        "error": "row 0 has 2 values; the model expects 10 (age, sex, bmi, bp, s1, s2, s3, s4, s5, s6)"
    }
    assert "not valid JSON" in score.run("{oops")["error"]
    assert "not a finite number" in score.run('{"data": [[NaN, 1, 1, 1, 1, 1, 1, 1, 1, 1]]}')["error"]


def test_record_line_embeds_bodies_as_json_even_with_newlines():
    body = b'{\n  "data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]\r\n}'
    line = record_line("abc", 1.5, "7", body, b'{"result":[1.0]}', 0.25, True, '00-x"y-01')
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    record = json.loads(line)
    assert record["request"] == {"data": [[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]]}
    assert record["response"] == {"result": [1.0]} and record["synthetic"] is True
    assert record["traceparent"] == "00-xy-01"


def test_writer_spills_while_storage_fails_then_delivers_and_closes_with_nothing_lost(tmp_path):
    root = tmp_path / "storage"
    root.mkdir()
    (root / "scoring-logs").write_text("blocks the folder")
    writer = RequestLogWriter(Storage(root.as_uri()), tmp_path / "spill", flush_seconds=3600).start()
    for i in range(10):
        writer.append(record_line(f"r{i}", 1.0, "1", b"{}", b"{}", 1.0, False, None))
    writer._flush()
    assert writer.spilled == 10 and writer.written == 0 and writer.backlog == 0
    (root / "scoring-logs").unlink()
    writer.append(record_line("r10", 1.0, "1", b"{}", b"{}", 1.0, False, None))
    writer.close()
    assert (writer.written, writer.spilled) == (11, 0)
    lines = [json.loads(line) for p in root.rglob("*.jsonl") for line in p.read_text().splitlines()]
    assert sorted(r["request_id"] for r in lines) == sorted(f"r{i}" for i in range(11))
    assert not list((tmp_path / "spill").rglob("*.jsonl"))


def test_spilled_records_from_a_previous_process_are_delivered_on_start(tmp_path):
    root = tmp_path / "storage"
    root.mkdir()
    (root / "scoring-logs").write_text("blocks the folder")
    first = RequestLogWriter(Storage(root.as_uri()), tmp_path / "spill", flush_seconds=3600).start()
    first.append(record_line("old", 1.0, "1", b"{}", b"{}", 1.0, False, None))
    first.close()
    assert first.spilled == 1
    (root / "scoring-logs").unlink()
    second = RequestLogWriter(Storage(root.as_uri()), tmp_path / "spill", flush_seconds=0.05).start()
    assert second.spilled == 1
    second.close()
    assert second.written == 1


def test_a_manifest_whose_features_are_not_the_fitted_columns_is_refused(tmp_path):
    write_release(tmp_path / "r", version=1)
    manifest = json.loads((tmp_path / "r" / "manifest.json").read_text())
    manifest["features"] = manifest["features"][::-1]  # rows would be read in the wrong order
    (tmp_path / "r" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ArtifactError, match=r"fitted on columns \['age', .*the manifest says \['s6'"):
        load_release(tmp_path / "r")
