"""train.py's parts: the project's estimator fitted, the task's metrics on a holdout that never
moves, fingerprints that change with data, holdout, trainer, model code and spec."""

import hashlib
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from mlops_assets.model.artifact import ArtifactError, load_verified_model
from mlops_assets.training import train
from mlops_assets_tests.projects import DIABETES, FEATURES, TARGET, diabetes_frame, fit_diabetes, split_seed

pytestmark = pytest.mark.data  # `make data-test`: the sample data's own tests
COLUMNS = [*FEATURES, TARGET]


@pytest.fixture(scope="module")
def first_file() -> pd.DataFrame:
    return split_seed(diabetes_frame())[0]


def extras(snapshot, out, project_dir=DIABETES.folder, **overrides) -> dict:
    spec = DIABETES.spec
    return {
        "snapshot_uri": snapshot.as_uri(),
        "data_version": "abc",
        "output_uri": out.as_uri(),
        "project_dir": str(project_dir),
        "task": spec.task,
        "features": list(spec.feature_names),
        "target": spec.target.name,
        "params": dict(spec.params),
        "holdout_percent": spec.evaluation.holdout_percent,
        **overrides,
    }


def test_the_project_s_model_scores_the_known_numbers_on_the_fixed_holdout(first_file):
    from mlops_assets.project.metrics import evaluate

    mask = train.holdout_mask(first_file, COLUMNS, 20)
    assert (len(first_file), int(mask.sum())) == (331, 58)
    model = fit_diabetes(first_file[~mask])
    holdout = first_file[mask]
    metrics = evaluate("regression", model, holdout[FEATURES], holdout[TARGET].to_numpy())
    assert metrics == pytest.approx(
        {"mse": 3811.4046, "rmse": 61.736574, "mae": 50.891835, "r2": 0.33695236}, rel=1e-5
    )


def test_old_rows_keep_their_side_when_new_rows_arrive(first_file):
    everything = diabetes_frame()
    before = train.holdout_mask(first_file, COLUMNS, 20)
    after = train.holdout_mask(everything, COLUMNS, 20)[: len(first_file)]
    assert (before == after).all()
    shuffled = first_file.sample(frac=1.0, random_state=1)
    assert (train.holdout_mask(shuffled, COLUMNS, 20) == before[shuffled.index]).all()


def test_holdout_hash_changes_with_the_holdout_only(first_file):
    assert train.holdout_hash(first_file, COLUMNS, 20) == train.holdout_hash(
        first_file.iloc[::-1], COLUMNS, 20
    )
    assert train.holdout_hash(first_file, COLUMNS, 20) != train.holdout_hash(diabetes_frame(), COLUMNS, 20)


def test_fingerprint_is_keyed_on_data_holdout_trainer_model_code_and_spec():
    base = ("d1", "h1", "t1", "m1", "s1")
    variants = [tuple(f"{v}x" if i == changed else v for i, v in enumerate(base)) for changed in range(5)]
    assert train.fingerprint(*base) == train.fingerprint(*base)
    assert len({train.fingerprint(*base), *(train.fingerprint(*v) for v in variants)}) == 6


def test_train_writes_a_verifiable_skops_artifact_and_reports_the_task_s_metrics(first_file, tmp_path):
    snapshot = tmp_path / "snapshot.parquet"
    first_file.to_parquet(snapshot, index=False)
    result = train.train(extras(snapshot, tmp_path / "out"), log=lambda _: None)
    artifact = (tmp_path / "out" / result["fingerprint"] / "model.skops").read_bytes()
    assert result["artifact_sha256"] == hashlib.sha256(artifact).hexdigest()
    model = load_verified_model(artifact, result["artifact_sha256"])
    assert result["metric_names"] == "mse,rmse,mae,r2"
    assert result["mse"] == pytest.approx(3811.4046, rel=1e-5)
    assert (result["model_code_digest"], result["spec_digest"]) == (
        DIABETES.code_digest,
        DIABETES.spec_digest,
    )
    assert result["model_kind"] == "Pipeline(StandardScaler, Ridge)"
    assert model.predict(first_file[FEATURES].head(2)).shape == (2,)
    with pytest.raises(ArtifactError, match="does not match"):
        load_verified_model(artifact, "0" * 64)


