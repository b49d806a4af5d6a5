"""Ingest domain: landed files, their checks, validated batches and training data."""

import dagster as dg

from mlops_assets.data.assets import (
    landed_batch,
    landed_batch_checks,
    training_data,
    validated_batch,
)

defs = dg.Definitions(
    assets=[landed_batch, validated_batch, training_data],
    asset_checks=landed_batch_checks,
)
