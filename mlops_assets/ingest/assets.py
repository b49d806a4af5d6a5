"""Ingest: each landed file is a partition, checked, then validated; passing batches become training data."""

import os
from collections import Counter

import dagster as dg

from mlops_assets import quiet_api_stage_warnings
from mlops_assets.core import markdown
from mlops_assets.core.project import ModelProjectResource
from mlops_assets.core.stage_lock import StageLock
from mlops_assets.core.storage import StorageResource, asset_path
from mlops_assets.ingest.batches import file_sha256, first_rows
from mlops_assets.ingest.checked import DRIFT_RULE, CheckedBatch, checked_batch
from mlops_assets.ingest.config import ValidationConfig
from mlops_assets.ingest.feedback_batch import feedback_batch, feedback_files
from mlops_assets.ingest.reference import merged_reference, read_reference, write_reference
from mlops_assets.ingest.training_data import lacking_columns, manifest_of, write_snapshot
from mlops_assets.ingest.validation import BLOCKING_RULES
from mlops_assets.project.metrics import class_shortage

quiet_api_stage_warnings()  # before the partitioned checks below are declared
LANDING_PREFIX = "landing"
landed_files = dg.DynamicPartitionsDefinition(name="landed_files")


def landing_path(partition_key: str) -> str:
    return f"{LANDING_PREFIX}/{partition_key}"


@dg.asset(
    partitions_def=landed_files,
    group_name="ingest",
    kinds={"csv"},
    description=(
        "An immutable copy of one file as it landed under landing/ (partition = file name), read and "
        "checked in one pass, a chunk of rows at a time. A file that does not read as a CSV fails "
        "here, with why: its partition shows failed, not landed."
    ),
)
def landed_batch(
    context: dg.AssetExecutionContext,
    storage: StorageResource,
    validation: ValidationConfig,
    project: ModelProjectResource,
) -> dg.Output[dict]:
    path = landing_path(context.partition_key)
    store = storage.get()
    if not store.exists(path):
        raise dg.Failure(f"{path}: no such file in storage {store.root_url}")
    copy = asset_path(landed_batch.key, context.partition_key, "csv")
    # The copy is what every step after this reads: landing/ may change meanwhile.
    with store.copied(path, copy) as local:
        landed = {"copy": copy, "sha256": file_sha256(local), "bytes": os.path.getsize(local)}
        metadata = {"source": store.uri(path), "bytes": landed["bytes"], "sha256": landed["sha256"]}
        # The one pass, streamed: the checks and the gate read what it found.
        checked = _checked(store, path, landed, validation, project, local_path=local)
    unreadable = checked.outcomes["parse"]
    if (
        not unreadable.passed
    ):  # the file stays in landing/: nothing is lost, a fixed version lands as a new run
        raise dg.Failure("; ".join(unreadable.problems), metadata=metadata)
    return dg.Output(landed, metadata=metadata, data_version=dg.DataVersion(landed["sha256"][:16]))


def _checked(
    store,
    path: str,
    landed: object,
    validation: ValidationConfig,
    project: ModelProjectResource,
    local_path: str | None = None,
) -> CheckedBatch:
    if not isinstance(landed, dict):  # the bytes a version before kept copies stored as the value
        raise dg.Failure(
            f"{path}: landed by an earlier version, which kept no copy to check; "
            "materialize landed_batch for it again (the file is still in landing/)"
        )
    thresholds, reference = validation.thresholds(), read_reference(store)
    return checked_batch(
        store, path, landed, project.get().spec, thresholds, reference, validation.chunk_rows, local_path
    )


def _check_result(outcome, severity: dg.AssetCheckSeverity) -> dg.AssetCheckResult:
    metadata = {"message": outcome.message}
    if outcome.notes:
        metadata["note"] = "; ".join(outcome.notes)
    if outcome.problems:
        metadata["problems"] = dg.MetadataValue.md(
            "\n".join(f"- {markdown.escape(p)}" for p in outcome.problems)
        )
    for key, value in outcome.metadata.items():
        metadata[key] = dg.MetadataValue.json(value) if isinstance(value, dict) else value
    return dg.AssetCheckResult(
        passed=outcome.passed, severity=severity, metadata=metadata, description=outcome.message
    )


