"""mlops-assets: the Azure ML MLOps reference architecture as a Dagster asset graph."""
