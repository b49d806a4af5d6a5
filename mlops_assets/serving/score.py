"""Azure ML entry script: ``init()`` once, then ``run(raw_data)`` per request.

Request ``{"data": [[values in the spec's feature order], ...]}`` or ``{"data": [{"feature":
value}, ...]}``, response ``{"result": [...]}`` (and ``"probabilities"`` for a classifier); a
request the model cannot score gets ``{"error": "..."}``. Runs unchanged in Azure ML's inference
server (``azmlinfsrv --entry_script score.py``) and managed endpoints, from a code folder that
holds it and the model library (``release/aml_code.py``), with the project's ``serving-spec.json``
beside ``model/rows.py`` (without the spec: every feature a number). Imports only numpy, pandas,
scikit-learn (through skops), skops, the standard library and the model library.
"""

import json
import os

import numpy as np

from mlops_assets.model.loaded import LoadedModel, load_release, score_rows
from mlops_assets.model.rows import PayloadError, ServingSpec, packaged_spec_path, rows_from_payload

MAX_ROWS = 10_000
model: LoadedModel | None = None


def init() -> None:
    global model
    spec_file = packaged_spec_path()
    spec = ServingSpec.load(spec_file) if spec_file is not None else None
    model = load_release(os.environ.get("AZUREML_MODEL_DIR", "."), spec)
    print(f"loaded {model.name} version {model.version} from {model.source}")


def run(raw_data: str | bytes | dict) -> dict:
    if model is None:
        return {"error": "model not loaded: init() was not called or failed"}
    try:
        payload = json.loads(raw_data) if isinstance(raw_data, str | bytes) else raw_data
        rows = rows_from_payload(payload, model.serving_spec, MAX_ROWS)
        return {k: v.tolist() if isinstance(v, np.ndarray) else v for k, v in score_rows(model, rows).items()}
    except PayloadError as exc:
        return {"error": str(exc)}
    except ValueError as exc:
        return {"error": f"body is not valid JSON ({exc})"}
