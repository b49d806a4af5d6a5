"""Release domain."""

import dagster as dg

from mlops_assets.release.assets import prod_deployment, qa_deployment, scoring_image

defs = dg.Definitions(assets=[scoring_image, qa_deployment, prod_deployment])
