"""The promotion gate: which versions form the bar, and the strict relative improvement rule on the
spec's primary metric, in its direction."""

import pytest

from mlops_assets.project.metrics import task_metrics
from mlops_assets.registry.evaluation import Scored, already_registered, bar_versions, decide
from mlops_assets.registry.protocol import ModelVersion

MSE = task_metrics("regression")["mse"]
ROC_AUC = task_metrics("binary")["roc_auc"]


def version(n: int, state: str = "registered") -> ModelVersion:
    return ModelVersion("m", n, tags={"release_state": state, "fingerprint": f"f{n}"})


def scored(label: str, mse: float, n: int | None = None) -> Scored:
    return Scored(label, n, {"mse": mse, "rmse": mse**0.5, "r2": 0.5, "mae": 1.0})


def test_first_candidate_is_always_promoted():
    decision = decide(scored("candidate", 1e9), [], MSE, 0.0)
    assert decision.promote and "first candidate" in decision.reason


def test_bar_is_production_and_newer_versions_still_in_release():
    versions = [version(1, "production"), version(2, "failed"), version(3, "qa"), version(4)]
    assert [v.version for v in bar_versions(versions, production=versions[0])] == [1, 3, 4]


def test_bar_falls_back_to_the_latest_when_nothing_is_live_or_in_release():
    versions = [version(1, "failed"), version(2, "rolled_back")]
    assert [v.version for v in bar_versions(versions, production=None)] == [2]
    assert bar_versions([], production=None) == []


def test_promotion_needs_a_strict_improvement_over_the_best_of_the_bar():
    bar = [scored("version 1", 100.0, 1), scored("version 2", 90.0, 2)]
    assert not decide(scored("candidate", 90.0), bar, MSE, 0.0).promote  # equal is not better
    promoted = decide(scored("candidate", 89.0), bar, MSE, 0.0)
    assert promoted.promote and promoted.bar.version == 2
    assert promoted.reason == "promoted: candidate mse 89 vs version 2 mse 90, +1.11% (required > 0.00%)"


def test_min_improvement_is_relative():
    bar = [scored("version 1", 100.0, 1)]
    assert not decide(scored("candidate", 95.0), bar, MSE, 0.05).promote
    assert decide(scored("candidate", 94.9), bar, MSE, 0.05).promote
    refused = decide(scored("candidate", 95.0), bar, MSE, 0.05)
    assert refused.reason == "not promoted: candidate mse 95 vs version 1 mse 100, +5.00% (required > 5.00%)"


def test_a_metric_to_maximise_promotes_the_higher_value():
    def auc(label, value, n=None):
        return Scored(label, n, {"roc_auc": value})

    bar = [auc("version 1", 0.80, 1), auc("version 2", 0.85, 2)]
    assert not decide(auc("candidate", 0.84), bar, ROC_AUC, 0.0).promote  # beats 1, not the best
    promoted = decide(auc("candidate", 0.86), bar, ROC_AUC, 0.0)
    assert promoted.promote and promoted.bar.version == 2


def test_a_bar_that_cannot_score_the_current_holdout_is_no_bar():
    broken = Scored("version 1", 1, {}, incomparable="cannot score the current holdout (column bmi missing)")
    decision = decide(scored("candidate", 1e9), [broken], MSE, 0.0)
    assert decision.promote and decision.bar is None
    assert decision.reason == (
        "promoted without comparison: version 1 cannot score the current holdout (column bmi missing)"
    )
    # One comparable version is enough to compare against: the broken one is left out.
    decision = decide(scored("candidate", 100.0), [broken, scored("version 2", 90.0, 2)], MSE, 0.0)
    assert not decision.promote and decision.bar.version == 2


def test_min_improvement_outside_its_range_is_an_error():
    with pytest.raises(ValueError, match="min_improvement"):
        decide(scored("candidate", 1.0), [], MSE, 1.5)


def test_same_fingerprint_is_a_clean_no():
    decision = already_registered(scored("candidate", 1.0), version(7))
    assert not decision.promote and decision.already_registered_version == 7
    assert "identical to version 7" in decision.reason


def test_label_metrics_score_what_production_answered_against_the_labels():
    import numpy as np

    from mlops_assets.project.metrics import label_metrics

    assert label_metrics("binary", np.array([1.0, 0, 1, 1]), np.array([1.0, 0, 0, 1])) == {
        "accuracy": 0.75,
        "f1": 0.8,
    }
    assert label_metrics("binary", np.array([1.0, 1.0]), np.array([1.0, 1.0])) == {
        "accuracy": 1.0
    }  # no f1: one class
    multi = label_metrics(
        "multiclass", np.array(["a", "b", "c"], dtype=object), np.array(["a", "c", "c"], dtype=object)
    )
    assert set(multi) == {"accuracy", "f1_macro"} and multi["accuracy"] == 2 / 3
    assert label_metrics("regression", np.array([1.0, 2, 3]), np.array([1.5, 2, 2]))["mae"] == 0.5
