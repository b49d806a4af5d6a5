"""Batch scoring: streamed, every row accounted for, the production model verified; as plain
functions and as the batch_predictions asset on a real Dagster instance."""

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlops_assets.batch.assets import batch_predictions, scoring_inputs
from mlops_assets.batch.automation import SCORING_INPUT_SENSOR, plan_scoring_inputs
from mlops_assets.ingest.seed import seed
from mlops_assets.model.batch_scoring import BatchInputError, score_file
from mlops_assets.model.loaded import LoadedModel
from mlops_assets.ops.runner import ingest_new_files, retrain, sensor_tags
from mlops_assets.registry.protocol import PRODUCTION_ALIAS
from mlops_assets_tests import data_files
from mlops_assets_tests.projects import DIABETES, TARGET

FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
WEIGHTS = np.arange(1.0, 11.0)


def _score(tmp_path, name: str, **kwargs):
    import fsspec

    model = LoadedModel("t", "7", FEATURES, "", "test", None, lambda rows: rows @ WEIGHTS, fast_path=True)
    return score_file(
        fsspec.filesystem("file"),
        str(tmp_path / name),
        str(tmp_path / "out" / "scored.parquet"),
        str(tmp_path / "out" / "scored.refused.parquet"),
        model,
        **kwargs,
    )


def test_every_row_is_scored_or_refused_with_its_reason(tmp_path):
    good = data_files.held_back()
    lines = [",".join(FEATURES)]
    lines += [",".join(str(v) for v in row) for row in good[list(FEATURES)].to_numpy()[:5]]
    lines += [
        "1,abc,3,4,5,6,7,8,9,10",  # row 5: text
        ",2,3,4,5,6,7,8,9,10",  # row 6: missing
        "1,2,3,4,5,6,7,8,9,1e12",  # row 7: out of range
        "1,2,3,4,5,6,7,8,nan,10",  # row 8: not finite
    ]
    (tmp_path / "in.csv").write_text("\n".join(lines) + "\n")
    result = _score(tmp_path, "in.csv")
    assert (result.rows, result.scored, result.refused) == (9, 5, 4)
    scored = pq.read_table(result.output_path).to_pandas()
    assert scored["row_id"].tolist() == [0, 1, 2, 3, 4]
    expected = good[list(FEATURES)].to_numpy()[:5] @ WEIGHTS
    np.testing.assert_allclose(scored["prediction"], expected)
    assert set(scored["model_version"]) == {"7"}
    refused = pq.read_table(result.refused_path).to_pandas()
    assert dict(zip(refused["row_id"], refused["reason"], strict=True)) == {
        5: "sex: missing or not a number",
        6: "age: missing or not a number",
        7: "s6: beyond ±1e+09",
        8: "s5: not a finite number",
    }
    assert refused.loc[refused["row_id"] == 5, "sex"].item() == "abc"  # the value as it came
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "scored.parquet",
        "scored.refused.parquet",
    ]


def test_parquet_is_streamed_in_chunks_with_continuous_row_ids(tmp_path):
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(10_000, 10)), columns=list(FEATURES))
    frame.loc[4_321, "bmi"] = np.inf
    frame.to_parquet(tmp_path / "in.parquet", row_group_size=1_000)
    seen: list[int] = []
    result = _score(tmp_path, "in.parquet", chunk_rows=1_024, progress=seen.append)
    assert len(seen) > 9 and seen[-1] == 10_000  # read chunk by chunk, not whole
    scored = pq.read_table(result.output_path).to_pandas()
    assert scored["row_id"].tolist() == [i for i in range(10_000) if i != 4_321]
    np.testing.assert_allclose(scored["prediction"], np.delete(frame.to_numpy() @ WEIGHTS, 4_321))
    assert pq.read_table(result.refused_path).to_pandas()["reason"].tolist() == ["bmi: not a finite number"]


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("in.csv", "age,sex\n1,2\n", "column(s) bmi, bp, s1, s2, s3, s4, s5, s6 missing"),
        ("in.json", "{}", "only .csv and .parquet files are scored"),
    ],
)
def test_a_file_that_cannot_be_scored_is_refused_whole_and_leaves_nothing(tmp_path, name, content, message):
    (tmp_path / "in.csv").write_text("")  # keep the folder listing honest below
    (tmp_path / name).write_text(content)
    (tmp_path / "out").mkdir()
    with pytest.raises(BatchInputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        _score(tmp_path, name)
    assert list((tmp_path / "out").iterdir()) == []


# --- the asset, on a real instance with a real MLflow registry ---------------------------


@pytest.fixture
def production(settings, storage, instance, defs):
    seed(storage, DIABETES)
    ingest_new_files(defs, instance, storage, settings.lock_dir)
    assert retrain(defs, instance, settings.lock_dir).registered["version"] == 1
    registry = defs.resources["registry"].get_registry()
    registry.set_alias(PRODUCTION_ALIAS, 1)  # what prod_deployment does once version 1 serves
    return registry


def _run_sensor_and_score(defs, instance, storage):
    import dagster as dg

    plan = plan_scoring_inputs(storage, instance)
    instance.add_dynamic_partitions(scoring_inputs.name, plan.new_partitions)
    results = []
    for request in plan.run_requests:
        results.append(
            dg.materialize(
                [batch_predictions],
                partition_key=request.partition_key,
                resources=defs.resources,
                instance=instance,
                raise_on_error=False,
                tags=sensor_tags(SCORING_INPUT_SENSOR, request.run_key),
            )
        )
    return plan, results


def test_batch_predictions_scores_landed_files_with_the_production_model(
    settings, storage, instance, defs, production
):
    frame = data_files.held_back().drop(columns=[TARGET])
    storage.write_bytes("scoring-input/clinic-a.csv", data_files.csv_bytes(frame))
    bad = frame.head(3).astype(object)
    bad.loc[1, "bmi"] = "n/a"
    storage.write_bytes("scoring-input/clinic-b.csv", data_files.csv_bytes(bad))

    plan, (a, b) = _run_sensor_and_score(defs, instance, storage)
    assert [r.partition_key for r in plan.run_requests] == ["clinic-a.csv", "clinic-b.csv"]
    assert a.success and b.success
    scored = pd.read_parquet(storage.uri("scoring-output/clinic-a.parquet"))
    model = production.read_file(1, "model.skops")
    from mlops_assets.model.artifact import load_verified_model, sha256_hex

    expected = load_verified_model(model, sha256_hex(model)).predict(
        frame[list(FEATURES)].to_numpy(dtype=float)
    )
    np.testing.assert_allclose(scored["prediction"], expected, rtol=1e-9)
    assert scored["row_id"].tolist() == list(range(len(frame))) and set(scored["model_version"]) == {"1"}

    checks = {e.check_name: e for e in b.get_asset_check_evaluations()}
    assert not checks["every_row_scored"].passed  # a WARN in the UI, not a failed run
    materialized = b.asset_materializations_for_node("batch_predictions")[0].metadata
    assert (materialized["rows"].value, materialized["refused"].value) == (3, 1)
    refused = pd.read_parquet(storage.uri("scoring-output/clinic-b.refused.parquet"))
    assert refused[["row_id", "reason", "bmi"]].values.tolist() == [
        [1, "bmi: missing or not a number", "n/a"]
    ]

    again, _ = _run_sensor_and_score(defs, instance, storage)  # nothing twice
    assert again.run_requests == []


def test_no_production_model_or_a_tampered_one_fails_clearly(settings, storage, instance, defs, production):
    storage.write_bytes("scoring-input/c.csv", data_files.csv_bytes(data_files.held_back().head(5)))
    # A tampered artifact: the bytes in the registry no longer match the manifest's sha256.
    from pathlib import Path

    (artifact,) = [p for p in Path(settings.home_dir).rglob("model.skops") if "mlflow" in str(p)]
    artifact.write_bytes(artifact.read_bytes() + b"tampered")
    _, (result,) = _run_sensor_and_score(defs, instance, storage)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure).step_failure_data.user_failure_data
    assert "does not match the expected" in failure.description
    assert not storage.exists("scoring-output/c.parquet")


