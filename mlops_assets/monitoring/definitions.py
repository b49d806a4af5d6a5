import dagster as dg

from mlops_assets.monitoring.assets import drift_report, scoring_logs

defs = dg.Definitions(assets=[scoring_logs, drift_report])
