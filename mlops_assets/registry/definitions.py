"""Registry domain: the promotion gate and registration."""

import dagster as dg

from mlops_assets.registry.assets import model_evaluation, registered_model

defs = dg.Definitions(assets=[model_evaluation, registered_model])
