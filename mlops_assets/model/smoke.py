"""The smoke rows: a few rows of a version and the registered model's own predictions for them,
picked at registration (into the manifest) and answered the same by every deployment of it."""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

SMOKE_ROWS = 3


@dataclass(frozen=True)
class SmokeSample:
    """Rows to send and the registered artifact's own predictions for them (known before a deploy)."""

    rows: list[list[float]]
    predictions: list[float]
    source: str  # where the sample came from, shown in the UI ("manifest")
    # How near a served number must be: the model's own rounding, or the tolerance its compiled
    # graph, which answers for it, was checked to (``compiled.REGRESSION_RTOL``).
    rtol: float = 1e-9


def smoke_block(model: Any, rows: Any, features: Sequence[str]) -> dict[str, list]:
    """A few rows and the registered model's own predictions for them: what every deployment of
    this version must answer (releases check it, never trusting the deployed copy to say)."""
    sample = rows[list(features)].head(SMOKE_ROWS)
    predictions = np.asarray(model.predict(sample))
    values = sample.astype(object).where(sample.notna(), None).to_numpy().tolist()
    return {"rows": values, "predictions": predictions.tolist()}


def same_predictions(served: list, expected: list, rtol: float = 1e-9) -> bool:
    """Numbers (and a classifier's true/false against the 1.0/0.0 it was trained on) within
    ``rtol``; text labels exactly."""
    if len(served) != len(expected):
        return False
    if all(isinstance(v, int | float) for v in [*served, *expected]):
        return bool(np.allclose(served, expected, rtol=rtol, atol=1e-9))
    return [str(v) for v in served] == [str(v) for v in expected]
