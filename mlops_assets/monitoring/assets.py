"""Monitoring assets: the scoring logs of a day, compacted."""

from datetime import date

import dagster as dg

from mlops_assets.monitoring.scoring_logs import compact_day, fingerprint, source_files
from mlops_assets.storage import StorageResource

# end_offset=1: today is a partition too (compacted again once the day is over).
scoring_days = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_offset=1, timezone="UTC")
SOURCE_FINGERPRINT = "source_fingerprint"


@dg.asset(
    partitions_def=scoring_days,
    group_name="monitoring",
    kinds={"parquet"},
    description=(
        "One day of production scoring: a row per scored row (request_id, row_index, time, model "
        "version, latency, features, prediction); synthetic traffic excluded, duplicate request ids once."
    ),
)
def scoring_logs(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.Output:
    day = date.fromisoformat(context.partition_key)
    files = source_files(storage.get(), day)
    frame, summary = compact_day(storage.get(), day, files)
    context.log.info(
        f"{summary.day}: {summary.requests} requests, {summary.rows} rows from {summary.source_files} file(s)"
    )
    return dg.Output(
        frame,
        metadata={
            "requests": summary.requests,
            "rows": summary.rows,
            "model_versions": dg.MetadataValue.json(summary.model_versions),
            "latency_ms": dg.MetadataValue.json(summary.latency_ms),
            "synthetic_excluded": summary.synthetic_excluded,
            "duplicates_removed": summary.duplicates_removed,
            "malformed_lines": summary.malformed_lines,
            "source_files": summary.source_files,
            SOURCE_FINGERPRINT: fingerprint(files),
        },
    )
