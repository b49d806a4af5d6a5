"""Libraries that take categories natively get pandas Categorical columns over the spec's
categories, from the platform, in training and serving alike (``categorical_dtype = "category"``):
the churn project with a model that splits on categories itself (HistGradientBoosting's
``categorical_features="from_dtype"``, which refuses text columns) trains through train.py,
predicts the same when the service and batch scoring build its rows, and scores a flagged
category as missing. A project that leaves the setting ships the same serving spec as before."""

import shutil

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from mlops_assets.model.artifact import load_verified_model
from mlops_assets.model.batch_scoring import check_chunk
from mlops_assets.model.rows import ServingSpec, rows_from_payload
from mlops_assets.project.fitting import as_model_input
from mlops_assets.project.loader import load_project
from mlops_assets.runner.tasks import fitted_round_trip
from mlops_assets.training import train
from mlops_assets.training.assets import trainer_extras
from mlops_assets_tests.projects import CHURN, CHURN_ROWS, typed_seed

NATIVE_MODEL = '''"""Churn on trees that split on the plan and region categories themselves."""

from sklearn.ensemble import HistGradientBoostingClassifier


def build_model(params: dict) -> HistGradientBoostingClassifier:
    return HistGradientBoostingClassifier(categorical_features="from_dtype", max_iter=40, random_state=0)
'''
# What HistGradientBoosting's own category encoder holds (skops trusts none of it by default).
TREE_TYPES = (
    '["functools.partial", "numpy.dtype", '
    '"sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor", '
    '"sklearn.utils.validation.check_array"]'
)


@pytest.fixture(scope="module")
def native(tmp_path_factory):
    folder = tmp_path_factory.mktemp("native") / "churn_native"
    shutil.copytree(CHURN.folder, folder, ignore=shutil.ignore_patterns("__pycache__"))
    (folder / "model.py").write_text(NATIVE_MODEL)
    spec = folder / "project.toml"
    text = spec.read_text().replace('name = "churn"', 'name = "churn_native"')
    text = text.replace('trusted_types = ["numpy.dtype"]', f"trusted_types = {TREE_TYPES}")
    spec.write_text('categorical_dtype = "category"\n' + text)
    return load_project(folder)


@pytest.fixture(scope="module")
def trained(native, tmp_path_factory):
    """The native project trained by train.py on the churn seed, as the orchestrator asks it."""
    work = tmp_path_factory.mktemp("trained")
    frame = typed_seed(CHURN)
    frame.to_parquet(work / "snapshot.parquet", index=False)
    spec = native.spec
    extras = {
        "snapshot_uri": (work / "snapshot.parquet").as_uri(),
        "data_version": "abc",
        "output_uri": (work / "out").as_uri(),
        "project_dir": str(native.folder),
        **trainer_extras(spec),
    }
    assert extras["categories"] == spec.native_categories
    result = train.train(extras, log=lambda _: None)
    data = (work / "out" / result["fingerprint"] / train.ARTIFACT_NAME).read_bytes()
    model = load_verified_model(data, result["artifact_sha256"], trusted=spec.artifact.trusted_types)
    return {"result": result, "model": model, "frame": frame}


def test_the_spec_names_each_categorical_feature_s_categories_only_when_asked(native):
    assert native.spec.native_categories == {
        "plan": ["basic", "standard", "premium"],
        "region": ["north", "south", "east", "west"],
    }
    assert CHURN.spec.native_categories == {}
    assert "categorical_dtype" not in CHURN.spec.serving_dict()  # the default ships what it shipped
    assert native.spec.serving_dict()["categorical_dtype"] == "category"


def test_text_columns_are_refused_by_the_model_the_platform_converts_them(native):
    frame = typed_seed(CHURN)
    features = list(native.spec.feature_names)
    with pytest.raises(ValueError):
        native.model_module().build_model({}).fit(frame[features], frame["churned"].to_numpy())
    converted = as_model_input(frame, native.spec.native_categories)
    assert list(converted["region"].cat.categories) == ["north", "south", "east", "west"]
    assert converted["tenure_months"].equals(frame["tenure_months"])
    assert "saved and loaded back" in fitted_round_trip(native, {}, frame)


def test_train_py_fits_on_categories_and_reports_the_metrics(trained):
    assert trained["result"]["model_kind"] == "HistGradientBoostingClassifier"
    assert trained["result"]["roc_auc"] > 0.6


def test_the_service_s_rows_are_the_categories_the_model_was_trained_on(native, trained):
    spec = ServingSpec.from_dict(native.spec.serving_dict())
    rows = rows_from_payload({"data": CHURN_ROWS}, spec, max_rows=100)
    served = rows.values
    assert isinstance(served["plan"].dtype, pd.CategoricalDtype)
    assert list(served["plan"].cat.categories) == ["basic", "standard", "premium"]
    expected = as_model_input(pd.DataFrame(CHURN_ROWS), native.spec.native_categories).astype(
        {"tenure_months": float, "monthly_charge": float, "support_calls": float, "paperless": float}
    )
    model = trained["model"]
    np.testing.assert_allclose(model.predict_proba(served), model.predict_proba(expected))


def test_a_flagged_region_is_scored_as_missing(native, trained):
    spec = ServingSpec.from_dict(native.spec.serving_dict())
    unknown = [{**CHURN_ROWS[0], "region": "atlantis"}]
    rows = rows_from_payload({"data": unknown}, spec, max_rows=100)
    assert rows.flags and "atlantis" in rows.flags[0]
    assert pd.isna(rows.values["region"].iloc[0])
    assert trained["model"].predict_proba(rows.values).shape == (1, 2)


def test_batch_scoring_builds_the_same_frame_as_the_service(native, trained):
    spec = ServingSpec.from_dict(native.spec.serving_dict())
    batch = pa.RecordBatch.from_pandas(pd.DataFrame(CHURN_ROWS), preserve_index=False)
    frame, passed, _, _ = check_chunk(batch, spec)
    assert passed.all()
    served = rows_from_payload({"data": CHURN_ROWS}, spec, max_rows=100).values
    model = trained["model"]
    np.testing.assert_allclose(model.predict_proba(frame), model.predict_proba(served))
    assert frame["region"].dtype == served["region"].dtype
