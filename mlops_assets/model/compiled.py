"""A registered model's compiled graph (ONNX, run by onnxruntime): verified against its manifest and
answering as the model would, within the tolerance it was checked to at registration.

The manifest's ``compiled`` block says how the graph takes its rows, decided when it was compiled
(``compiling.py``): ``inputs`` is ``"matrix"`` (one input of every feature, all numbers),
``"coded"`` (one matrix, each category as its position in the block's ``codes`` for its feature,
a missing or unknown one as NaN: as LightGBM and XGBoost code pandas categories) or ``"columns"``
(one input per feature, named by it: numbers, booleans as 0/1, categories as text), and
``numbers`` what a number is fed as (``float64``, or ``float32`` where a converter or
onnxruntime's kernels take no doubles). A version that did not compile says why in ``reason`` and
is asked through its model as before. Add a runtime here; ``loaded.loaded_model`` chooses it.
"""

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any

import numpy as np

from mlops_assets.model.artifact import ArtifactError, verify_sha256

COMPILED_NAME = "model.onnx"
THREADS_ENV = "MLOPS_SCORING_THREADS"  # onnxruntime's threads per worker process
# What "answers as the model would" means, stated once for the registration's check, the load
# check and the release's smoke test: a regressor's prediction within this much of the model's,
# relative to the larger of its size and the mean size of the rows checked; a classifier's label
# identical and each probability within the absolute tolerance.
REGRESSION_RTOL = 1e-4
PROBABILITY_ATOL = 1e-5
MISSING_CATEGORY = ""  # what a null category is fed as (a string tensor holds no null)


@dataclass(frozen=True)
class CompiledModel:
    session: Any  # onnxruntime.InferenceSession
    features: tuple[str, ...]
    categorical: tuple[bool, ...]  # per feature: a category (text, or its code where coded)
    inputs: str  # "matrix" | "coded" | "columns"
    numbers: np.dtype
    codes: tuple[dict[str, float] | None, ...] = ()  # "coded": per feature, category -> code

    def run(self, rows: Any) -> list[np.ndarray]:
        """The graph's outputs for rows as ``Rows`` holds them: a float matrix, a named frame, or
        each feature's values (``Rows.columns``)."""
        if self.inputs == "matrix":
            matrix = (
                rows if isinstance(rows, np.ndarray) else np.column_stack(columns_of(rows, self.features))
            )
            feed = {"features": matrix.astype(self.numbers, copy=False)}
        elif self.inputs == "coded":
            columns = columns_of(rows, self.features)
            matrix = np.empty((len(columns[0]), len(columns)), dtype=self.numbers)
            for j, (column, codes) in enumerate(zip(columns, self.codes, strict=True)):
                matrix[:, j] = column if codes is None else _coded(column, codes)
            feed = {"features": matrix}
        else:
            feed = {
                name: (_text(column) if text else column.astype(self.numbers, copy=False)).reshape(-1, 1)
                for name, text, column in zip(
                    self.features, self.categorical, columns_of(rows, self.features), strict=True
                )
            }
        return self.session.run(None, feed)

    def predict(self, rows: Any) -> np.ndarray:
        """A regressor's predictions, float64."""
        return np.asarray(self.run(rows)[0], dtype=np.float64).reshape(-1)

    def classify(self, rows: Any) -> tuple[np.ndarray, np.ndarray]:
        """A classifier's labels and class probabilities (float64, summing to 1 in float64 as the
        model's do: a float32 graph's sum is 1 only to float32's precision)."""
        labels, probabilities = self.run(rows)[:2]
        probabilities = np.asarray(probabilities, dtype=np.float64)
        return np.asarray(labels), probabilities / probabilities.sum(axis=1, keepdims=True)


def _coded(column: np.ndarray, codes: dict[str, float]) -> np.ndarray:
    return np.fromiter(map(codes.get, column, repeat(math.nan)), np.float64, len(column))


def _text(column: np.ndarray) -> np.ndarray:
    values = np.asarray(column, dtype=object)
    missing = np.equal(values, None)
    if missing.any():
        values = np.where(missing, MISSING_CATEGORY, values)
    return values


def columns_of(rows: Any, features: Sequence[str]) -> list[np.ndarray]:
    """Each feature's values from a float matrix, a named frame or a list of columns."""
    if isinstance(rows, list):
        return rows
    if isinstance(rows, np.ndarray):
        return list(rows.T)
    return [_column(rows[name]) for name in features]