def _landed_check(name: str, description: str, blocking: bool) -> dg.AssetChecksDefinition:
    """A rule as a check of landed_batch. A blocking rule's failure is an ERROR that validated_batch's
    gate enforces: its step failure, the run's headline, names the file, the rule and the first
    offending rows. (Dagster's own blocking flag would fail the run with only the checks' names.)"""
    severity = dg.AssetCheckSeverity.ERROR if blocking else dg.AssetCheckSeverity.WARN

    # partitions_def makes the check load only its own partition of landed_batch, not all of them.
    @dg.asset_check(
        asset=landed_batch,
        name=name,
        description=description,
        blocking=False,
        partitions_def=landed_files,
    )
    def _check(
        context: dg.AssetCheckExecutionContext,
        landed_batch: object,  # a dict; bytes where an earlier version stored the value (see _checked)
        validation: ValidationConfig,
        project: ModelProjectResource,
        storage: StorageResource,
    ) -> dg.AssetCheckResult:
        path = landing_path(context.partition_key)
        outcome = _checked(storage.get(), path, landed_batch, validation, project).outcomes[name]
        return _check_result(outcome, severity)

    return _check


landed_batch_checks = [
    _landed_check(name, description, blocking=True) for name, (_, description) in BLOCKING_RULES.items()
] + [
    _landed_check(
        DRIFT_RULE,
        "Warning only: mean/std shift and a two-sample KS test against the reference.",
        blocking=False,
    )
]


@dg.asset(
    partitions_def=landed_files,
    group_name="ingest",
    kinds={"parquet"},
    description=(
        "The batch typed, only if it passes every blocking rule: the gate (its failure names the "
        "file, each rule and the first offending rows). Its value is where the typed rows are kept "
        "(batches/<sha256>.parquet, never changed) with their digest, rows and columns."
    ),
)
def validated_batch(
    context: dg.AssetExecutionContext,
    landed_batch: object,  # a dict; bytes where an earlier version stored the value (see _checked)
    validation: ValidationConfig,
    project: ModelProjectResource,
    storage: StorageResource,
) -> dg.Output[dict]:
    path, store = landing_path(context.partition_key), storage.get()
    checked = _checked(store, path, landed_batch, validation, project)
    # The gate: materialising this asset alone can never let a bad batch through either.
    failures = checked.failed()
    if failures:
        problems = [p for outcome in failures for p in outcome.problems]
        raise dg.Failure(
            description="; ".join(problems),
            metadata={"failed_rules": ", ".join(o.rule for o in failures)},
        )
    kept = checked.kept
    assert kept is not None
    ignored = checked.unnamed
    if ignored:
        context.log.warning(f"{path}: {ignored}")
    return dg.Output(
        kept,
        metadata={
            "rows": checked.rows,
            "unnamed_columns": ignored or "none",
            "preview": dg.MetadataValue.md(markdown.table(first_rows(store, kept["path"], 5))),
            "batch": dg.MetadataValue.path(store.uri(kept["path"])),
        },
    )


def _kept(store, asset_key: dg.AssetKey, partition: str) -> dict | None:
    """Where a partition's typed rows are kept (its stored value), or None for one stored by a
    version before batches were kept by reference."""
    path = asset_path(asset_key, partition, "json")
    return store.read_json(path) if store.exists(path) else None


def current_batches(instance: dg.DagsterInstance, store) -> tuple[list[str], list[str]]:
    """The landed files whose present version passed, and why each other validated one is left out.

    "Ever validated" is not enough: a file replaced by a version that failed its checks keeps an
    old validated_batch, and so does a file deleted from landing/.
    """
    live = set(instance.get_dynamic_partitions(landed_files.name))
    latest = instance.event_log_storage.get_latest_storage_id_by_partition
    landed = latest(landed_batch.key, dg.DagsterEventType.ASSET_MATERIALIZATION)
    validated = latest(validated_batch.key, dg.DagsterEventType.ASSET_MATERIALIZATION)
    present = {file.path for file in store.list_files(LANDING_PREFIX, versions=False)}
    passed, left_out = [], []
    for key in sorted(set(validated) & live):
        if landing_path(key) not in present:
            left_out.append(f"{key}: no longer under {LANDING_PREFIX}/")
        elif landed.get(key, 0) > validated[key]:
            left_out.append(f"{key}: its newest version did not pass its checks")
        else:
            passed.append(key)
    return passed, left_out


