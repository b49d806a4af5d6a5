"""A fitted model compiled to an ONNX graph at registration, and kept only if it answers as the
model does: run in the project runner (the project's environment holds the model's classes).

Each way of feeding the graph is tried in turn (one matrix of every feature where all are
numbers; for LightGBM and XGBoost, one matrix with each category as its code; else one input per
feature; numbers as float64, then float32 where the converter or
onnxruntime takes no doubles: onnxruntime has no double kernel for an imputer, nor for skl2onnx's
tree ensembles; histogram gradient boosting is written by ``tree_graphs`` in either precision,
LightGBM and XGBoost by ``booster_graphs`` in the precision each compares in, skl2onnx converts
the rest). The first graph that converts and loads is run on the holdout (its first
``HOLDOUT_ROWS``) and on rows drawn from the spec (each number at its extremes too), and compared
with the model on every row (``compiled.first_difference``): a row that float32 arithmetic sends
across a tree's threshold, say, fails it. The verdict names what happened: the graph and how it
is fed, or why the model is served as it is (no converter, a row that differs, with the row).
"""

from __future__ import annotations

import functools
import math
import warnings
from typing import Any

import numpy as np

from mlops_assets.model import booster_graphs, tree_graphs
from mlops_assets.model.artifact import sha256_hex
from mlops_assets.model.compiled import PROBABILITY_ATOL, REGRESSION_RTOL, compiled_model, first_difference
from mlops_assets.model.rows import PayloadError, ServingSpec, probe_rows, rows_from_payload
from mlops_assets.project.rules import NUMBER_KINDS

HOLDOUT_ROWS = 100_000
PROBE_ROWS = 2_000
# Verdict fields a reason or a tag may show: a row's values, cut.
SHOWN_VALUES = 12


def compile_model(model: Any, spec: ServingSpec, holdout: Any) -> tuple[bytes | None, dict[str, Any]]:
    """``(graph, block)``: the graph and the manifest's ``compiled`` block when it compiled, else
    ``(None, {"reason": ...})``. ``holdout``: a frame with the spec's features, as the model takes them."""
    if spec.categorical_dtype == "category" and not booster_graphs.is_booster(model):
        return None, {
            "reason": "its categories are pandas Categorical columns: only LightGBM and XGBoost are compiled on them"
        }
    try:
        rows = _checked_rows(spec, holdout)
    except PayloadError as exc:
        return None, {
            "reason": f"its holdout holds a row the service would refuse ({exc}): nothing to check on"
        }
    failures: dict[str, list[str]] = {}  # what went wrong -> the ways of feeding it went wrong for
    for inputs in _layouts(spec, booster_graphs.is_booster(model)):
        for numbers in ("float64", "float32"):
            try:
                graph, codes = _converted(model, spec, inputs, numbers)
            except Exception as exc:  # skl2onnx raises many kinds: each is a reason, not a crash
                failures.setdefault(f"no converter ({_said(exc)})", []).append(f"{inputs} of {numbers}")
                continue
            block = {"format": "onnx", "inputs": inputs, "numbers": numbers, "sha256": sha256_hex(graph)}
            if codes:
                block["codes"] = codes
            try:
                compiled = compiled_model(graph, block, spec.names, _categorical(spec), "the graph")
            except ValueError as exc:
                failures.setdefault(f"onnxruntime cannot run it ({_said(exc)})", []).append(
                    f"{inputs} of {numbers}"
                )
                continue
            differs = _first_differing_row(model, compiled, spec, rows)
            if differs is None:
                return graph, block | {
                    "checked_rows": {part: len(rows[f"{part}_values"]) for part in ("holdout", "drawn")},
                    "tolerance": _tolerance(spec.task),
                }
            return None, {"reason": f"the graph ({inputs} of {numbers}) differs from the model on {differs}"}
    return None, {"reason": "; ".join(f"{', '.join(ways)}: {why}" for why, ways in failures.items())}


def _layouts(spec: ServingSpec, booster: bool) -> list[str]:
    if any(f.kind == "categorical" for f in spec.features):
        return ["coded", "columns"] if booster else ["columns"]
    return ["matrix", "columns"]


def _categorical(spec: ServingSpec) -> list[bool]:
    return [f.kind == "categorical" for f in spec.features]


