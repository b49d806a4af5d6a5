"""train.py's pure parts: known metrics on the fixed split, a holdout that never moves, fingerprints."""

import hashlib
import subprocess
import sys

import pandas as pd
import pytest

from mlops_assets.ingest.seed import diabetes_frame, split_seed
from mlops_assets.serving.artifact import ArtifactError, load_verified_model
from mlops_assets.training import train

pytestmark = pytest.mark.data  # `make data-test`: the sample data's own tests


@pytest.fixture(scope="module")
def first_file() -> pd.DataFrame:
    return split_seed(diabetes_frame())[0]


def test_ridge_metrics_on_the_fixed_holdout_are_the_known_numbers(first_file):
    mask = train.holdout_mask(first_file, 20)
    assert (len(first_file), int(mask.sum())) == (331, 54)
    metrics = train.score(train.fit(first_file[~mask], alpha=0.5), first_file[mask])
    assert metrics == pytest.approx(
        {"mse": 2622.88234, "rmse": 51.21408, "r2": 0.564875, "mae": 40.333082}, rel=1e-5
    )


def test_old_rows_keep_their_side_when_new_rows_arrive(first_file):
    everything = diabetes_frame()
    before = train.holdout_mask(first_file, 20)
    after = train.holdout_mask(everything, 20)[: len(first_file)]
    assert (before == after).all()
    shuffled = first_file.sample(frac=1.0, random_state=1)
    assert (train.holdout_mask(shuffled, 20) == before[shuffled.index]).all()


def test_holdout_hash_changes_with_the_holdout_only(first_file):
    assert train.holdout_hash(first_file, 20) == train.holdout_hash(first_file.iloc[::-1], 20)
    assert train.holdout_hash(first_file, 20) != train.holdout_hash(diabetes_frame(), 20)


def test_fingerprint_is_keyed_on_data_holdout_code_and_config():
    base = train.fingerprint("d1", "h1", "c1", "k1")
    assert base == train.fingerprint("d1", "h1", "c1", "k1")
    assert (
        len(
            {
                base,
                *(
                    train.fingerprint(*v)
                    for v in [
                        ("d2", "h1", "c1", "k1"),
                        ("d1", "h2", "c1", "k1"),
                        ("d1", "h1", "c2", "k1"),
                        ("d1", "h1", "c1", "k2"),
                    ]
                ),
            }
        )
        == 5
    )
    assert train.config_hash(0.5, 20) != train.config_hash(1.0, 20)


def test_train_writes_a_verifiable_skops_artifact(first_file, tmp_path):
    snapshot = tmp_path / "snapshot.parquet"
    first_file.to_parquet(snapshot, index=False)
    result = train.train(
        {
            "snapshot_uri": snapshot.as_uri(),
            "data_version": "abc",
            "output_uri": (tmp_path / "out").as_uri(),
            "alpha": 0.5,
            "holdout_percent": 20,
        },
        log=lambda _: None,
    )
    artifact = (tmp_path / "out" / result["fingerprint"] / "model.skops").read_bytes()
    assert result["artifact_sha256"] == hashlib.sha256(artifact).hexdigest()
    model = load_verified_model(artifact, result["artifact_sha256"])
    assert result["mse"] == pytest.approx(2622.88234, rel=1e-5)
    assert model.predict(first_file[train.FEATURES].to_numpy()[:2]).shape == (2,)
    with pytest.raises(ArtifactError, match="does not match"):
        load_verified_model(artifact, "0" * 64)


def test_a_model_with_untrusted_types_is_refused():
    import os

    import skops.io as sio
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer

    # A pipeline that would call os.system on load-and-predict: the attack a bare pickle allows.
    data = sio.dumps(make_pipeline(FunctionTransformer(func=os.system)))
    with pytest.raises(ArtifactError, match=r"untrusted types .*system"):
        load_verified_model(data, hashlib.sha256(data).hexdigest())


def test_train_py_imports_nothing_of_the_project():
    code = (
        "import sys, runpy; sys.argv=['x']; import importlib.util as u; "
        f"spec=u.spec_from_file_location('train', {str(train.__file__)!r}); m=u.module_from_spec(spec); "
        "spec.loader.exec_module(m); print(sorted(k for k in sys.modules if k.startswith(('mlops_assets','dagster'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_too_little_data_fails_with_the_counts(first_file, tmp_path):
    snapshot = tmp_path / "tiny.parquet"
    first_file.head(2).to_parquet(snapshot, index=False)
    with pytest.raises(ValueError, match="need at least 2 of each"):
        train.train(
            {
                "snapshot_uri": snapshot.as_uri(),
                "data_version": "x",
                "output_uri": tmp_path.as_uri(),
                "alpha": 1,
                "holdout_percent": 20,
            },
            log=lambda _: None,
        )
