"""The task -> metric catalogue: the only place metric names are written.

Standalone (numpy and scikit-learn only): the trainer ships it to Azure ML beside itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

import numpy as np

Task = Literal["regression", "binary", "multiclass"]
Direction = Literal["minimize", "maximize"]
TASKS: tuple[str, ...] = get_args(Task)


@dataclass(frozen=True)
class Metric:
    name: str
    direction: Direction
    needs_probabilities: bool
    # (actual, predicted, probabilities or None, the model's classes_ or None) -> value
    compute: Callable[[np.ndarray, np.ndarray, Any, Any], float]

    def improvement(self, candidate: float, bar: float) -> float:
        """How much better ``candidate`` is than ``bar``, relative to the bar (negative: worse)."""
        gain = bar - candidate if self.direction == "minimize" else candidate - bar
        return gain / abs(bar) if bar else (0.0 if gain == 0 else float(np.sign(gain)) * np.inf)

    def best(self, values: list[float]) -> float:
        return min(values) if self.direction == "minimize" else max(values)


def _sk() -> Any:
    """sklearn.metrics, imported on first use: reading a spec (the CLI) must not pay for it."""
    from sklearn import metrics

    return metrics


_REGRESSION = (
    Metric("mse", "minimize", False, lambda y, p, s, c: float(_sk().mean_squared_error(y, p))),
    Metric("rmse", "minimize", False, lambda y, p, s, c: float(np.sqrt(_sk().mean_squared_error(y, p)))),
    Metric("mae", "minimize", False, lambda y, p, s, c: float(_sk().mean_absolute_error(y, p))),
    Metric("r2", "maximize", False, lambda y, p, s, c: float(_sk().r2_score(y, p))),
)
# The positive class of a binary task is classes_[1], as scikit-learn orders the labels.
_BINARY = (
    Metric("accuracy", "maximize", False, lambda y, p, s, c: float(_sk().accuracy_score(y, p))),
    Metric("f1", "maximize", False, lambda y, p, s, c: float(_sk().f1_score(y, p, pos_label=c[1]))),
    Metric("roc_auc", "maximize", True, lambda y, p, s, c: float(_sk().roc_auc_score(y == c[1], s[:, 1]))),
    Metric("log_loss", "minimize", True, lambda y, p, s, c: float(_sk().log_loss(y, s, labels=c))),
)
_MULTICLASS = (
    Metric("accuracy", "maximize", False, lambda y, p, s, c: float(_sk().accuracy_score(y, p))),
    Metric("f1_macro", "maximize", False, lambda y, p, s, c: float(_sk().f1_score(y, p, average="macro"))),
    Metric(
        "roc_auc_ovr",
        "maximize",
        True,
        lambda y, p, s, c: float(_sk().roc_auc_score(y, s, multi_class="ovr", labels=c)),
    ),
    Metric("log_loss", "minimize", True, lambda y, p, s, c: float(_sk().log_loss(y, s, labels=c))),
)
CATALOGUE: dict[str, dict[str, Metric]] = {
    task: {metric.name: metric for metric in metrics}
    for task, metrics in (("regression", _REGRESSION), ("binary", _BINARY), ("multiclass", _MULTICLASS))
}


def task_metrics(task: str) -> dict[str, Metric]:
    if task not in CATALOGUE:
        raise ValueError(f"unknown task {task!r}; known: {', '.join(TASKS)}")
    return CATALOGUE[task]


def label_text(value: Any, kind: str) -> str:
    """A class as the scoring service writes it: a boolean target's 0.0/1.0 as false/true."""
    if kind == "boolean":
        return "true" if bool(value) else "false"
    return str(value)


def too_few_classes(task: str, target: str, labels: Any, rows: str, kind: str = "") -> str | None:
    """Why ``labels`` (the target column of ``rows``, e.g. "the training rows", of the spec's
    ``kind``) cannot train or judge a classifier of ``task``, or None: a classifier needs at least
    two classes in each."""
    classes = {label_text(label, kind) for label in np.asarray(labels).tolist()}
    return class_shortage(task, target, classes, len(labels), rows)


def class_shortage(task: str, target: str, classes: set[str], count: int, rows: str) -> str | None:
    """``too_few_classes`` of ``count`` rows whose labels, as ``label_text`` writes them, are
    ``classes``: what the orchestrator asks of training data it knows by its batches' counts."""
    if task == "regression":
        return None
    found = sorted(classes)
    if len(found) >= 2:
        return None
    held = f"one class ({found[0]})" if found else "no class"
    return (
        f"target column {target}: {held} in {rows} ({count} rows); a {task} model learns from "
        "at least two, so the data lacks the other labels (or the file writes them in a way the "
        "spec does not read)"
    )


def evaluate(task: str, model: Any, features: Any, actual: np.ndarray) -> dict[str, float]:
    """Every metric of the task for ``model`` on (``features``, ``actual``)."""
    return evaluate_predicting(task, model, features, actual)[0]


def evaluate_predicting(
    task: str, model: Any, features: Any, actual: np.ndarray
) -> tuple[dict[str, float], np.ndarray]:
    """Every metric of the task for ``model`` on (``features``, ``actual``), and its predictions
    (asked once: a caller that also plots them does not predict again).

    A classifier without ``predict_proba`` is scored on its labels only: the probability metrics
    are left out rather than faked.
    """
    metrics = task_metrics(task)
    predicted = np.asarray(model.predict(features))
    classes = getattr(model, "classes_", None)
    probabilities = None
    if classes is not None and hasattr(model, "predict_proba"):
        probabilities = np.asarray(model.predict_proba(features))
    scores = {
        name: metric.compute(actual, predicted, probabilities, classes)
        for name, metric in metrics.items()
        if probabilities is not None or not metric.needs_probabilities
    }
    return scores, predicted


def label_metrics(task: str, actual: np.ndarray, predicted: np.ndarray) -> dict[str, float]:
    """The task's metrics that need only labels, for predictions already made (production's,
    joined with the labels that came back): how the served model does, over time."""
    classes = None if task == "regression" else np.unique(np.concatenate([actual, predicted]))
    found = {}
    for name, metric in task_metrics(task).items():
        if metric.needs_probabilities:
            continue
        if task == "binary" and len(classes) != 2 and name == "f1":
            continue  # one class seen: no positive class to score
        found[name] = float(metric.compute(actual, predicted, None, classes))
    return found
