"""The ceiling: the same model behind a bare Starlette endpoint, as a user would first write it.

No auth, no validation, no metrics, no request log. Served by uvicorn (uvloop + httptools).
BENCH_MODEL points at a joblib file of the fitted pipeline. With BENCH_RELEASE set instead, it
predicts through the same affine fast path our service uses (``load_release``), which isolates
what our auth, validation, metrics and request log cost.
"""

import os

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

if os.environ.get("BENCH_RELEASE"):
    from mlops_assets.serving.artifact import load_release

    predict = load_release(os.environ["BENCH_RELEASE"]).predict
else:
    import joblib

    predict = joblib.load(os.environ["BENCH_MODEL"]).predict


async def score(request: Request) -> JSONResponse:
    payload = await request.json()
    return JSONResponse({"result": predict(np.asarray(payload["data"], dtype=float)).tolist()})


app = Starlette(routes=[Route("/score", score, methods=["POST"])])
