import dagster as dg

from mlops_assets.monitoring.assets import drift_report, scoring_logs
from mlops_assets.monitoring.feedback_batch import feedback_batch

defs = dg.Definitions(assets=[scoring_logs, drift_report, feedback_batch])