def test_an_edited_build_model_is_a_new_fingerprint(first_file, tmp_path):
    snapshot = tmp_path / "snapshot.parquet"
    first_file.to_parquet(snapshot, index=False)
    edited = tmp_path / "edited"
    shutil.copytree(DIABETES.folder, edited)
    source = (edited / "model.py").read_text()
    (edited / "model.py").write_text(
        source.replace("StandardScaler(), Ridge", "StandardScaler(with_mean=True), Ridge")
    )
    before = train.train(extras(snapshot, tmp_path / "a"), log=lambda _: None)
    after = train.train(extras(snapshot, tmp_path / "b", project_dir=edited), log=lambda _: None)
    assert before["data_version"] == after["data_version"] and before["holdout_hash"] == after["holdout_hash"]
    assert before["model_code_digest"] != after["model_code_digest"]
    assert before["fingerprint"] != after["fingerprint"]


def test_a_project_s_own_train_function_is_used_when_it_has_one(first_file, tmp_path):
    snapshot = tmp_path / "snapshot.parquet"
    first_file.to_parquet(snapshot, index=False)
    custom = tmp_path / "custom"
    shutil.copytree(DIABETES.folder, custom)
    (custom / "model.py").write_text(
        "from sklearn.dummy import DummyRegressor\n\n\n"
        "def build_model(params):\n    raise AssertionError('train() is used instead')\n\n\n"
        "def train(frame, params):\n"
        "    return DummyRegressor(strategy='median').fit(frame.drop(columns=['progression']), frame['progression'])\n"
    )
    result = train.train(extras(snapshot, tmp_path / "out", project_dir=custom), log=lambda _: None)
    assert result["model_kind"] == "DummyRegressor"
    assert result["r2"] < 0.05  # a median predicts nothing


def test_a_model_with_untrusted_types_is_refused():
    import os

    import skops.io as sio
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    # A pipeline that would call os.system on load-and-predict: the attack a bare pickle allows.
    data = sio.dumps(make_pipeline(FunctionTransformer(func=os.system)))
    with pytest.raises(ArtifactError, match=r"untrusted types .*system"):
        load_verified_model(data, hashlib.sha256(data).hexdigest())


def test_train_py_imports_only_the_standalone_project_modules_it_ships_with():
    code = (
        "import sys, runpy; sys.argv=['x']; import importlib.util as u; "
        f"spec=u.spec_from_file_location('train', {str(train.__file__)!r}); m=u.module_from_spec(spec); "
        "spec.loader.exec_module(m); "
        "print(sorted(k for k in sys.modules if k.startswith(('mlops_assets','dagster','pydantic'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str(
        [
            "mlops_assets",
            "mlops_assets.core",
            "mlops_assets.core.pipes_transport",
            "mlops_assets.project",
            "mlops_assets.project.code",
            "mlops_assets.project.environment",
            "mlops_assets.project.fitting",
            "mlops_assets.project.metrics",
            "mlops_assets.project.package",
            "mlops_assets.project.snapshot",
        ]
    )


def test_too_little_data_fails_with_the_counts(first_file, tmp_path):
    snapshot = tmp_path / "tiny.parquet"
    first_file.head(2).to_parquet(snapshot, index=False)
    with pytest.raises(ValueError, match="need at least 2 of each"):
        train.train(extras(snapshot, tmp_path), log=lambda _: None)


def test_a_split_that_leaves_one_class_on_a_side_fails_naming_the_target_column(tmp_path):
    """Two classes in the data, but the holdout drew rows of one: the trainer says which side and
    which column instead of failing in a metric."""
    frame = pd.DataFrame({"x": range(40), "label": ["yes"] * 39 + ["no"]})
    mask = train.holdout_mask(frame, ["x", "label"], 25)
    assert frame.loc[mask, "label"].nunique() == 1 and frame.loc[~mask, "label"].nunique() == 2
    snapshot = tmp_path / "snapshot.parquet"
    frame.to_parquet(snapshot)
    overrides = {"task": "binary", "features": ["x"], "target": "label", "holdout_percent": 25}
    with pytest.raises(
        ValueError, match=r"target column label: one class \(yes\) in the holdout \(\d+ rows\)"
    ):
        train.train(extras(snapshot, tmp_path / "out", **overrides))
