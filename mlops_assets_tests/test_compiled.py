"""A fitted model compiled to an ONNX graph, kept only where it answers as the model does, and served
by it: the conversion and its check (model/compiling.py), the graph at load (model/compiled.py)."""

import dataclasses
import json
import re

import numpy as np
import pandas as pd
import pytest
import skops.io as sio
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeRegressor

from mlops_assets.model.artifact import ArtifactError, sha256_hex
from mlops_assets.model.compiled import COMPILED_NAME, PROBABILITY_ATOL
from mlops_assets.model.compiling import compile_model
from mlops_assets.model.loaded import load_release, loaded_model, score_rows
from mlops_assets.model.rows import ServingSpec, rows_from_payload
from mlops_assets.model.smoke import smoke_block
from mlops_assets.project.rules import Feature

PLANS = ("basic", "standard", "premium")
TRUSTED = ("numpy.dtype", "sklearn.tree._tree.Tree")  # what a forest behind a OneHotEncoder holds
SPEC = ServingSpec(
    "forest",
    "binary",
    (
        Feature("plan", "categorical", categories=PLANS),
        Feature("tenure", "integer", 0, 240),
        Feature("charge", "numeric", 0, 500),
        Feature("paperless", "boolean"),
    ),
    target_kind="boolean",
    trusted_types=TRUSTED,
)


def _frame(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "plan": pd.Series(rng.choice(PLANS, rows), dtype=object),
            "tenure": rng.integers(0, 240, rows).astype(float),
            "charge": rng.uniform(0, 500, rows).round(2),
            "paperless": (rng.random(rows) < 0.5).astype(float),
        }
    )
    frame["churned"] = (frame["charge"] / 500 - frame["tenure"] / 240 + rng.normal(0, 0.3, rows)) > 0
    return frame


