"""feedback_batch: one labels file under labels/, joined with the compacted scoring logs, checked like a batch."""

import hashlib
import tempfile
import time

import dagster as dg
import pandas as pd
import pyarrow.parquet as pq
from pydantic import Field

from mlops_assets.core import keys
from mlops_assets.core.project import ModelProjectResource
from mlops_assets.core.storage import StorageResource, asset_path, load_stored_value
from mlops_assets.ingest.batches import keep_batch, typed_table
from mlops_assets.ingest.config import ValidationConfig
from mlops_assets.ingest.feedback import LabelsError, join_labels, read_labels
from mlops_assets.ingest.reference import read_reference
from mlops_assets.ingest.tally import BatchTally
from mlops_assets.ingest.validation import failed_rules, parse_batch, typed_frame

LABELS_PREFIX = "labels"
feedback_files = dg.DynamicPartitionsDefinition(name="feedback_files")
LOOKBACK_DAYS = 30
PENDING = "pending"


class FeedbackConfig(dg.ConfigurableResource):
    wait_hours: float = Field(
        default=48,
        gt=0,
        description="How long a label whose request is not compacted yet waits before it is unknown.",
    )


def compacted_logs(instance: dg.DagsterInstance, storage) -> tuple[pd.DataFrame, list[str]]:
    days = sorted(instance.get_materialized_partitions(keys.SCORING_LOGS))[-LOOKBACK_DAYS:]
    frames = [load_stored_value(storage, asset_path(keys.SCORING_LOGS, day, "parquet")) for day in days]
    frames = [f for f in frames if len(f)]
    if not frames:
        return pd.DataFrame(columns=["request_id", "row_index"]), days
    return pd.concat(frames, ignore_index=True), days


@dg.asset(
    partitions_def=feedback_files,
    group_name="feedback",
    kinds={"parquet"},
    description=(
        "One labels file (request_id, row_index and the target column) joined with the scored rows it labels, "
        "through the same blocking rules as a landed batch; pending and unknown labels reported. Its "
        "value is where the labelled rows are kept (batches/<sha256>.parquet), as validated_batch's."
    ),
)
def feedback_batch(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    validation: ValidationConfig,
    feedback: FeedbackConfig,
    project: ModelProjectResource,
) -> dg.Output[dict]:
    store, spec = storage.get(), project.get().spec
    path = f"{LABELS_PREFIX}/{context.partition_key}"
    if not store.exists(path):
        raise dg.Failure(f"{path}: not in storage (deleted after it was seen?)")
    try:
        labels = read_labels(path, store.read_bytes(path), spec)
    except LabelsError as exc:
        raise dg.Failure(str(exc)) from exc
    logs, days = compacted_logs(context.instance, store)
    age_hours = (time.time() - store.modified(path)) / 3600
    joined = join_labels(labels, logs, still_waiting=age_hours < feedback.wait_hours, spec=spec)
    frame, kept = joined.frame, {"rows": 0}
    if joined.matched:
        raw = joined.frame.to_csv(index=False).encode()
        checked = parse_batch(path, raw)
        tally = BatchTally(path, spec, salt=int(hashlib.sha256(raw).hexdigest()[:15], 16))
        tally.add(checked)
        failures = failed_rules(tally, spec, validation.thresholds(), read_reference(store))
        if failures:
            raise dg.Failure(
                description="; ".join(p for outcome in failures for p in outcome.problems),
                metadata={"failed_rules": ", ".join(o.rule for o in failures)},
            )
        frame = typed_frame(checked, spec)
        kept = _keep(store, frame, spec, tally)
    production = _production_metrics(spec, frame, joined.predictions)
    context.log.info(
        f"{path}: {joined.matched} matched, {len(joined.pending)} pending, {len(joined.unknown)} unknown"
    )
    return dg.Output(
        kept,
        metadata={
            "labels": len(labels),
            "matched": joined.matched,
            PENDING: len(joined.pending),
            "unknown": len(joined.unknown),
            "unknown_examples": "; ".join(joined.unknown[:5]) or "none",
            "pending_examples": ", ".join(joined.pending[:5]) or "none",
            "days_searched": f"{days[0]} .. {days[-1]} ({len(days)})" if days else "none compacted yet",
            **production,
        },
    )


def _keep(store, frame: pd.DataFrame, spec, tally: BatchTally) -> dict:
    with tempfile.TemporaryDirectory(prefix="mlops-feedback-") as folder:
        local = f"{folder}/labelled.parquet"
        pq.write_table(typed_table(frame, spec), local)
        return keep_batch(store, local, tally.statistics())


def _production_metrics(spec, frame: pd.DataFrame, predictions: list) -> dict[str, float]:
    """The task's label metrics of what production answered for the rows labelled here, as
    ``production_<metric>`` (numbers in the metadata: the UI plots them across labels files)."""
    if not len(frame) or any(p is None for p in predictions):
        return {}
    import numpy as np

    from mlops_assets.project.metrics import label_metrics

    actual = frame[spec.target.name].to_numpy()
    predicted = np.asarray(predictions, dtype=actual.dtype)
    return {
        f"production_{name}": round(value, 6)
        for name, value in label_metrics(spec.task, actual, predicted).items()
    }
