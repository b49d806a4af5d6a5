"""Predicted-vs-actual and residual plots as markdown images for the Dagster UI."""

from __future__ import annotations

import numpy as np

from mlops_assets.core.figures import as_markdown, pyplot


def prediction_plots_markdown(actual: np.ndarray, predicted: np.ndarray, title: str) -> str:
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
    return as_markdown(fig, title)


def confusion_matrix_markdown(actual: np.ndarray, predicted: np.ndarray, title: str) -> str:
    from sklearn.metrics import ConfusionMatrixDisplay

    fig, axis = pyplot().subplots(figsize=(5, 4), dpi=80)
    ConfusionMatrixDisplay.from_predictions(actual, predicted, ax=axis, colorbar=False)
    axis.set_title(title)
    fig.tight_layout()
    return as_markdown(fig, title)


def holdout_plots_markdown(task: str, actual: np.ndarray, predicted: np.ndarray, title: str) -> str:
    """What a person checks first: residuals for a regression, the confusion matrix otherwise."""
    if task == "regression":
        return prediction_plots_markdown(actual, predicted, title)
    return confusion_matrix_markdown(actual, predicted, title)