def _forest(frame: pd.DataFrame):
    columns = ColumnTransformer(
        [("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])], remainder="passthrough"
    )
    model = make_pipeline(columns, RandomForestClassifier(n_estimators=30, max_depth=8, random_state=0))
    return model.fit(frame[list(SPEC.names)], frame["churned"].to_numpy())


def _release(folder, model, spec: ServingSpec, holdout: pd.DataFrame, graph=None, block=None):
    """A model folder as a release makes it: artifact, manifest (with its smoke rows) and graph."""
    if graph is None and block is None:
        graph, block = compile_model(model, spec, holdout)
    data = sio.dumps(model)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.skops").write_bytes(data)
    manifest = {
        "model_name": spec.name,
        "version": 1,
        "artifact": "model.skops",
        "sha256": sha256_hex(data),
        "features": list(spec.names),
        "smoke": smoke_block(model, holdout, list(spec.names)),
        "compiled": block | ({"file": COMPILED_NAME} if graph is not None else {}),
    }
    if graph is not None:
        (folder / COMPILED_NAME).write_bytes(graph)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return manifest


def test_a_forest_pipeline_compiles_and_the_service_answers_with_its_graph_as_the_model_does(tmp_path):
    train, holdout = _frame(3000), _frame(500, seed=1)
    model = _forest(train)
    _release(tmp_path, model, SPEC, holdout)
    loaded = load_release(tmp_path, SPEC)
    block = json.loads((tmp_path / "manifest.json").read_text())["compiled"]
    # No imputer: the graph takes doubles, one input per feature (a category is text).
    assert (block["inputs"], block["numbers"]) == ("columns", "float64")
    assert block["checked_rows"]["holdout"] == 500 and block["checked_rows"]["drawn"] > 2000
    assert loaded.answered_by == "onnx graph"

    data = holdout[list(SPEC.names)].astype(object).to_numpy().tolist()
    served = score_rows(loaded, rows_from_payload({"data": data}, SPEC, len(data)))
    expected = model.predict_proba(holdout[list(SPEC.names)])
    assert served["result"] == model.predict(holdout[list(SPEC.names)]).tolist()
    got = np.array([[row["false"], row["true"]] for row in served["probabilities"]])
    assert np.abs(got - expected).max() <= PROBABILITY_ATOL


def test_a_row_on_a_float32_threshold_keeps_the_model_uncompiled_naming_the_row(tmp_path):
    """An imputer has no double kernel in onnxruntime, so the graph takes float32 and scales in
    float32: a row that sits on the tree's threshold once scaled in float64 (as scikit-learn
    scales it) can land on the other side of it. Rows a float32 step apart around that edge: the
    check finds the one that flips, and the model is served as fitted."""
    x = np.random.default_rng(0).uniform(0, 2000, 2000).round(1)
    model = make_pipeline(SimpleImputer(), StandardScaler(), DecisionTreeRegressor(max_depth=1))
    model.fit(pd.DataFrame({"x": x}), np.where(x > 1000.3, 100.0, 0.0))
    scaler, threshold = model[1], model[-1].tree_.threshold[0]
    edge = threshold * scaler.scale_[0] + scaler.mean_[0]
    spec = ServingSpec("edge", "regression", (Feature("x", "numeric", 0, 2000, nullable=True),))
    holdout = pd.DataFrame({"x": edge + np.arange(-300, 300) * 2e-5})

    graph, block = compile_model(model, spec, holdout)
    assert graph is None
    found = re.fullmatch(
        r"the graph \(matrix of float32\) differs from the model on row (\d+) of the holdout "
        r"\{'x': ([0-9.e-]+)\}: the model predicts (\d+), the graph (\d+)",
        block["reason"],
    )
    assert found, block["reason"]
    row, value, said, graph_said = int(found[1]), float(found[2]), float(found[3]), float(found[4])
    assert value == holdout["x"][row] and said == model.predict(holdout.iloc[[row]])[0] != graph_said
    # Released so, it is served by the model itself, the reason in its manifest.
    spec = dataclasses.replace(spec, trusted_types=TRUSTED)
    manifest = _release(tmp_path, model, spec, holdout, None, block)
    assert manifest["compiled"] == block and not (tmp_path / COMPILED_NAME).exists()
    loaded = load_release(tmp_path, spec)
    assert loaded.compiled is None and loaded.answered_by == "the model"
    answer = score_rows(loaded, rows_from_payload({"data": [[value]]}, spec, 1))
    assert list(answer["result"]) == [said]


def test_a_model_with_no_converter_is_served_as_fitted_saying_why(tmp_path):
    spec = ServingSpec(
        "custom",
        "regression",
        (Feature("a", "numeric", 0, 10), Feature("b", "numeric", 0, 10)),
        trusted_types=(*TRUSTED, "numpy.absolute"),
    )
    frame = pd.DataFrame({"a": np.linspace(0, 10, 200), "b": np.linspace(10, 0, 200)})
    model = make_pipeline(FunctionTransformer(np.absolute), RandomForestRegressor(5, random_state=0))
    model.fit(frame, frame["a"] * 2)
    graph, block = compile_model(model, spec, frame)
    assert graph is None and "no converter" in block["reason"] and "FunctionTransformer" in block["reason"]
    _release(tmp_path, model, spec, frame, None, block)
    loaded = load_release(tmp_path, spec)
    assert loaded.compiled is None and loaded.answered_by == "the model"


def test_a_tampered_graph_is_refused_at_load_by_its_digest(tmp_path):
    holdout = _frame(200, seed=1)
    _release(tmp_path, _forest(_frame(1000)), SPEC, holdout)
    graph = tmp_path / COMPILED_NAME
    graph.write_bytes(graph.read_bytes() + b"\0")
    with pytest.raises(ArtifactError, match=r"compiled graph: sha256 [0-9a-f]{64} does not match"):
        load_release(tmp_path, SPEC)
    graph.unlink()
    with pytest.raises(ArtifactError, match="the compiled graph the manifest names is missing"):
        load_release(tmp_path, SPEC)


def test_a_graph_that_answers_the_smoke_rows_otherwise_is_refused_at_load(tmp_path):
    """Another model's graph, with the manifest's digest made to match it: the load check on the
    manifest's smoke rows still refuses it."""
    holdout = _frame(200, seed=1)
    model = _forest(_frame(1000))
    manifest = _release(tmp_path, model, SPEC, holdout)
    other, _ = compile_model(
        _forest(_frame(1000, seed=7).assign(churned=lambda f: ~f["churned"])), SPEC, holdout
    )
    manifest["compiled"]["sha256"] = sha256_hex(other)
    with pytest.raises(
        ArtifactError, match=r"does not answer the manifest's smoke row \d as the model did: the model says"
    ):
        loaded_model(manifest, (tmp_path / "model.skops").read_bytes(), "v1", SPEC, other)


def test_the_graph_runs_on_one_thread_a_worker_unless_the_setting_says_more(monkeypatch):
    from mlops_assets.model.compiled import THREADS_ENV, session_options
    from mlops_assets.settings import SERVICE_ENVIRONMENT

    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert (session_options().intra_op_num_threads, session_options().inter_op_num_threads) == (1, 1)
    monkeypatch.setenv(THREADS_ENV, "3")
    assert session_options().intra_op_num_threads == 3
    assert THREADS_ENV in SERVICE_ENVIRONMENT  # a local deployment's process is given it
    monkeypatch.setenv(THREADS_ENV, "all")
    with pytest.raises(ValueError, match="MLOPS_SCORING_THREADS='all': a whole number of threads, 1 or more"):
        session_options()


def test_a_holdout_the_service_would_refuse_leaves_nothing_to_check_on_and_says_so():
    model = _forest(_frame(500))
    holdout = _frame(20, seed=1).assign(charge=lambda f: f["charge"].where(f.index != 3, 900.0))
    graph, block = compile_model(model, SPEC, holdout)
    assert graph is None
    assert block["reason"].startswith(
        "its holdout holds a row the service would refuse (row 3, feature charge: 900"
    )


def _boosted_spec(task: str) -> ServingSpec:
    features = tuple(
        dataclasses.replace(f, nullable=True) if f.name == "charge" else f for f in SPEC.features
    )
    return dataclasses.replace(
        SPEC,
        task=task,
        features=features,
        target_kind={"binary": "boolean", "multiclass": "categorical"}.get(task, "numeric"),
        trusted_types=(*TRUSTED, "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor"),
    )


# What comes before the trees, and the precision the graph then takes.
BEFORE_THE_TREES = {
    # onnxruntime has no double kernel for an imputer: float32, exact while nothing computes in it.
    "imputer": (lambda: SimpleImputer(keep_empty_features=True), "float32"),
    # float32 would send rows on a threshold the other way: the trees are written in float64
    # (model/tree_graphs.py), missing values routed by the trees as the model routes them.
    "scaler": (StandardScaler, "float64"),
}


@pytest.mark.parametrize("before", sorted(BEFORE_THE_TREES))
@pytest.mark.parametrize("task", ["binary", "multiclass", "regression"])
def test_histogram_gradient_boosting_compiles_exact_with_its_missing_values(tmp_path, task, before):
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

    frame = _frame(2000)
    frame.loc[frame.index % 17 == 0, "charge"] = np.nan
    targets = {
        "binary": frame["churned"].to_numpy().astype(float),  # as training hands a boolean target over
        "multiclass": np.select([frame["tenure"] < 60, frame["charge"].fillna(0) < 250], ["a", "b"], "c"),
        "regression": frame["charge"].fillna(250).to_numpy() / 10 + frame["tenure"].to_numpy(),
    }
    boosted = HistGradientBoostingRegressor if task == "regression" else HistGradientBoostingClassifier
    numbers_step, numbers = BEFORE_THE_TREES[before]
    columns = ColumnTransformer(
        [("plan", OneHotEncoder(handle_unknown="ignore"), ["plan"])], remainder=numbers_step()
    )
    model = make_pipeline(columns, boosted(max_iter=30, random_state=0)).fit(
        frame[list(SPEC.names)], targets[task]
    )
    spec = _boosted_spec(task)
    holdout = _frame(400, seed=1)
    holdout.loc[holdout.index % 13 == 0, "charge"] = np.nan
    graph, block = compile_model(model, spec, holdout)
    assert graph is not None, block
    assert (block["inputs"], block["numbers"]) == ("columns", numbers)
    _release(tmp_path, model, spec, holdout, graph, block)
    served = load_release(tmp_path, spec)
    assert served.answered_by == "onnx graph"
    request = holdout[list(spec.names)].head(50)
    data = request.astype(object).where(request.notna(), None).to_numpy().tolist()
    got = score_rows(served, rows_from_payload({"data": data}, spec, len(data)))["result"]
    want = model.predict(request)
    if task == "regression":
        np.testing.assert_allclose(got, want, rtol=1e-6 if numbers == "float32" else 1e-12)
    elif task == "binary":  # fitted on 0.0/1.0, answered as the spec's booleans
        assert got == [bool(v) for v in want] and set(got) == {True, False}
    else:
        assert [str(v) for v in got] == [str(v) for v in want]


def test_histogram_gradient_boosting_splitting_on_categories_is_served_as_fitted_and_says_why():
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.preprocessing import OrdinalEncoder

    frame = _frame(1500)
    columns = ColumnTransformer(
        [("plan", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1), ["plan"])],
        remainder="passthrough",
    )
    boosted = HistGradientBoostingClassifier(max_iter=20, categorical_features=[0], random_state=0)
    model = make_pipeline(columns, boosted).fit(frame[list(SPEC.names)], frame["churned"].to_numpy())
    graph, block = compile_model(model, _boosted_spec("binary"), _frame(200, seed=1))
    assert graph is None
    assert "no converter (its trees split on categories (categorical_features)" in block["reason"], block[
        "reason"
    ]


BOOSTERS_CHECK = """
import json, sys
import lightgbm, numpy as np, pandas as pd, xgboost
from mlops_assets.model.artifact import ArtifactError
from mlops_assets.model.compiled import compiled_model, first_difference
from mlops_assets.model.compiling import compile_model
from mlops_assets.model.rows import ServingSpec
from mlops_assets.project.rules import Feature

PLANS = ["basic", "standard", "premium", "legacy"]  # "legacy" is never in the data


def frame(rows, seed):
    rng = np.random.default_rng(seed)
    data = pd.DataFrame({
        "plan": pd.Categorical(rng.choice(PLANS[:3], rows), categories=PLANS),
        "tenure": rng.integers(0, 240, rows).astype(float),
        "charge": rng.uniform(0, 500, rows),
    })
    data.loc[data.index % 11 == 0, "charge"] = np.nan
    data.loc[data.index % 13 == 0, "plan"] = None
    return data


train, holdout = frame(3000, 0), frame(500, 1)
score = train["charge"].fillna(250) / 100 - train["tenure"] / 60 + (train["plan"] == "premium") * 2
targets = {
    "regression": score,
    "binary": (score > 0).to_numpy(),
    "multiclass": np.select([score < -1, score < 1], ["low", "mid"], "high"),
}
features = (
    Feature("plan", "categorical", categories=tuple(PLANS), nullable=True),
    Feature("tenure", "integer", 0, 240),
    Feature("charge", "numeric", 0, 500, nullable=True),
)
kinds = {"regression": "numeric", "binary": "boolean", "multiclass": "categorical"}
boosted = {"n_estimators": 40, "n_jobs": 1}
estimators = {
    ("lightgbm", "regression"): lambda: lightgbm.LGBMRegressor(num_leaves=15, verbose=-1, **boosted),
    ("lightgbm", "binary"): lambda: lightgbm.LGBMClassifier(num_leaves=15, verbose=-1, **boosted),
    ("lightgbm", "multiclass"): lambda: lightgbm.LGBMClassifier(num_leaves=15, verbose=-1, **boosted),
    ("xgboost", "regression"): lambda: xgboost.XGBRegressor(max_depth=4, enable_categorical=True, **boosted),
    ("xgboost", "binary"): lambda: xgboost.XGBClassifier(max_depth=4, enable_categorical=True, **boosted),
}
verdicts = {}
for (library, task), estimator in estimators.items():
    model = estimator().fit(train, targets[task])
    spec = ServingSpec("parcels", task, features, target_kind=kinds[task], categorical_dtype="category")
    graph, verdicts[f"{library} {task}"] = compile_model(model, spec, holdout)
    if (library, task) == ("lightgbm", "regression"):
        # The manifest's codes are what the graph is fed by: swapped, the answers differ; absent,
        # the graph is refused.
        block = verdicts["lightgbm regression"]
        swapped = block | {"codes": {"plan": ["premium", "standard", "basic", "legacy"]}}
        found = compiled_model(graph, swapped, spec.names, [True, False, False], "g").predict(holdout)
        verdicts["swapped codes"] = str(first_difference("regression", (model.predict(holdout),), (found,)))
        try:
            compiled_model(graph, block | {"codes": {}}, spec.names, [True, False, False], "g")
        except ArtifactError as exc:
            verdicts["no codes"] = str(exc)
zero = lightgbm.LGBMRegressor(n_estimators=5, zero_as_missing=True, verbose=-1).fit(train, score)
regression = ServingSpec("parcels", "regression", features, target_kind="numeric", categorical_dtype="category")
verdicts["zero as missing"] = compile_model(zero, regression, holdout)[1]
json.dump(verdicts, sys.stdout)
"""


@pytest.mark.slow
def test_lightgbm_and_xgboost_on_pandas_categories_compile_exact_in_their_own_environment(tmp_path):
    """Both libraries' trees written from their own dumps (model/booster_graphs.py), compiled where
    the libraries are: an environment of the wheelhouse's locked wheels. Categories coded as each
    library codes them (by the service, from the manifest's table: a swapped table answers
    otherwise, a missing one is refused), missing values and a category never seen routed as the
    trees route them; LightGBM in float64 and XGBoost in float32, as each compares."""
    import subprocess
    from pathlib import Path

    from mlops_assets.project.environment import Lock
    from mlops_assets.runner.environments import environment_python
    from mlops_assets_tests.wheels import WHEELHOUSE

    pins = (Path(__file__).parent / "wheelhouse.txt").read_text()
    lock = Lock("wheelhouse", "".join(line + "\n" for line in pins.splitlines() if not line.startswith("#")))
    python = environment_python(lock, tmp_path, str(WHEELHOUSE))
    ran = subprocess.run([str(python), "-c", BOOSTERS_CHECK], capture_output=True, text=True, timeout=300)
    assert ran.returncode == 0, ran.stderr[-3000:]
    verdicts = json.loads(ran.stdout)
    libraries_tasks = (
        "lightgbm regression",
        "lightgbm binary",
        "lightgbm multiclass",
        "xgboost regression",
        "xgboost binary",
    )
    for name in libraries_tasks:
        block = verdicts[name]
        numbers = "float64" if name.startswith("lightgbm") else "float32"
        assert (block.get("inputs"), block.get("numbers")) == ("coded", numbers), (name, block)
        assert block["codes"] == {"plan": ["basic", "standard", "premium", "legacy"]}, name
        assert block["checked_rows"]["holdout"] == 500
    assert verdicts["swapped codes"].startswith("("), verdicts["swapped codes"]  # (row, how): they differ
    assert "does not list the categories of each categorical feature (plan)" in verdicts["no codes"]
    assert "it takes zero as missing (zero_as_missing)" in verdicts["zero as missing"]["reason"]
