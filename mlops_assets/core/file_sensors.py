"""File sensors: each new or changed file under a storage prefix becomes a partition and one run.

Decided from the instance (existing partitions, runs with the same run key), never from a cursor
alone, and capped per tick. Used by landing/ and labels/ (ingest) and scoring-input/ (batch).
"""

import posixpath
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import dagster as dg

from mlops_assets.core.partition_names import unusable_name
from mlops_assets.core.storage import Storage, StorageResource, StoredFile

RUN_KEY_TAG = "dagster/run_key"
SENSOR_NAME_TAG = "dagster/sensor_name"
MAX_RUNS_PER_TICK = 25


def is_ready(file: StoredFile) -> bool:
    """Uploaders write to a dot-, underscore- or .tmp/.part-named file, then rename it into place."""
    name = file.name
    return not (name.startswith((".", "_")) or name.endswith((".tmp", ".part")) or ".tmp-" in name)


@dataclass
class FilePlan:
    new_partitions: list[str] = field(default_factory=list)
    run_requests: list[dg.RunRequest] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files no run can take, each with its reason
    settling: list[str] = field(default_factory=list)  # changed too recently: looked at next tick


def run_keys_with_prefix(instance: dg.DagsterInstance, prefix: str) -> set[str]:
    """Every run key starting with ``prefix`` that has a run, in one query (not one per file)."""
    found = instance.get_run_tags(tag_keys=[RUN_KEY_TAG], value_prefix=prefix or None)
    return next((values for key, values in found if key == RUN_KEY_TAG), set())


def plan_files(
    storage: Storage,
    instance: dg.DagsterInstance,
    prefix: str,
    partitions: dg.DynamicPartitionsDefinition,
    job_name: str,
    run_key_prefix: str = "",
    limit: int = MAX_RUNS_PER_TICK,
    settle_seconds: float = 0.0,
) -> FilePlan:
    """New or changed files under ``prefix``: decided from the instance (partitions, run keys).

    A file modified less than ``settle_seconds`` ago may still be being written under its final
    name (a copy in progress): it waits for a later tick, whatever its content says so far.
    """
    existing = set(instance.get_dynamic_partitions(partitions.name))
    launched = run_keys_with_prefix(instance, run_key_prefix)
    plan = FilePlan()
    now = time.time()
    for file in storage.list_files(prefix):
        if not is_ready(file):
            continue
        if settle_seconds and file.modified and now - file.modified < settle_seconds:
            plan.settling.append(file.path)
            continue
        key = posixpath.relpath(file.path, prefix)
        problem = unusable_name(key)
        if problem:
            plan.skipped.append(f"{file.path}: skipped, {problem}; rename it")
            continue
        run_key = f"{run_key_prefix}{key}@{file.version}"
        if run_key in launched:
            continue
        if key not in existing:
            plan.new_partitions.append(key)
        plan.run_requests.append(dg.RunRequest(partition_key=key, run_key=run_key, job_name=job_name))
        if len(plan.run_requests) >= limit:
            break
    return plan


def build_file_sensor(
    name: str,
    job: Any,
    partitions: dg.DynamicPartitionsDefinition,
    plan: Callable[[Storage, dg.DagsterInstance], FilePlan],
    status: dg.DefaultSensorStatus,
    interval: int,
    description: str,
) -> dg.SensorDefinition:
    """A sensor turning each new or changed file ``plan`` finds into a partition and one run."""

    @dg.sensor(
        name=name, job=job, minimum_interval_seconds=interval, default_status=status, description=description
    )
    def file_sensor(context: dg.SensorEvaluationContext, storage: StorageResource) -> dg.SensorResult:
        found = plan(storage.get(), context.instance)
        for reason in found.skipped:
            context.log.warning(reason)
        requests = [partitions.build_add_request(found.new_partitions)] if found.new_partitions else []
        return dg.SensorResult(run_requests=found.run_requests, dynamic_partitions_requests=requests)

    return file_sensor
