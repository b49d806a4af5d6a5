"""Drift of production inputs against the training data, per feature (no Dagster here).

PSI (population stability index) over ten bins cut at the training data's deciles, and the
two-sample Kolmogorov–Smirnov test (scipy). Common reading of PSI: < 0.1 stable, 0.1–0.25 some
shift, > 0.25 a large shift; KS with thousands of rows flags tiny shifts, so both must agree
before a feature counts as drifted (thresholds in ``DriftThresholds``).
"""

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from mlops_assets.core.figures import as_markdown, pyplot

EPSILON = 1e-6  # an empty bin would make PSI infinite


@dataclass(frozen=True)
class DriftThresholds:
    psi: float = 0.2
    ks_pvalue: float = 0.01
    min_rows: int = 30  # fewer production rows than this: not judged


def psi(reference: np.ndarray, current: np.ndarray, bins: int = 10) -> float:
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)))
    if len(edges) < 2:  # a constant feature: any other value is a full shift
        return 0.0 if np.all(current == reference[0]) else float("inf")
    edges[0], edges[-1] = -np.inf, np.inf
    expected = np.histogram(reference, edges)[0] / len(reference)
    actual = np.histogram(current, edges)[0] / len(current)
    expected, actual = np.clip(expected, EPSILON, None), np.clip(actual, EPSILON, None)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def drift_table(
    reference: pd.DataFrame, current: pd.DataFrame, features: list[str], thresholds: DriftThresholds
) -> pd.DataFrame:
    rows = []
    judged = len(current) >= thresholds.min_rows
    for feature in features:
        ref, cur = reference[feature].to_numpy(float), current[feature].to_numpy(float)
        if len(cur) == 0:
            empty = {"psi": np.nan, "ks_statistic": np.nan, "ks_pvalue": np.nan, "prod_mean": np.nan}
            rows.append({"feature": feature, **empty, "train_mean": float(ref.mean()), "drifted": False})
            continue
        ks = stats.ks_2samp(ref, cur)
        value = psi(ref, cur)
        rows.append(
            {
                "feature": feature,
                "psi": round(value, 4),
                "ks_statistic": round(float(ks.statistic), 4),
                "ks_pvalue": float(ks.pvalue),
                "train_mean": round(float(ref.mean()), 4),
                "prod_mean": round(float(cur.mean()), 4),
                "drifted": bool(judged and value > thresholds.psi and ks.pvalue < thresholds.ks_pvalue),
            }
        )
    return pd.DataFrame(rows)


def feature_plot(reference: pd.Series, current: pd.Series, title: str) -> str:
    """A small overlaid histogram as a markdown image (data URI), for the asset's metadata."""
    figure, axis = pyplot().subplots(figsize=(3.2, 2.2), dpi=80)
    edges = np.histogram_bin_edges(np.concatenate([reference.to_numpy(float), current.to_numpy(float)]), 20)
    axis.hist(reference, bins=edges, density=True, alpha=0.5, label="training")
    if len(current):
        axis.hist(current, bins=edges, density=True, alpha=0.5, label="production")
    axis.set_title(title, fontsize=8)
    axis.tick_params(labelsize=6)
    axis.legend(fontsize=6)
    figure.tight_layout()
    return as_markdown(figure, title)
