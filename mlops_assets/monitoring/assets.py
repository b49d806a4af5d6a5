"""Monitoring assets: the scoring logs of a day, compacted; drift over a trailing window of them."""

from datetime import date

import dagster as dg
import pandas as pd
from pydantic import Field

from mlops_assets.core import keys, markdown
from mlops_assets.core.alerts import AlertWebhook
from mlops_assets.core.project import ModelProjectResource
from mlops_assets.core.storage import StorageResource
from mlops_assets.ingest.training_data import sample_snapshot
from mlops_assets.monitoring.drift import DriftThresholds, drift_table, feature_plot
from mlops_assets.monitoring.scoring_logs import compact_day, fingerprint, source_files
from mlops_assets.registry.protocol import PRODUCTION_ALIAS
from mlops_assets.registry.resource import RegistryResource

# end_offset=1: today is a partition too (compacted again once the day is over).
scoring_days = dg.DailyPartitionsDefinition(start_date="2026-01-01", end_offset=1, timezone="UTC")
SOURCE_FINGERPRINT = "source_fingerprint"
WINDOW_DAYS = 7
REFERENCE_ROWS = 100_000  # the training rows drift compares with: a sample of a bigger snapshot
NEW_BATCHES = "new_batches_since_training"


def new_data_since_training(instance: dg.DagsterInstance) -> int:
    """Labelled batches (landed or feedback) validated after the latest training snapshot (training_data materialisation)."""
    trained = instance.fetch_materializations(keys.TRAINING_DATA, limit=1).records
    after = trained[0].storage_id if trained else 0
    return sum(
        len(
            instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=1000
            ).records
        )
        for key in (keys.VALIDATED_BATCH, keys.FEEDBACK_BATCH)
    )


@dg.asset(
    partitions_def=scoring_days,
    group_name="monitoring",
    kinds={"parquet"},
    description=(
        "One day of production scoring: a row per scored row (request_id, row_index, time, model "
        "version, latency, features, prediction); synthetic traffic excluded, duplicate request ids once."
    ),
)
def scoring_logs(
    context: dg.AssetExecutionContext, storage: StorageResource, project: ModelProjectResource
) -> dg.Output:
    day = date.fromisoformat(context.partition_key)
    files = source_files(storage.get(), day)
    spec = project.get().spec
    kinds = {name: column.kind for name, column in spec.features.items()}
    frame, summary = compact_day(storage.get(), day, files, kinds, spec.target.kind)
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


class DriftConfig(dg.ConfigurableResource):
    """Thresholds for drift_report's check (the window is fixed: WINDOW_DAYS)."""

    psi_threshold: float = Field(default=0.2, gt=0, description="PSI above this (and KS below) = drifted.")
    ks_pvalue_threshold: float = Field(default=0.01, gt=0, lt=1)
    min_rows: int = Field(default=30, gt=0, description="Fewer production rows in the window: not judged.")

    def thresholds(self) -> DriftThresholds:
        return DriftThresholds(self.psi_threshold, self.ks_pvalue_threshold, self.min_rows)


def reference_frame(registry: RegistryResource, storage: StorageResource) -> tuple[pd.DataFrame, str]:
    """The training snapshot of the production model (else the latest registered version)."""
    models = registry.get_registry()
    version = models.get_alias(PRODUCTION_ALIAS) or next(iter(reversed(models.list_versions())), None)
    if version is None:
        raise dg.Failure(
            "drift_report: no model is registered yet, so there is no training data to compare with"
        )
    uri = version.tags["snapshot_uri"]
    frame = sample_snapshot(storage.get(), uri, REFERENCE_ROWS)
    return frame, f"version {version.version} ({uri})"


@dg.asset(
    partitions_def=scoring_days,
    group_name="monitoring",
    kinds={"python"},
    deps=[keys.TRAINING_DATA],  # lineage: compared with the production model's snapshot
    ins={
        "scoring_logs": dg.AssetIn(
            partition_mapping=dg.TimeWindowPartitionMapping(
                start_offset=-(WINDOW_DAYS - 1), end_offset=0, allow_nonexistent_upstream_partitions=True
            )
        )
    },
    check_specs=[
        dg.AssetCheckSpec(
            "drift_within_limits",
            asset=keys.DRIFT_REPORT,
            description="No feature past both the PSI and the KS thresholds (DriftConfig).",
        )
    ],
    description=(
        f"Production inputs over the trailing {WINDOW_DAYS} days of scoring_logs vs the production "
        "model's training data: PSI and KS per feature, a plot each, a table; the check flags drift."
    ),
)
def drift_report(
    context: dg.AssetExecutionContext,
    scoring_logs: dict,
    registry: RegistryResource,
    storage: StorageResource,
    drift: DriftConfig,
    alerts: AlertWebhook,
    project: ModelProjectResource,
):
    features = {name: column.kind for name, column in project.get().spec.features.items()}
    days = sorted(scoring_logs)
    current = pd.concat([scoring_logs[d] for d in days], ignore_index=True) if days else pd.DataFrame()
    reference, against = reference_frame(registry, storage)
    table = drift_table(reference, current, features, drift.thresholds())
    drifted = table.loc[table["drifted"], "feature"].tolist()
    judged = len(current) >= drift.min_rows
    plots = "\n".join(
        feature_plot(
            reference[f], current[f] if len(current) else pd.Series(dtype=float), f, kind == "categorical"
        )
        for f, kind in features.items()
    )
    summary = (
        f"drift in {', '.join(drifted)}"
        if drifted
        else ("no drift" if judged else f"not judged: {len(current)} rows < {drift.min_rows}")
    )
    yield dg.AssetCheckResult(
        check_name="drift_within_limits",
        passed=not drifted,
        severity=dg.AssetCheckSeverity.WARN,
        metadata={"drifted_features": ", ".join(drifted) or "none", "rows": len(current), "against": against},
        description=summary,
    )
    context.log.info(f"{context.partition_key}: {summary} ({len(current)} rows over {len(days)} day(s))")
    new_batches = new_data_since_training(context.instance)
    if drifted:
        next_step = (
            f"{new_batches} new labelled batch(es) since the last training: retraining is requested"
            if new_batches
            else "no new labelled data since the last training: retraining would change nothing, waiting"
        )
        alerts.send(f"mlops-assets: drift on {context.partition_key} in {', '.join(drifted)}; {next_step}")
    yield dg.Output(
        {
            "day": context.partition_key,
            "days": days,
            "rows": len(current),
            "drifted": drifted,
            "table": table.to_dict(orient="records"),
            "against": against,
        },
        metadata={
            "summary": summary,
            "drifted": bool(drifted),
            NEW_BATCHES: new_batches,
            "rows": len(current),
            "window_days": dg.MetadataValue.json(days),
            "against": against,
            "table": dg.MetadataValue.md(markdown.table(table)),
            "plots": dg.MetadataValue.md(plots),
        },
    )
