import dagster as dg

from mlops_assets.batch.assets import batch_predictions

defs = dg.Definitions(assets=[batch_predictions])
