"""Azure ML entry script: ``init()`` once, then ``run(raw_data)`` per request.

Request ``{"data": [[values in the spec's feature order], ...]}`` or ``{"data": [{"feature":
value}, ...]}``, response ``{"result": [...]}`` (and ``"probabilities"`` for a classifier); a
request the model cannot score gets ``{"error": "..."}``. Runs unchanged in Azure ML's inference
server (``azmlinfsrv --entry_script score.py``) and managed endpoints, with the modules of
``CODE_FOLDER`` and the project's ``serving-spec.json`` beside it (without the spec: every feature
a number). Imports only numpy, pandas, scikit-learn (through skops), skops and the standard library.
"""

import json
import os
from pathlib import Path

import numpy as np

try:
    from mlops_assets.serving.artifact import LoadedModel, load_release, score_rows
    from mlops_assets.serving.features import SPEC_NAME, PayloadError, ServingSpec, rows_from_payload
except ImportError:  # deployed as a folder (Azure ML code configuration): the modules sit beside
    from artifact import LoadedModel, load_release, score_rows
    from features import SPEC_NAME, PayloadError, ServingSpec, rows_from_payload

MAX_ROWS = 10_000
# An Azure ML code folder: each file beside this one, by its place in the package.
CODE_FOLDER = {
    "score.py": "serving/score.py",
    "artifact.py": "serving/artifact.py",
    "features.py": "serving/features.py",
    "rules.py": "project/rules.py",
}
model: LoadedModel | None = None


def init() -> None:
    global model
    spec_file = Path(__file__).with_name(SPEC_NAME)
    spec = ServingSpec.load(spec_file) if spec_file.exists() else None
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
