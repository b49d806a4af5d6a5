"""Runs started in-process (demo, CLI), tagged exactly as the daemon would tag them."""

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg

from mlops_assets.core import keys
from mlops_assets.core.abandoned_runs import fail_abandoned_runs, this_process_tags
from mlops_assets.core.file_sensors import RUN_KEY_TAG, SENSOR_NAME_TAG, FilePlan
from mlops_assets.core.instance import STAGE_TAG
from mlops_assets.core.stage_lock import command_line, hold_stage
from mlops_assets.core.storage import Storage
from mlops_assets.ingest.assets import landed_files
from mlops_assets.ingest.automation import LANDING_SENSOR, plan_landing
from mlops_assets.monitoring.automation import monitoring_job
from mlops_assets.release.assets import model_versions
from mlops_assets.release.automation import release_job
from mlops_assets.training.automation import retraining_job


def stage_lock(lock_dir: Path, stage: str):
    """The stage's lock, for an in-process run and whatever this process decides before it: the
    run itself re-enters it (core/stage_lock.py); runs of other processes wait for it."""

    def say(holder: str) -> None:
        print(f"waiting for the {stage} stage: held by {holder}", file=sys.stderr, flush=True)

    return hold_stage(lock_dir, stage, command_line(), say)


def execute(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    job_name: str,
    lock_dir: Path,
    partition_key: str | None = None,
    tags: dict[str, str] | None = None,
    asset_selection: list[dg.AssetKey] | None = None,
) -> dg.ExecuteInProcessResult:
    job = defs.resolve_job_def(job_name)
    # The run's own event log keeps every DEBUG event; the console gets only warnings and errors.
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    with stage_lock(lock_dir, job.tags.get(STAGE_TAG, job_name)):
        for run_id in fail_abandoned_runs(instance):
            print(f"run {run_id}: its process died mid-run; marked failed", file=sys.stderr, flush=True)
        return job.execute_in_process(
            run_config=quiet,
            instance=instance,
            partition_key=partition_key,
            tags={**(tags or {}), **this_process_tags()},
            asset_selection=asset_selection,
            raise_on_error=False,
        )


def failure_messages(result: dg.ExecuteInProcessResult) -> list[str]:
    messages = []
    for event in result.all_events:
        if not event.is_step_failure:
            continue
        data = event.step_failure_data
        if data.user_failure_data and data.user_failure_data.description:
            messages.append(data.user_failure_data.description)
        elif data.error is not None:
            # Dagster wraps the user's exception ("Error occurred while executing op …"): say both.
            error, said = data.error, [data.error.message.strip().splitlines()[-1]]
            while error.cause is not None:
                error = error.cause
                said.append(error.message.strip().splitlines()[-1])
            messages.append(" ".join(said))
    return messages


@dataclass
class IngestOutcome:
    partition: str
    run_id: str
    success: bool
    rows: int | None = None
    failed_checks: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _ingest_outcome(partition: str, result: dg.ExecuteInProcessResult) -> IngestOutcome:
    outcome = IngestOutcome(partition, result.run_id, result.success)
    for evaluation in result.get_asset_check_evaluations():
        if evaluation.passed:
            if "note" in evaluation.metadata:
                outcome.warnings.append(str(evaluation.metadata["note"].value))
            continue
        message = (
            str(evaluation.metadata["message"].value)
            if "message" in evaluation.metadata
            else evaluation.check_name
        )
        if evaluation.severity == dg.AssetCheckSeverity.WARN:
            outcome.warnings.append(message)
        else:
            outcome.failed_checks.append(message)
    for materialization in result.asset_materializations_for_node("validated_batch"):
        outcome.rows = int(materialization.metadata["rows"].value)
    if not result.success and not outcome.failed_checks:
        outcome.errors = failure_messages(result)
    return outcome


