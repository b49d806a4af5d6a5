"""Validation thresholds as a Dagster resource, so the UI shows them and a run can override them."""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from mlops_assets.ingest.schema import DEFAULT_VALUE_RANGES
from mlops_assets.ingest.validation import ValidationThresholds


class ValidationConfig(dg.ConfigurableResource):
    value_ranges: dict[str, list[float]] = Field(
        default_factory=lambda: {k: list(v) for k, v in DEFAULT_VALUE_RANGES.items()},
        description="Inclusive [low, high] per column (ranges check).",
    )
    max_null_fraction: float = Field(default=0.0, description="Share of empty cells allowed.")
    hard_mean_shift_sd: float = Field(
        default=4.0, description="Blocking: a column mean this many reference sd away is corrupt."
    )
    hard_std_ratio: float = Field(default=4.0, description="Blocking: spread ratio limit.")
    min_rows_for_spread: int = Field(default=20, description="Batches smaller than this: spread not judged.")
    drift_mean_shift_sd: float = Field(default=0.5, description="Warning: mean shift in sd.")
    drift_std_ratio: float = Field(default=1.5, description="Warning: spread ratio.")
    drift_ks_pvalue: float = Field(default=0.001, description="Warning: KS test p-value below this.")

    def thresholds(self) -> ValidationThresholds:
        return ValidationThresholds(
            value_ranges={k: (float(v[0]), float(v[1])) for k, v in self.value_ranges.items()},
            max_null_fraction=self.max_null_fraction,
            hard_mean_shift_sd=self.hard_mean_shift_sd,
            hard_std_ratio=self.hard_std_ratio,
            min_rows_for_spread=self.min_rows_for_spread,
            drift_mean_shift_sd=self.drift_mean_shift_sd,
            drift_std_ratio=self.drift_std_ratio,
            drift_ks_pvalue=self.drift_ks_pvalue,
        )
