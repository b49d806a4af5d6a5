"""Fit a model project's estimator: a standalone Dagster Pipes script.

Runs unchanged as a local subprocess or as an Azure ML command job, so it imports only numpy,
pandas, scikit-learn, skops, fsspec, dagster-pipes and the standalone modules of
``mlops_assets.project`` that travel with it (code, package, metrics; on AML also adlfs, azure-storage-blob and
azure-identity) -- never the project's Dagster code.

Extras (from the orchestrator): ``snapshot_uri`` (the training data's manifest: the script reads
its files itself), ``data_version``, ``output_uri`` (a folder URL),
``project_dir`` (the model project folder as the script sees it), ``task``, ``features``,
``target``, ``target_kind``, ``params``, ``holdout_percent``; ``categories`` (the spec's
``native_categories``) where the model takes pandas Categorical columns.
"""

from __future__ import annotations

import hashlib
import io
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import fsspec
import numpy as np
import pandas as pd

from mlops_assets.core.pipes_transport import pipes_transport
from mlops_assets.project.code import MODEL_FILE, SPEC_FILE, file_digest
from mlops_assets.project.fitting import as_model_input, fit
from mlops_assets.project.metrics import evaluate, too_few_classes
from mlops_assets.project.package import package_digest
from mlops_assets.project.snapshot import snapshot_frame

ARTIFACT_NAME = "model.skops"
HOLDOUT_NAME = "holdout.parquet"  # the holdout rows as stored, beside the artifact: the evaluation's


def row_digests(frame: pd.DataFrame, columns: Sequence[str]) -> np.ndarray:
    """A digest of each row's values, independent of position and file."""
    return pd.util.hash_pandas_object(frame[list(columns)], index=False).to_numpy(dtype=np.uint64)


def holdout_mask(frame: pd.DataFrame, columns: Sequence[str], holdout_percent: int) -> np.ndarray:
    """True for holdout rows: chosen by content, so a row never changes side between retrains."""
    return row_digests(frame, columns) % np.uint64(100) < np.uint64(holdout_percent)


def holdout_hash(frame: pd.DataFrame, columns: Sequence[str], holdout_percent: int) -> str:
    digests = row_digests(frame, columns)
    held = np.sort(digests[holdout_mask(frame, columns, holdout_percent)])
    return hashlib.sha256(held.astype("<u8").tobytes()).hexdigest()[:16]


def read_snapshot(uri: str) -> pd.DataFrame:
    """The rows of the training snapshot whose manifest is at ``uri``, read from its files here
    (a file, a folder of this machine, Blob Storage from an Azure ML job); a parquet file: those rows."""
    if not uri.endswith(".json"):
        return pd.read_parquet(uri)
    with fsspec.open(uri, "rb") as handle:
        manifest = json.load(handle)
    return snapshot_frame(manifest, lambda file: fsspec.open(file, "rb"))


def trainer_version() -> str:
    return file_digest(Path(__file__))


def fingerprint(data_version: str, holdout: str, trainer: str, model_code: str, spec: str) -> str:
    """What makes two candidates the same model: not the artifact bytes (skops zips carry times)."""
    return hashlib.sha256(f"{data_version}|{holdout}|{trainer}|{model_code}|{spec}".encode()).hexdigest()[:16]