def run_file_plan(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    lock_dir: Path,
    plan: FilePlan,
    partitions: dg.DynamicPartitionsDefinition,
    sensor_name: str,
) -> list[tuple[str, dg.ExecuteInProcessResult]]:
    """A file sensor's plan run in-process, tagged as the daemon would tag its runs."""
    if plan.new_partitions:
        instance.add_dynamic_partitions(partitions.name, plan.new_partitions)
    return [
        (
            request.partition_key,
            execute(
                defs,
                instance,
                request.job_name,
                lock_dir,
                request.partition_key,
                {**request.tags, **sensor_tags(sensor_name, request.run_key)},
            ),
        )
        for request in plan.run_requests
    ]


def ingest_new_files(
    defs: dg.Definitions, instance: dg.DagsterInstance, storage: Storage, lock_dir: Path
) -> list[IngestOutcome]:
    """Evaluate the landing sensor's plan and run each request in-process, as the daemon would."""
    plan = plan_landing(storage, instance)
    done = run_file_plan(defs, instance, lock_dir, plan, landed_files, LANDING_SENSOR)
    return [_ingest_outcome(partition, result) for partition, result in done]


def score_new_files(
    defs: dg.Definitions, instance: dg.DagsterInstance, storage: Storage, lock_dir: Path
) -> list[tuple[str, dg.ExecuteInProcessResult]]:
    """scoring_input_sensor's plan, each request run in-process, as the daemon would."""
    from mlops_assets.batch.assets import scoring_inputs
    from mlops_assets.batch.automation import SCORING_INPUT_SENSOR, plan_scoring_inputs

    plan = plan_scoring_inputs(storage, instance)
    return run_file_plan(defs, instance, lock_dir, plan, scoring_inputs, SCORING_INPUT_SENSOR)


@dataclass
class RetrainOutcome:
    run_id: str
    success: bool
    training_data: dict[str, Any] | None = None
    candidate: dict[str, Any] | None = None
    evaluation: dict[str, Any] | None = None
    registered: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)


def _output(result: dg.ExecuteInProcessResult, node: str) -> Any:
    try:
        return result.output_for_node(node)
    except dg.DagsterInvariantViolationError:  # not produced (failed, or a clean skip)
        return None


def retrain(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    lock_dir: Path,
    tags: dict[str, str] | None = None,
) -> RetrainOutcome:
    result = execute(defs, instance, retraining_job.name, lock_dir, tags=tags)
    return RetrainOutcome(
        run_id=result.run_id,
        success=result.success,
        training_data=_output(result, "training_data"),
        candidate=_output(result, "candidate_model"),
        evaluation=_output(result, "model_evaluation"),
        registered=_output(result, "registered_model"),
        errors=[] if result.success else failure_messages(result),
    )


@dataclass
class ReleaseOutcome:
    version: str
    run_id: str
    success: bool
    qa_passed: bool | None = None
    prod_passed: bool | None = None
    production: dict[str, Any] | None = None
    errors: list[str] = field(default_factory=list)


def release(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    lock_dir: Path,
    version: int | str,
    tags: dict[str, str] | None = None,
) -> ReleaseOutcome:
    """release_job for one version's partition: image, QA, production."""
    version = str(version)
    if not instance.has_dynamic_partition(model_versions.name, version):
        instance.add_dynamic_partitions(model_versions.name, [version])
    result = execute(defs, instance, release_job.name, lock_dir, partition_key=version, tags=tags)
    outcome = ReleaseOutcome(version, result.run_id, result.success)
    for evaluation in result.get_asset_check_evaluations():
        passed = evaluation.passed
        if evaluation.asset_key.to_user_string() == "qa_deployment":
            outcome.qa_passed = passed
        else:
            outcome.prod_passed = passed
    outcome.production = _output(result, "prod_deployment")
    if not result.success:
        outcome.errors = failure_messages(result)
    return outcome


@dataclass
class MonitorOutcome:
    day: str
    run_id: str
    success: bool
    logs: dict[str, Any] = field(default_factory=dict)  # scoring_logs metadata
    drift: dict[str, Any] = field(default_factory=dict)  # drift_report metadata
    errors: list[str] = field(default_factory=list)


