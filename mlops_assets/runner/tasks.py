"""What the project runner does with a project's code and fitted models, in its own process.

Every task takes and returns plain JSON values; frames and artifacts are files in the runner's
scratch folder that the orchestrator wrote or reads (it holds the storage credentials; this
process holds none). Imports nothing of Dagster, MLflow or Azure.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import pandas as pd

from mlops_assets.model.artifact import ArtifactError, load_verified_model, saved_and_loaded
from mlops_assets.model.smoke import smoke_block
from mlops_assets.project.code import MODEL_FILE, ProjectCodeError, load_module
from mlops_assets.project.loader import load_project
from mlops_assets.project.metrics import evaluate_predicting
from mlops_assets.project.spec import ProjectError

# Refusals whose message names the file, the rule and the fix: their traceback would only bury it.
EXPLAINED = (ArtifactError, ProjectError, ProjectCodeError)

_LOADED: OrderedDict[str, Any] = OrderedDict()  # sha256 -> fitted model: a bar is asked twice
_KEEP = 4


def _model(artifact_path: str, sha256: str, trusted: list[str], source: str) -> Any:
    if sha256 not in _LOADED:
        data = Path(artifact_path).read_bytes()
        _LOADED[sha256] = load_verified_model(data, sha256, source, tuple(trusted))
        while len(_LOADED) > _KEEP:
            _LOADED.popitem(last=False)
    _LOADED.move_to_end(sha256)
    return _LOADED[sha256]


def _fitting(folder: Path) -> tuple[Any, list[str]]:
    """model.py imported, and which of build_model and train it defines (one at least)."""
    module = load_module(folder, MODEL_FILE)
    defined = [name for name in ("build_model", "train") if callable(getattr(module, name, None))]
    if not defined:
        raise ProjectCodeError(f"{folder / MODEL_FILE}: defines no function build_model() or train()")
    return module, defined


def check(project_dir: str) -> dict[str, Any]:
    """model.py imported (its build_model or train there): what the static checks cannot see."""
    return {"model_functions": _fitting(Path(project_dir))[1]}


def build(project_dir: str, params: dict, frame_path: str | None = None) -> dict[str, Any]:
    """build_model(params), unfitted, as people read it; then, given the seed data typed as
    training types it (``frame_path``), the model fitted on it as the trainer fits it and taken
    through the round trip every stage makes: what would fail at the first retrain or release
    fails here, naming the fix."""
    folder = Path(project_dir)
    module, defined = _fitting(folder)
    if "build_model" in defined:
        estimator = repr(module.build_model(dict(params)))
    else:
        estimator = "none to show: model.py fits it in train(frame, params)"
    if frame_path is None:
        return {"estimator": estimator, "fitted": "no seed data: nothing to fit it on"}
    fitted = fitted_round_trip(load_project(folder), params, pd.read_parquet(frame_path))
    return {"estimator": estimator, "fitted": fitted}


def fitted_round_trip(project, params: dict, frame: pd.DataFrame) -> str:
    """The project's model fitted on ``frame`` (its seed data, typed as training types it), saved
    with skops and loaded back trusting only the spec's ``[artifact] trusted_types``, its
    predictions the same after; what happened, in words."""
    from mlops_assets.project.code import SPEC_FILE
    from mlops_assets.project.fitting import as_model_input, fit

    spec = project.spec
    features = list(spec.feature_names)
    frame = as_model_input(frame, spec.native_categories)
    model = fit(project.folder, frame, features, spec.target.name, dict(params))
    loaded = saved_and_loaded(model, spec.artifact.trusted_types, str(project.folder / SPEC_FILE))
    before, after = model.predict(frame[features]), loaded.predict(frame[features])
    if not pd.Series(before).equals(pd.Series(after)):
        raise ProjectCodeError(
            f"{project.folder}: the fitted model predicts differently once skops saved and loaded it "
            "(a custom class whose state skops cannot save?): every stage after training loads it so"
        )
    return f"fitted on the seed's {len(frame)} rows, saved and loaded back as every stage loads it"


def seed(project_dir: str, out_path: str) -> dict[str, Any]:
    """seed.py's seed_frame(), exactly the spec's columns, written to ``out_path`` (parquet)."""
    frame = load_project(Path(project_dir)).seed_frame()
    frame.to_parquet(out_path, index=False)
    return {"rows": len(frame)}


def evaluate(
    artifact: dict,
    task: str,
    features: list[str],
    target: str,
    frame_path: str,
    categories: dict[str, list[str]] | None = None,
    predictions: int = 0,
) -> dict[str, Any]:
    """The task's metrics of the artifact on the frame (the holdout, as stored), its rows, and the
    predictions and targets of its first ``predictions`` rows (what the plots show)."""
    from mlops_assets.project.fitting import as_model_input

    frame = as_model_input(pd.read_parquet(frame_path), categories)
    actual = frame[target].to_numpy()
    metrics, predicted = evaluate_predicting(task, _model(**artifact), frame[list(features)], actual)
    result: dict[str, Any] = {"metrics": metrics, "rows": len(frame)}
    if predictions:
        result["predictions"] = predicted[:predictions].tolist()
        result["actual"] = actual[:predictions].tolist()
    return result


def smoke(artifact: dict, features: list[str], frame_path: str) -> dict[str, Any]:
    """The manifest's smoke block: a few of the frame's rows and the artifact's own predictions."""
    return smoke_block(_model(**artifact), pd.read_parquet(frame_path), features)


def compile_graph(artifact: dict, serving_spec: dict, frame_path: str, out_path: str) -> dict[str, Any]:
    """The artifact compiled and checked on the frame (the holdout, as stored) and on rows drawn
    from the spec: the manifest's ``compiled`` block, the graph written to ``out_path`` if it
    compiled (``model/compiling.py``)."""
    from mlops_assets.model.compiling import compile_model
    from mlops_assets.model.rows import ServingSpec

    spec = ServingSpec.from_dict(serving_spec)
    graph, block = compile_model(_model(**artifact), spec, pd.read_parquet(frame_path))
    if graph is not None:
        Path(out_path).write_bytes(graph)
    return block


def verify(artifact: dict) -> dict[str, Any]:
    """The artifact's sha256, its types and that it loads."""
    return {"model_class": type(_model(**artifact)).__name__}


def score_file(
    artifact: dict,
    manifest: dict,
    serving_spec: dict | None,
    input_path: str,
    output_path: str,
    refused_path: str,
    graph_path: str | None = None,
) -> dict[str, Any]:
    """batch_predictions' scoring of one local file, as the AML job does it (with the version's
    compiled graph at ``graph_path``, if it has one)."""
    import fsspec

    from mlops_assets.model.batch_scoring import score_file as score
    from mlops_assets.model.loaded import loaded_model
    from mlops_assets.model.rows import ServingSpec

    spec = ServingSpec.from_dict(serving_spec) if serving_spec else None
    data = Path(artifact["artifact_path"]).read_bytes()
    graph = Path(graph_path).read_bytes() if graph_path else None
    model = loaded_model(manifest, data, artifact["source"], spec, graph)
    result = score(fsspec.filesystem("file"), input_path, output_path, refused_path, model)
    return result.figures()


TASKS = {
    task.__name__: task for task in (check, build, seed, evaluate, smoke, compile_graph, verify, score_file)
}
