"""Predicted-vs-actual and residual plots as markdown images for the Dagster UI."""

from __future__ import annotations

import base64
import io

import numpy as np


def prediction_plots_markdown(actual: np.ndarray, predicted: np.ndarray, title: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 4), dpi=80)
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
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"![{title}](data:image/png;base64,{encoded})"