def monitor(
    defs: dg.Definitions,
    instance: dg.DagsterInstance,
    lock_dir: Path,
    day: str,
    tags: dict[str, str] | None = None,
) -> MonitorOutcome:
    """monitoring_job for one day: compact the scoring logs, then the drift report."""
    result = execute(defs, instance, monitoring_job.name, lock_dir, partition_key=day, tags=tags)

    def metadata(node: str) -> dict[str, Any]:
        found = result.asset_materializations_for_node(node)
        return {k: v.value for k, v in found[0].metadata.items()} if found else {}

    return MonitorOutcome(
        day,
        result.run_id,
        result.success,
        metadata("scoring_logs"),
        metadata("drift_report"),
        [] if result.success else failure_messages(result),
    )


def sensor_tags(sensor_name: str, run_key: str) -> dict[str, str]:
    """The tags the daemon puts on a sensor's run, so it will not launch the same run again."""
    return {RUN_KEY_TAG: run_key, SENSOR_NAME_TAG: sensor_name}


REASON_TAG = "mlops/reason"


def previous_champion(versions: list, current: int) -> int | None:
    """The newest version before ``current`` that production served (now marked superseded)."""
    earlier = [v.version for v in versions if v.version < current and v.release_state == "superseded"]
    return max(earlier, default=None)


def rollback_target(defs: dg.Definitions, champion: int) -> int:
    """The version that served before the last production change, read from the production event
    log whatever its number (promote 1, then rollback, goes back to what served before 1). A home
    without a log (older than it) falls back to the newest superseded version before the champion."""
    from mlops_assets.release.events import event_log_key, read_log, version_before_last_change
    from mlops_assets.settings import get_settings

    log = read_log(defs.resources["storage"].get(), event_log_key(get_settings()))
    log.require_intact()
    events = log.trusted
    if events:
        before, last = version_before_last_change(events)
        if last is not None and last.to_version != str(champion):
            raise ValueError(
                f"the event log's last production change ({last.action} to version {last.to_version}, "
                f"{last.time}) is not what serves (version {champion}): events are missing, so "
                "nothing follows it; promote the version you want instead"
            )
        if before is None:
            raise ValueError(
                f"nothing to roll back to: the last production change ({last.action} of version "
                f"{last.to_version}, {last.time}) had no version serving before it"
            )
        return int(before)
    target = previous_champion(defs.resources["registry"].get_registry().list_versions(), champion)
    if target is None:
        raise ValueError(f"nothing to roll back to: no version before {champion} was in production")
    return target


def rollback(
    defs: dg.Definitions, instance: dg.DagsterInstance, lock_dir: Path, reason: str, by: str = ""
) -> ReleaseOutcome:
    """Production back to the version that served before the last change, with the reason."""
    from mlops_assets.release.events import BY_TAG

    models = defs.resources["registry"].get_registry()
    # Decided and done under the release lock: no release may change production in between.
    with stage_lock(lock_dir, release_job.tags[STAGE_TAG]):
        champion = models.get_alias("production")
        if champion is None:
            raise ValueError("nothing to roll back: no version has the production alias")
        target = rollback_target(defs, champion.version)
        tags = {
            REASON_TAG: reason,
            "mlops/trigger": "manual-rollback",
            "mlops/rolled_back_from": str(champion.version),
            **({BY_TAG: by} if by else {}),
        }
        selection = [keys.PROD_DEPLOYMENT]
        result = execute(
            defs, instance, release_job.name, lock_dir, str(target), tags, asset_selection=selection
        )
        if result.success:
            models.set_tag(champion.version, "release_state", "rolled_back")
    outcome = ReleaseOutcome(str(target), result.run_id, result.success)
    outcome.production = _output(result, "prod_deployment")
    outcome.errors = [] if result.success else failure_messages(result)
    return outcome
