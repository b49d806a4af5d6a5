"""Predicted-vs-actual and residual plots as markdown images for the Dagster UI."""

from __future__ import annotations

import numpy as np

from mlops_assets.core.figures import as_markdown, pyplot
from mlops_assets.project.metrics import label_text


def prediction_figure(actual: np.ndarray, predicted: np.ndarray, title: str):
    fig, (left, right) = pyplot().subplots(1, 2, figsize=(9, 4), dpi=80)
    low, high = float(min(actual.min(), predicted.min())), float(max(actual.max(), predicted.max()))
    left.scatter(actual, predicted, s=12, alpha=0.7)
    left.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    left.set(xlabel="actual", ylabel="predicted", title="predicted vs actual")
    residuals = actual - predicted
    right.scatter(predicted, residuals, s=12, alpha=0.7)
    right.axhline(0, color="grey", linestyle="--", linewidth=1)
    right.set(xlabel="predicted", ylabel="actual - predicted", title="residuals")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def confusion_figure(actual: np.ndarray, predicted: np.ndarray, title: str):
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, axis = pyplot().subplots(figsize=(5, 4), dpi=80)
    ConfusionMatrixDisplay.from_predictions(actual, predicted, ax=axis, colorbar=False)
    axis.set_title(title)
    fig.tight_layout()
    return fig


def holdout_figure(task: str, actual: np.ndarray, predicted: np.ndarray, title: str, target_kind: str = ""):
    """What a person checks first: residuals for a regression, the confusion matrix otherwise, its
    classes named as the scoring service names them (a boolean target's false/true, not 0.0/1.0)."""
    if task == "regression":
        return prediction_figure(actual, predicted, title)
    return confusion_figure(class_labels(actual, target_kind), class_labels(predicted, target_kind), title)


def holdout_plots_markdown(
    task: str, actual: np.ndarray, predicted: np.ndarray, title: str, target_kind: str = ""
) -> str:
    return as_markdown(holdout_figure(task, actual, predicted, title, target_kind), title)


def class_labels(values: np.ndarray, target_kind: str) -> np.ndarray:
    return np.array([label_text(value, target_kind) for value in np.asarray(values).tolist()])
