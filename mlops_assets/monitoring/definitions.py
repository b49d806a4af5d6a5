import dagster as dg

from mlops_assets.monitoring.assets import scoring_logs

defs = dg.Definitions(assets=[scoring_logs])
