"""Azure ML entry script: ``init()`` once, then ``run(raw_data)`` per request.

Request ``{"data": [[10 numbers], ...]}``, response ``{"result": [numbers, ...]}``; a request the
model cannot score gets ``{"error": "..."}``. Runs unchanged in Azure ML's inference server
(``azmlinfsrv --entry_script score.py``) and managed endpoints, with ``artifact.py`` beside it.
Imports only numpy, scikit-learn (through skops), skops and the standard library.
"""

import json
import os

try:
    from mlops_assets.serving.artifact import (
        LoadedModel,
        PayloadError,
        load_release,
        predict_checked,
        rows_from_payload,
    )
except ImportError:  # deployed as a folder (Azure ML code configuration): artifact.py sits beside
    from artifact import LoadedModel, PayloadError, load_release, predict_checked, rows_from_payload

MAX_ROWS = 10_000
model: LoadedModel | None = None


def init() -> None:
    global model
    model = load_release(os.environ.get("AZUREML_MODEL_DIR", "."))
    print(f"loaded {model.name} version {model.version} from {model.source}")


def run(raw_data: str | bytes | dict) -> dict:
    if model is None:
        return {"error": "model not loaded: init() was not called or failed"}
    try:
        payload = json.loads(raw_data) if isinstance(raw_data, str | bytes) else raw_data
        rows = rows_from_payload(payload, len(model.features), MAX_ROWS)
        return {"result": predict_checked(model, rows).tolist()}
    except PayloadError as exc:
        return {"error": str(exc)}
    except ValueError as exc:
        return {"error": f"body is not valid JSON ({exc})"}