@dg.asset(
    deps=[validated_batch, feedback_batch],
    group_name="training",
    kinds={"pandas", "parquet"},
    description=(
        "Every batch that passed validation, as an immutable snapshot named by its content hash. "
        "Gathered from the instance's materialised partitions: a batch that failed never was."
    ),
)
def training_data(
    context: dg.AssetExecutionContext,
    project: ModelProjectResource,
    storage: StorageResource,
    stage_lock: StageLock,  # held for the whole run: one run of this stage at a time
) -> dg.Output[dict]:
    store, spec = storage.get(), project.get().spec
    passed, left_out = current_batches(context.instance, store)
    for reason in left_out:
        context.log.warning(f"left out of training data: {reason}")
    if not passed:
        raise dg.Failure(
            "no validated batch to train on: land a file under landing/ and run ingest_job"
            + (f" (left out: {'; '.join(left_out)})" if left_out else "")
        )
    batches, legacy = {}, []
    for key in passed:
        kept = _kept(store, validated_batch.key, key)
        if kept is None:
            legacy.append(key)
        else:
            batches[key] = kept
    # Labelled production rows (feedback_batch partitions that passed the same rules).
    live_feedback = set(context.instance.get_dynamic_partitions(feedback_files.name))
    for key in sorted(context.instance.get_materialized_partitions(feedback_batch.key) & live_feedback):
        kept = _kept(store, feedback_batch.key, key)
        if kept is None:
            legacy.append(f"labels/{key}")
        elif kept["rows"]:
            batches[f"labels/{key}"] = kept
    for key in legacy:  # a batch validated by a version before batches were kept by reference
        reason = f"{key}: validated before batches were kept by their digest (run its ingest again)"
        context.log.warning(f"left out of training data: {reason}")
        left_out.append(reason)
    # A batch validated before the spec gained a column has no values for it: it cannot feed a
    # model that takes the column, so it is left out (landed again with the column, it counts).
    for key, missing in lacking_columns(batches, list(spec.columns)).items():
        reason = (
            f"{key}: lacks {', '.join(missing)} (validated before the spec listed it; land it again with it)"
        )
        context.log.warning(f"left out of training data: {reason}")
        left_out.append(reason)
        del batches[key]
    if not any(not key.startswith("labels/") for key in batches):
        raise dg.Failure(f"no validated batch to train on (left out: {'; '.join(left_out)})")
    # Statistics, not rows: the code location never reads the batches (the trainer does).
    statistics = [store.read_json(kept["statistics"]) for kept in batches.values()]
    target = spec.target
    classes = Counter()
    for batch in statistics:
        classes.update(batch["classes"].get(target.name, {}))
    rows = sum(kept["rows"] for kept in batches.values())
    problem = class_shortage(spec.task, target.name, set(classes), rows, "the training data")
    if problem is not None:  # a data rule of the whole: each batch may hold one class, not all of them
        raise dg.Failure(f"{problem}; batches: {', '.join(sorted(batches))}")
    snapshot = write_snapshot(store, manifest_of(store, batches, list(spec.columns)))
    write_reference(store, merged_reference(statistics, spec, source=snapshot.uri))
    context.log.info(
        f"training data {snapshot.data_version}: {snapshot.rows} rows from {len(batches)} batches"
    )
    return dg.Output(
        {**snapshot.to_dict(), "left_out": left_out},
        metadata={
            "data_version": snapshot.data_version,
            "rows": snapshot.rows,
            "batches": len(batches),
            "batch_names": ", ".join(sorted(batches)),
            "left_out": "; ".join(left_out) or "none",
            "snapshot": dg.MetadataValue.path(snapshot.uri),
        },
        data_version=dg.DataVersion(snapshot.data_version),
    )
