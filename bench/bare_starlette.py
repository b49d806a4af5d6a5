"""The reference: the same model behind the fastest honest bare Starlette endpoint.

One ``Route``; the body parsed with orjson; numpy; the answer written with orjson. No auth,
validation, metrics or request log. A StandardScaler into a linear regressor is folded into one
affine map by hand, as a user chasing speed would; any other regressor calls ``predict``; a
classifier calls ``predict_proba`` and answers the likeliest class's label with the probabilities.
Rows go in as a float matrix, or as a pandas frame when the model was fitted on named columns
(categories as pandas Categorical where the model splits on them natively: BENCH_CATEGORIES, the
spec's ``native_categories`` as JSON). Served by uvicorn (uvloop + httptools). BENCH_MODEL: a
joblib file of the fitted model; BENCH_LIBRARY_PATH: where the model's own library is (LightGBM).
"""

import json
import os
import sys
from collections.abc import Callable

import joblib
import numpy as np
import orjson
import pandas as pd
from sklearn.base import is_classifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

NUMPY = orjson.OPT_SERIALIZE_NUMPY


def folded(model) -> tuple[np.ndarray, float] | None:
    """``(w, b)`` with ``model.predict(X) == X @ w + b``, for StandardScaler into a linear regressor."""
    if not isinstance(model, Pipeline) or len(model.steps) != 2 or is_classifier(model):
        return None
    scaler, linear = model.steps[0][1], model.steps[1][1]
    if not isinstance(scaler, StandardScaler) or not hasattr(linear, "coef_"):
        return None
    mean = scaler.mean_ if scaler.with_mean else 0.0
    scale = scaler.scale_ if scaler.with_std else 1.0
    weights = np.ravel(linear.coef_) / scale
    return weights, float(np.ravel(linear.intercept_)[0] - np.dot(mean, weights))


def answerer(model, categories: dict[str, list[str]] | None = None) -> Callable[[list], dict]:
    """The answer to a request's rows (its "data"), as this endpoint computes it."""
    affine = folded(model)
    if affine is not None:
        weights, bias = affine
        return lambda data: {"result": np.asarray(data, dtype=np.float64) @ weights + bias}
    names = getattr(model, "feature_names_in_", None)

    def frame(data: list):
        # A model fitted on named columns (a ColumnTransformer selecting by name) needs a frame.
        if names is None:
            return np.asarray(data, dtype=np.float64)
        rows = pd.DataFrame(data, columns=list(names))
        for name, allowed in (categories or {}).items():
            rows[name] = pd.Categorical(rows[name], categories=allowed)
        return rows

    if is_classifier(model):
        classes = model.classes_

        def probabilities(data: list) -> dict:
            found = model.predict_proba(frame(data))
            return {"result": classes[found.argmax(axis=1)], "probabilities": found}

        return probabilities
    return lambda data: {"result": model.predict(frame(data))}


def endpoint(model, categories: dict[str, list[str]] | None = None):
    answer = answerer(model, categories)

    async def score(request: Request) -> Response:
        body = orjson.dumps(answer(orjson.loads(await request.body())["data"]), option=NUMPY)
        return Response(body, media_type="application/json")

    return score


def make_app(model, categories: dict[str, list[str]] | None = None) -> Starlette:
    return Starlette(routes=[Route("/score", endpoint(model, categories), methods=["POST"])])


CATEGORIES = json.loads(os.environ.get("BENCH_CATEGORIES") or "{}")
sys.path.extend(path for path in os.environ.get("BENCH_LIBRARY_PATH", "").split(os.pathsep) if path)
app = make_app(joblib.load(os.environ["BENCH_MODEL"]), CATEGORIES) if "BENCH_MODEL" in os.environ else None
