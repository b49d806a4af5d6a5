"""Registry domain: the promotion gate and registration (run by training's retraining_job)."""

import dagster as dg

from mlops_assets.registry.assets import model_evaluation, registered_model
from mlops_assets.settings import Settings


def build_defs(settings: Settings) -> dg.Definitions:
    return dg.Definitions(assets=[model_evaluation, registered_model])
