"""Fit the diabetes model: a standalone Dagster Pipes script.

Runs unchanged as a local subprocess or as an Azure ML command job, so it imports only numpy,
pandas, scikit-learn, skops, fsspec and dagster-pipes (on AML also adlfs, azure-storage-blob
and azure-identity) -- never the project's Dagster code.

Extras (from the orchestrator): ``snapshot_uri``, ``data_version``, ``output_uri`` (a folder URL),
``alpha``, ``holdout_percent``.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge
from sklearn.metrics import mean_absolute_error, mean_squared_error, r2_score
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

FEATURES = ["age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6"]
TARGET = "target"
ARTIFACT_NAME = "model.skops"
MODEL_KIND = "StandardScaler+Ridge"


def row_digests(frame: pd.DataFrame) -> list[bytes]:
    """A digest of each row's values (features and target), independent of position and file."""
    values = np.ascontiguousarray(frame[[*FEATURES, TARGET]].to_numpy(dtype="<f8"))
    return [hashlib.blake2b(row.tobytes(), digest_size=8).digest() for row in values]


def holdout_mask(frame: pd.DataFrame, holdout_percent: int) -> np.ndarray:
    """True for holdout rows: chosen by content, so a row never changes side between retrains."""
    buckets = [int.from_bytes(d, "big") % 100 for d in row_digests(frame)]
    return np.asarray(buckets) < holdout_percent


def holdout_hash(frame: pd.DataFrame, holdout_percent: int) -> str:
    mask = holdout_mask(frame, holdout_percent)
    digests = sorted(d for d, held in zip(row_digests(frame), mask, strict=True) if held)
    return hashlib.sha256(b"".join(digests)).hexdigest()[:16]


def fit(frame: pd.DataFrame, alpha: float) -> Pipeline:
    model = make_pipeline(StandardScaler(), Ridge(alpha=alpha))
    return model.fit(frame[FEATURES].to_numpy(dtype="float64"), frame[TARGET].to_numpy(dtype="float64"))


def score(model: Pipeline, frame: pd.DataFrame) -> dict[str, float]:
    actual = frame[TARGET].to_numpy(dtype="float64")
    predicted = model.predict(frame[FEATURES].to_numpy(dtype="float64"))
    mse = float(mean_squared_error(actual, predicted))
    return {
        "mse": mse,
        "rmse": float(np.sqrt(mse)),
        "r2": float(r2_score(actual, predicted)),
        "mae": float(mean_absolute_error(actual, predicted)),
    }


def config_hash(alpha: float, holdout_percent: int) -> str:
    config = {"alpha": alpha, "holdout_percent": holdout_percent, "model": MODEL_KIND}
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def code_version() -> str:
    return hashlib.sha256(Path(__file__).read_bytes()).hexdigest()[:16]


def fingerprint(data_version: str, holdout: str, code: str, config: str) -> str:
    """What makes two candidates the same model: not the artifact bytes (skops zips carry times)."""
    return hashlib.sha256(f"{data_version}|{holdout}|{code}|{config}".encode()).hexdigest()[:16]


def train(extras: dict, log=print) -> dict:
    """Train, write the artifact and return everything the orchestrator records."""
    import skops.io as sio

    alpha = float(extras["alpha"])
    holdout_percent = int(extras["holdout_percent"])
    frame = pd.read_parquet(extras["snapshot_uri"])
    mask = holdout_mask(frame, holdout_percent)
    train_rows, holdout_rows = frame[~mask], frame[mask]
    if len(train_rows) < 2 or len(holdout_rows) < 2:
        raise ValueError(
            f"{extras['snapshot_uri']}: {len(train_rows)} training and {len(holdout_rows)} holdout "
            "rows; need at least 2 of each"
        )
    log(f"fitting {MODEL_KIND} alpha={alpha} on {len(train_rows)} rows, {len(holdout_rows)} held out")
    model = fit(train_rows, alpha)
    metrics = score(model, holdout_rows)

    holdout = holdout_hash(frame, holdout_percent)
    code, config = code_version(), config_hash(alpha, holdout_percent)
    candidate = fingerprint(extras["data_version"], holdout, code, config)
    artifact = sio.dumps(model)
    artifact_uri = f"{extras['output_uri'].rstrip('/')}/{candidate}/{ARTIFACT_NAME}"
    fs, path = fsspec.core.url_to_fs(artifact_uri)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    fs.pipe_file(path, artifact)
    return {
        **metrics,
        "n_train": len(train_rows),
        "n_holdout": len(holdout_rows),
        "alpha": alpha,
        "holdout_percent": holdout_percent,
        "data_version": extras["data_version"],
        "snapshot_uri": extras["snapshot_uri"],
        "holdout_hash": holdout,
        "code_version": code,
        "config_hash": config,
        "fingerprint": candidate,
        "artifact_uri": artifact_uri,
        "artifact_sha256": hashlib.sha256(artifact).hexdigest(),
        "model_kind": MODEL_KIND,
    }


def pipes_transport() -> dict:
    """Blob storage when launched on AML (MLOPS_PIPES_ACCOUNT_URL set); else Pipes' defaults.

    On AML the job authenticates with the cluster's managed identity; a connection string in
    AZURE_STORAGE_CONNECTION_STRING (the local AML stand-in with Azurite) takes precedence.
    """
    account_url = os.environ.get("MLOPS_PIPES_ACCOUNT_URL")
    if not account_url:
        return {}
    from azure.storage.blob import BlobServiceClient
    from dagster_pipes import PipesAzureBlobStorageContextLoader, PipesAzureBlobStorageMessageWriter

    connection = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    if connection:
        client = BlobServiceClient.from_connection_string(connection)
    else:
        from azure.identity import DefaultAzureCredential

        client = BlobServiceClient(account_url, credential=DefaultAzureCredential())
    interval = float(os.environ.get("MLOPS_PIPES_INTERVAL_SECONDS", "10"))
    return {
        "context_loader": PipesAzureBlobStorageContextLoader(client=client),
        "message_writer": PipesAzureBlobStorageMessageWriter(client=client, interval=interval),
    }


def main() -> int:
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes(**pipes_transport()) as pipes:
        result = train(dict(pipes.extras), log=pipes.log.info)
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
