"""Training domain."""

import dagster as dg

from mlops_assets.training.assets import candidate_model

defs = dg.Definitions(assets=[candidate_model])