def train(extras: dict, log=print) -> dict:
    """Train, write the artifact and return everything the orchestrator records."""
    import skops.io as sio

    project_dir = Path(extras["project_dir"])
    features, target = list(extras["features"]), str(extras["target"])
    params, holdout_percent = dict(extras["params"]), int(extras["holdout_percent"])
    frame = read_snapshot(extras["snapshot_uri"])
    mask = holdout_mask(frame, [*features, target], holdout_percent)
    train_rows, holdout_rows = frame[~mask], frame[mask]
    if len(train_rows) < 2 or len(holdout_rows) < 2:
        raise ValueError(
            f"{extras['snapshot_uri']}: {len(train_rows)} training and {len(holdout_rows)} holdout "
            "rows; need at least 2 of each"
        )
    for rows, part in (("the training rows", train_rows), ("the holdout", holdout_rows)):
        problem = too_few_classes(extras["task"], target, part[target], rows, extras.get("target_kind", ""))
        if problem is not None:
            raise ValueError(f"{extras['snapshot_uri']}: {problem}")
    log(
        f"fitting {project_dir / MODEL_FILE} {params} on {len(train_rows)} rows, {len(holdout_rows)} held out"
    )
    categories = extras.get("categories")  # after the split: the holdout is chosen on the rows as stored
    model = fit(project_dir, as_model_input(train_rows, categories), features, target, params)
    held = as_model_input(holdout_rows, categories)
    metrics = evaluate(extras["task"], model, held[features], held[target].to_numpy())

    holdout = holdout_hash(frame, [*features, target], holdout_percent)
    trainer = trainer_version()
    model_code = package_digest(project_dir)
    spec = file_digest(project_dir / SPEC_FILE)
    candidate = fingerprint(extras["data_version"], holdout, trainer, model_code, spec)
    artifact = sio.dumps(model)
    artifact_uri = f"{extras['output_uri'].rstrip('/')}/{candidate}/{ARTIFACT_NAME}"
    fs, path = fsspec.core.url_to_fs(artifact_uri)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, artifact)
    # Written here, where the rows are: the orchestrator evaluates on this file, never the snapshot.
    holdout_uri = f"{extras['output_uri'].rstrip('/')}/{candidate}/{HOLDOUT_NAME}"
    buffer = io.BytesIO()
    holdout_rows.to_parquet(buffer, index=False)
    fs.pipe_file(f"{path.rsplit('/', 1)[0]}/{HOLDOUT_NAME}", buffer.getvalue())
    return {
        **metrics,
        "metric_names": ",".join(metrics),
        "n_train": len(train_rows),
        "n_holdout": len(holdout_rows),
        "holdout_percent": holdout_percent,
        "data_version": extras["data_version"],
        "snapshot_uri": extras["snapshot_uri"],
        "holdout_hash": holdout,
        "code_version": trainer,
        "model_code_digest": model_code,
        "spec_digest": spec,
        "fingerprint": candidate,
        "artifact_uri": artifact_uri,
        "holdout_uri": holdout_uri,
        "artifact_sha256": hashlib.sha256(artifact).hexdigest(),
        "model_kind": _describe(model),
    }


def _describe(model: Any) -> str:
    """The estimator's class and, for a pipeline, its steps' classes: for people reading tags."""
    steps = getattr(model, "steps", None)
    if steps:
        return f"{type(model).__name__}({', '.join(type(step).__name__ for _, step in steps)})"
    return type(model).__name__


FAILURE = "failure"  # the custom Pipes message that carries why training failed


def failure_line(exc: BaseException, project_dir: Path) -> str:
    """The exception's last line, and where in the project's code it was raised if it was there."""
    import traceback

    said = traceback.format_exception_only(exc)[-1].strip()
    inside = [
        frame
        for frame in traceback.extract_tb(exc.__traceback__)
        if Path(frame.filename).resolve().is_relative_to(project_dir.resolve())
    ]
    if inside:
        return f"{said} (raised at {inside[-1].filename}:{inside[-1].lineno}, in {inside[-1].name})"
    return said


def main() -> int:
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes(**pipes_transport()) as pipes:
        try:
            result = train(dict(pipes.extras), log=pipes.log.info)
        except Exception as exc:  # the step's failure says it in one line; the traceback is in its log
            pipes.report_custom_message({FAILURE: failure_line(exc, Path(pipes.extras["project_dir"]))})
            raise
        pipes.report_asset_materialization(
            metadata={key: {"raw_value": value, "type": _pipes_type(value)} for key, value in result.items()},
            data_version=result["fingerprint"],
        )
    return 0


def _pipes_type(value: object) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    return "text"


if __name__ == "__main__":
    sys.exit(main())