def _converted(model: Any, spec: ServingSpec, inputs: str, numbers: str) -> tuple[bytes, dict]:
    """The graph, and each categorical feature's categories in code order where it takes codes."""
    if booster_graphs.is_booster(model):
        features = [(f.name, f.kind == "categorical") for f in spec.features]
        graph, codes = booster_graphs.booster_graph(model, features, inputs, numbers)
        return graph.SerializeToString(), codes
    from skl2onnx import convert_sklearn
    from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType

    number = DoubleTensorType if numbers == "float64" else FloatTensorType
    if inputs == "matrix":
        types = [("features", number([None, len(spec.features)]))]
    else:
        types = [
            (f.name, StringTensorType([None, 1]) if f.kind == "categorical" else number([None, 1]))
            for f in spec.features
        ]
    options = {"zipmap": False} if spec.task != "regression" else None
    _register_converters()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        graph = convert_sklearn(model, initial_types=types, options=options)
    return tree_graphs.finished(graph).SerializeToString(), {}


@functools.cache
def _register_converters() -> None:
    tree_graphs.register()


def _checked_rows(spec: ServingSpec, holdout: Any) -> dict[str, Any]:
    """The holdout's first rows and rows drawn from the spec, each as the service types a request."""
    frame = holdout[list(spec.names)].head(HOLDOUT_ROWS)
    data = frame.astype(object).where(frame.notna(), None).to_numpy().tolist()
    drawn = [*probe_rows(spec, PROBE_ROWS), *_extremes(spec)]
    return {
        "holdout": rows_from_payload({"data": data}, spec, len(data)) if data else None,
        "drawn": rows_from_payload({"data": drawn}, spec, len(drawn)),
        "holdout_values": data,
        "drawn_values": drawn,
    }


UNSEEN_CATEGORY = "(a category the model never saw)"


def _extremes(spec: ServingSpec) -> list[list]:
    """A drawn row with each number at each end of its range, and each category the service
    scores though unknown (``out_of_range = "flag"``) as one the model never saw, the others as drawn."""
    base = probe_rows(spec, 1, seed=1)[0]
    rows = []
    for j, f in enumerate(spec.features):
        if f.kind == "categorical" and f.flag:
            row = list(base)
            row[j] = UNSEEN_CATEGORY
            rows.append(row)
        if f.kind not in NUMBER_KINDS or not (math.isfinite(f.low) and math.isfinite(f.high)):
            continue
        for bound in (math.ceil(f.low), math.floor(f.high)) if f.kind == "integer" else (f.low, f.high):
            row = list(base)
            row[j] = bound
            rows.append(row)
    return rows


def _first_differing_row(model: Any, compiled: Any, spec: ServingSpec, rows: dict[str, Any]) -> str | None:
    for part in ("holdout", "drawn"):
        checked = rows[part]
        if checked is None:
            continue
        expected = _model_answers(model, spec, checked)
        given = checked.columns if checked.columns is not None else checked.values
        found = compiled.classify(given) if spec.task != "regression" else (compiled.predict(given),)
        scale = None if spec.task != "regression" else float(np.abs(expected[0]).mean())
        differs = first_difference(spec.task, expected, found, scale)
        if differs is not None:
            index, how = differs
            values = dict(zip(spec.names, rows[f"{part}_values"][index], strict=True))
            shown = dict(list(values.items())[:SHOWN_VALUES])
            row = f"row {index} of the {'holdout' if part == 'holdout' else 'rows drawn from the spec'}"
            return f"{row} {shown}: {how}"
    return None


def _model_answers(model: Any, spec: ServingSpec, rows: Any) -> tuple:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="X does not have valid feature names")
        if spec.task == "regression":
            return (np.asarray(model.predict(rows.values), dtype=np.float64),)
        labels = np.asarray(model.predict(rows.values))
        probabilities = model.predict_proba(rows.values) if hasattr(model, "predict_proba") else None
        return labels, probabilities


def _tolerance(task: str) -> dict[str, float]:
    return {"relative": REGRESSION_RTOL} if task == "regression" else {"probability": PROBABILITY_ATOL}


def _said(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= 200 else text[:199] + "…"