def test_a_classifier_s_file_is_read_by_its_spec_and_scored_with_labels_and_probabilities(tmp_path):
    """The churn project's columns as a CSV gives them (text): categories, booleans in words, an
    empty nullable cell; an unknown plan, a fraction of a month and a word for a boolean are refused,
    an unknown region (flag) is scored and counted."""
    import fsspec
    import pandas as pd

    from mlops_assets.model.loaded import loaded_model
    from mlops_assets.model.rows import ServingSpec
    from mlops_assets_tests.projects import (
        CHURN,
        CHURN_ROWS,
        fit_project,
        typed_rows,
        typed_seed,
        write_project_release,
    )

    fitted = fit_project(CHURN, typed_seed(CHURN))
    artifact, manifest = write_project_release(tmp_path / "release", CHURN, fitted)
    model = loaded_model(manifest, artifact, "churn", ServingSpec.from_dict(CHURN.spec.serving_dict()))
    rows = pd.DataFrame(
        [
            ["basic", "north", "3", "21.5", "4", "yes"],
            ["premium", "west", "100", "80", "", "false"],
            ["gold", "north", "3", "21.5", "4", "true"],  # refused: not a plan
            ["basic", "mars", "12", "30", "0", "0"],  # flagged region: scored
            ["basic", "north", "3.5", "21.5", "4", "true"],  # refused: a fraction of a month
            ["basic", "north", "3", "21.5", "4", "maybe"],  # refused: not a boolean
        ],
        columns=list(CHURN.spec.feature_names),
    )
    rows.to_csv(tmp_path / "churn.csv", index=False)
    result = score_file(
        fsspec.filesystem("file"),
        str(tmp_path / "churn.csv"),
        str(tmp_path / "out" / "churn.parquet"),
        str(tmp_path / "out" / "churn.refused.parquet"),
        model,
    )
    assert (result.rows, result.scored, result.refused, result.flagged) == (6, 3, 3, 1)
    refused = pq.read_table(result.refused_path).to_pandas()
    assert dict(zip(refused["row_id"], refused["reason"], strict=True)) == {
        2: "plan: 'gold' not one of basic, standard, premium",
        4: "tenure_months: 3.5 not a whole number",
        5: "paperless: not true or false",
    }
    scored = pq.read_table(result.output_path).to_pandas()
    assert list(scored.columns) == [
        "row_id",
        "prediction",
        "probability_false",
        "probability_true",
        "model_version",
    ]
    as_sent = [  # rows 0 and 1 are CHURN_ROWS as the CSV gives them; row 3 has the flagged region
        *CHURN_ROWS,
        {
            "plan": "basic",
            "region": "mars",
            "tenure_months": 12,
            "monthly_charge": 30,
            "support_calls": 0,
            "paperless": False,
        },
    ]
    typed = typed_rows(CHURN, as_sent)
    assert scored["row_id"].tolist() == [0, 1, 3]
    assert scored["prediction"].tolist() == [bool(v) for v in fitted.predict(typed)]
    np.testing.assert_allclose(
        scored[["probability_false", "probability_true"]], fitted.predict_proba(typed), rtol=1e-12
    )
