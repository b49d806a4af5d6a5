"""Validation thresholds as a Dagster resource, so the UI shows them and a run can override them.

What a column may hold (kind, range, categories, nullable) is the model project's spec; these are
the distribution limits, the same for every column.
"""

from __future__ import annotations

import dagster as dg
from pydantic import Field

from mlops_assets.ingest.checked import DEFAULT_CHUNK_ROWS
from mlops_assets.ingest.validation import ValidationThresholds


class ValidationConfig(dg.ConfigurableResource):
    hard_mean_shift_sd: float = Field(
        default=4.0, description="Blocking: a column mean this many reference sd away is corrupt."
    )
    hard_std_ratio: float = Field(default=4.0, description="Blocking: spread ratio limit.")
    min_rows_for_spread: int = Field(default=20, description="Batches smaller than this: spread not judged.")
    drift_mean_shift_sd: float = Field(default=0.5, description="Warning: mean shift in sd.")
    drift_std_ratio: float = Field(default=1.5, description="Warning: spread ratio.")
    drift_ks_pvalue: float = Field(default=0.001, description="Warning: KS test p-value below this.")
    drift_category_shift: float = Field(
        default=0.15, description="Warning: total variation distance of a category column's shares."
    )
    chunk_rows: int = Field(
        default=DEFAULT_CHUNK_ROWS,
        gt=0,
        description=(
            "A landed file is read and checked this many rows at a time: the ingest run's memory is "
            "that of one chunk, whatever the file's size. It decides nothing the checks report."
        ),
    )

    def thresholds(self) -> ValidationThresholds:
        return ValidationThresholds(
            hard_mean_shift_sd=self.hard_mean_shift_sd,
            hard_std_ratio=self.hard_std_ratio,
            min_rows_for_spread=self.min_rows_for_spread,
            drift_mean_shift_sd=self.drift_mean_shift_sd,
            drift_std_ratio=self.drift_std_ratio,
            drift_ks_pvalue=self.drift_ks_pvalue,
            drift_category_shift=self.drift_category_shift,
        )