def _column(series: Any) -> np.ndarray:
    if getattr(series.dtype, "name", "") == "category":  # missing: None, as a checked value is
        return np.asarray(series.astype(object).where(series.notna(), None))
    return series.to_numpy()


def session_options() -> Any:
    """One thread per worker unless MLOPS_SCORING_THREADS says more: a service runs a worker per
    CPU, and a spinning pool would take the CPU the other workers answer on."""
    import onnxruntime as ort

    given = os.environ.get(THREADS_ENV, "1")
    if not given.isdigit() or int(given) < 1:
        raise ValueError(f"{THREADS_ENV}={given!r}: a whole number of threads, 1 or more")
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(given)
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # warnings about unused initialisers are the converter's, not ours
    return options


def compiled_model(
    graph: bytes, block: dict, features: Sequence[str], categorical: Sequence[bool], source: str
) -> CompiledModel:
    """The graph, if its sha256 is the manifest's, ready to answer; an ArtifactError names what
    is wrong (a tampered file, a graph this onnxruntime cannot run)."""
    verify_sha256(graph, block["sha256"], source)
    codes = _code_tables(block, features, categorical, source)
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(graph, session_options(), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own, unexported exception types
        raise ArtifactError(f"{source}: onnxruntime cannot load the compiled graph ({exc})") from exc
    return CompiledModel(
        session,
        tuple(features),
        tuple(bool(c) for c in categorical),
        str(block["inputs"]),
        np.dtype(block["numbers"]),
        codes,
    )


def _code_tables(
    block: dict, features: Sequence[str], categorical: Sequence[bool], source: str
) -> tuple[dict[str, float] | None, ...]:
    """Per feature, a category's code (``"coded"`` graphs: every categorical feature has a list
    of its categories in ``codes``), else None."""
    if block["inputs"] != "coded":
        return ()
    given = block.get("codes")
    wanted = [name for name, text in zip(features, categorical, strict=True) if text]
    if (
        not isinstance(given, dict)
        or sorted(given) != sorted(wanted)
        or not all(isinstance(c, list) and all(isinstance(v, str) for v in c) for c in given.values())
    ):
        raise ArtifactError(
            f"{source}: takes categories as codes, but its manifest does not list the categories of "
            f"each categorical feature ({', '.join(wanted)})"
        )
    return tuple(
        {category: float(code) for code, category in enumerate(given[name])} if name in given else None
        for name in features
    )


def first_difference(
    task: str, expected: tuple, found: tuple, scale: float | None = None
) -> tuple[int, str] | None:
    """The first row where ``found`` (the graph's answers) is not ``expected`` (the model's) within
    the stated tolerances, and how it differs; None where every row agrees. Each is ``(values,)``
    for a regressor, ``(labels, probabilities)`` for a classifier (probabilities may be None)."""
    if task == "regression":
        want, got = np.asarray(expected[0], dtype=np.float64), np.asarray(found[0], dtype=np.float64)
        size = float(np.abs(want).mean()) if scale is None else scale
        allowed = REGRESSION_RTOL * np.maximum(np.abs(want), size)
        wrong = ~(np.abs(got - want) <= allowed)
        if wrong.any():
            i = int(np.argmax(wrong))
            return i, f"the model predicts {want[i]:.10g}, the graph {got[i]:.10g}"
        return None
    labels, probabilities = expected
    got_labels, got_probabilities = found
    want, got = np.asarray(labels).tolist(), np.asarray(got_labels).tolist()
    # A boolean or whole class the graph answers as 0/1 or 1.0: equal as numbers are.
    same = np.asarray([a == b or str(a) == str(b) for a, b in zip(want, got, strict=True)])
    if not same.all():
        i = int(np.argmin(same))
        return i, f"the model says {want[i]!r}, the graph {got[i]!r}"
    if probabilities is not None:
        gap = np.abs(np.asarray(got_probabilities, dtype=np.float64) - np.asarray(probabilities))
        wrong = ~(gap <= PROBABILITY_ATOL)
        if wrong.any():
            i = int(np.argmax(wrong.any(axis=1)))
            return i, (
                f"probabilities {np.round(probabilities[i], 6).tolist()} from the model, "
                f"{np.round(got_probabilities[i], 6).tolist()} from the graph"
            )
    return None
