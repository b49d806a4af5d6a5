"""Release domain."""

import dagster as dg

from mlops_assets.release.assets import scoring_image

defs = dg.Definitions(assets=[scoring_image])
