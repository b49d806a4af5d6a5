"""The reference: the same model behind the fastest honest bare Starlette endpoint.

One ``Route``; the body parsed with orjson; numpy; the answer written with orjson. No auth,
validation, metrics or request log. A StandardScaler into a linear regressor is folded into one
affine map by hand, as a user chasing speed would; any other regressor calls ``predict``; a
classifier calls ``predict_proba`` and answers the likeliest class's label with the probabilities.
Rows go in as a float matrix, or as a pandas frame when the model was fitted on named columns. Served by uvicorn (uvloop + httptools). BENCH_MODEL: a joblib file of the fitted model.
"""

import os

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


def endpoint(model):
    affine = folded(model)
    if affine is not None:
        weights, bias = affine

        async def score_affine(request: Request) -> Response:
            rows = np.asarray(orjson.loads(await request.body())["data"], dtype=np.float64)
            return Response(
                orjson.dumps({"result": rows @ weights + bias}, option=NUMPY), media_type="application/json"
            )

        return score_affine
    names = getattr(model, "feature_names_in_", None)

    def frame(data: list):
        # A model fitted on named columns (a ColumnTransformer selecting by name) needs a frame.
        if names is None:
            return np.asarray(data, dtype=np.float64)
        return pd.DataFrame(data, columns=list(names))

    if is_classifier(model):
        classes = model.classes_

        async def score_proba(request: Request) -> Response:
            probabilities = model.predict_proba(frame(orjson.loads(await request.body())["data"]))
            labels = classes[probabilities.argmax(axis=1)]
            body = {"result": labels, "probabilities": probabilities}
            return Response(orjson.dumps(body, option=NUMPY), media_type="application/json")

        return score_proba

    async def score_predict(request: Request) -> Response:
        predictions = model.predict(frame(orjson.loads(await request.body())["data"]))
        return Response(orjson.dumps({"result": predictions}, option=NUMPY), media_type="application/json")

    return score_predict


def make_app(model) -> Starlette:
    return Starlette(routes=[Route("/score", endpoint(model), methods=["POST"])])


app = make_app(joblib.load(os.environ["BENCH_MODEL"])) if "BENCH_MODEL" in os.environ else None
