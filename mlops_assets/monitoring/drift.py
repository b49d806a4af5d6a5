"""Drift of production inputs against the training data, per feature and by its kind (no Dagster here).

Numbers (numeric, integer, boolean as 1/0): PSI (population stability index) over ten bins cut at
the training data's deciles, and the two-sample Kolmogorov–Smirnov test (scipy). Categories: PSI
over the categories (one bin each, a category training never saw in a bin of its own, counted as
``unseen``) and the chi-square test of independence of the two samples' category counts. Common
reading of PSI: < 0.1 stable, 0.1–0.25 some shift, > 0.25 a large shift; a test with thousands of
rows flags tiny shifts, so both must agree before a feature counts as drifted (thresholds in
``DriftThresholds``).
"""

from collections.abc import Mapping, Sequence
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


def category_psi(reference: pd.Series, current: pd.Series) -> tuple[float, float, int]:
    """PSI over categories, the chi-square test's p-value, and how many current rows hold a
    category the reference never had. Missing values are a category of their own."""
    ref = reference.astype(object).where(reference.notna(), "<null>").value_counts()
    cur = current.astype(object).where(current.notna(), "<null>").value_counts()
    categories = ref.index.union(cur.index)
    ref_counts = ref.reindex(categories, fill_value=0).to_numpy(float)
    cur_counts = cur.reindex(categories, fill_value=0).to_numpy(float)
    expected = np.clip(ref_counts / ref_counts.sum(), EPSILON, None)
    actual = np.clip(cur_counts / cur_counts.sum(), EPSILON, None)
    value = float(np.sum((actual - expected) * np.log(actual / expected)))
    seen = [c for c in categories if ref.get(c, 0) > 0]
    unseen = int(cur.drop(seen, errors="ignore").sum())
    table = np.vstack([ref_counts, cur_counts])
    table = table[:, table.sum(axis=0) > 0]
    pvalue = 1.0 if table.shape[1] < 2 else float(stats.chi2_contingency(table).pvalue)
    return value, pvalue, unseen


def drift_table(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: Sequence[str] | Mapping[str, str],
    thresholds: DriftThresholds,
) -> pd.DataFrame:
    """A row per feature: PSI, the test (KS for numbers, chi-square for categories) and its
    p-value, the training and production means (numbers) or most frequent category, the rows
    with a category training never saw, and whether it drifted. ``features``: name -> kind (a
    plain list: all numbers)."""
    kinds = dict(features) if isinstance(features, Mapping) else dict.fromkeys(features, "numeric")
    rows = []
    judged = len(current) >= thresholds.min_rows
    for feature, kind in kinds.items():
        categorical = kind == "categorical"
        row = {"feature": feature, "kind": kind, "test": "chi2" if categorical else "ks"}
        if len(current) == 0:
            rows.append(
                {**row, "psi": np.nan, "statistic": np.nan, "pvalue": np.nan, "unseen": 0, "drifted": False}
            )
            continue
        if categorical:
            value, pvalue, unseen = category_psi(reference[feature], current[feature])
            row |= {
                "psi": round(value, 4),
                "statistic": np.nan,
                "pvalue": pvalue,
                "train": str(reference[feature].mode(dropna=True).iat[0])
                if reference[feature].notna().any()
                else "",
                "prod": str(current[feature].mode(dropna=True).iat[0])
                if current[feature].notna().any()
                else "",
                "unseen": unseen,
            }
        else:
            ref = reference[feature].to_numpy(float)
            cur = current[feature].to_numpy(float)
            ref, cur = ref[~np.isnan(ref)], cur[~np.isnan(cur)]  # a nullable feature's nulls: not numbers
            ks = stats.ks_2samp(ref, cur) if len(cur) else None
            value = psi(ref, cur) if len(cur) else 0.0
            row |= {
                "psi": round(value, 4),
                "statistic": round(float(ks.statistic), 4) if ks else np.nan,
                "pvalue": float(ks.pvalue) if ks else 1.0,
                "train": f"{ref.mean():.4g}" if len(ref) else "",
                "prod": f"{cur.mean():.4g}" if len(cur) else "",
                "unseen": 0,
            }
        row["drifted"] = bool(judged and row["psi"] > thresholds.psi and row["pvalue"] < thresholds.ks_pvalue)
        rows.append(row)
    return pd.DataFrame(rows)


def feature_plot(reference: pd.Series, current: pd.Series, title: str, categorical: bool = False) -> str:
    """A small overlaid histogram (categories: side-by-side shares) as a markdown image (data
    URI), for the asset's metadata."""
    figure, axis = pyplot().subplots(figsize=(3.2, 2.2), dpi=80)
    if categorical:
        shares = pd.DataFrame(
            {
                "training": reference.value_counts(normalize=True),
                "production": current.value_counts(normalize=True)
                if len(current)
                else pd.Series(dtype=float),
            }
        ).fillna(0.0)
        positions = np.arange(len(shares))
        axis.bar(positions - 0.2, shares["training"], width=0.4, label="training")
        axis.bar(positions + 0.2, shares["production"], width=0.4, label="production")
        axis.set_xticks(positions, [str(c) for c in shares.index], rotation=30, fontsize=6)
        axis.set_title(title, fontsize=8)
        axis.tick_params(labelsize=6)
        axis.legend(fontsize=6)
        figure.tight_layout()
        return as_markdown(figure, title)
    reference, current = reference.dropna(), current.dropna()  # a nullable feature's nulls: no bar
    edges = np.histogram_bin_edges(np.concatenate([reference.to_numpy(float), current.to_numpy(float)]), 20)
    axis.hist(reference, bins=edges, density=True, alpha=0.5, label="training")
    if len(current):
        axis.hist(current, bins=edges, density=True, alpha=0.5, label="production")
    axis.set_title(title, fontsize=8)
    axis.tick_params(labelsize=6)
    axis.legend(fontsize=6)
    figure.tight_layout()
    return as_markdown(figure, title)
