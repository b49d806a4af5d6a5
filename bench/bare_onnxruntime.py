"""The same compiled graph behind a bare Starlette endpoint: onnxruntime with no checks around it.

One ``Route``; the body parsed with orjson; each request's rows fed to the graph as registration
compiled it (one float matrix, the same with each category as its code, or one input per feature
with categories as text); the answer
written with orjson. No auth, validation, metrics or request log; one onnxruntime thread per
worker, as ours. Served by uvicorn (uvloop + httptools). BENCH_GRAPH: the release's ``model.onnx``;
BENCH_MANIFEST: its ``manifest.json`` (the ``compiled`` block says how the graph is fed).
"""

import json
import os
from pathlib import Path

import numpy as np
import onnxruntime as ort
import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.bare_starlette import NUMPY


def answerer(graph: bytes, manifest: dict):
    compiled = manifest["compiled"]
    features = manifest["features"]
    numbers = np.dtype(compiled["numbers"])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
    text = {i.name for i in session.get_inputs() if i.type == "tensor(string)"}
    classifier = len(session.get_outputs()) > 1

    codes = [
        dict(zip(compiled["codes"][name], range(len(compiled["codes"][name])), strict=True))
        if name in compiled.get("codes", {})
        else None
        for name in features
    ]

    def feed(data: list) -> dict:
        rows = [[row.get(name) for name in features] for row in data] if isinstance(data[0], dict) else data
        if compiled["inputs"] == "matrix":
            return {"features": np.asarray(rows, dtype=numbers)}
        if compiled["inputs"] == "coded":
            return {
                "features": np.asarray(
                    [
                        [
                            np.nan if v is None else v if code is None else code.get(v, np.nan)
                            for v, code in zip(row, codes, strict=True)
                        ]
                        for row in rows
                    ],
                    dtype=numbers,
                )
            }
        columns = list(zip(*rows, strict=True))
        return {
            name: (
                np.asarray(["" if v is None else v for v in column], dtype=object)
                if name in text
                else np.asarray([np.nan if v is None else v for v in column], dtype=numbers)
            ).reshape(-1, 1)
            for name, column in zip(features, columns, strict=True)
        }

    def answer(data: list) -> dict:
        found = session.run(None, feed(data))
        if classifier:
            return {"result": found[0], "probabilities": found[1]}
        return {"result": found[0].reshape(-1)}

    return answer


def make_app(graph: bytes, manifest: dict) -> Starlette:
    answer = answerer(graph, manifest)

    async def score(request: Request) -> Response:
        body = orjson.dumps(answer(orjson.loads(await request.body())["data"]), option=NUMPY)
        return Response(body, media_type="application/json")

    return Starlette(routes=[Route("/score", score, methods=["POST"])])


app = (
    make_app(
        Path(os.environ["BENCH_GRAPH"]).read_bytes(),
        json.loads(Path(os.environ["BENCH_MANIFEST"]).read_text()),
    )
    if "BENCH_GRAPH" in os.environ
    else None
)
