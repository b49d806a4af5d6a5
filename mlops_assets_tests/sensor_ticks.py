"""Sensor ticks written into a real instance, as the sensor daemon writes them, without a daemon.

Starting `dagster-daemon` to watch a sensor fail three times costs half a minute a test; the
records it would write (an instigator state and its ticks) are written here instead, with the
same Dagster types, so what reads them (core/pipeline_health.py) reads real storage.
"""

import time

import dagster as dg
from dagster._core.definitions.run_request import InstigatorType
from dagster._core.remote_origin import (
    GrpcServerCodeLocationOrigin,
    RemoteInstigatorOrigin,
    RemoteRepositoryOrigin,
)
from dagster._core.scheduler.instigation import (
    InstigatorState,
    InstigatorStatus,
    SensorInstigatorData,
    TickData,
    TickStatus,
)
from dagster._utils.error import SerializableErrorInfo


def write_ticks(instance: dg.DagsterInstance, sensor: str, statuses: list[TickStatus]) -> None:
    """``statuses`` oldest first, a second apart, ending now."""
    origin = RemoteInstigatorOrigin(
        RemoteRepositoryOrigin(
            GrpcServerCodeLocationOrigin("127.0.0.1", 4000, location_name="mlops"), "__repository__"
        ),
        sensor,
    )
    state = InstigatorState(origin, InstigatorType.SENSOR, InstigatorStatus.RUNNING, SensorInstigatorData())
    if instance.get_instigator_state(state.instigator_origin_id, state.selector_id) is None:
        instance.add_instigator_state(state)
    now = time.time()
    for age, status in enumerate(reversed(statuses)):
        failed = status == TickStatus.FAILURE
        instance.create_tick(
            TickData(
                instigator_origin_id=state.instigator_origin_id,
                instigator_name=sensor,
                instigator_type=InstigatorType.SENSOR,
                status=status,
                timestamp=now - age,
                selector_id=state.selector_id,
                run_ids=[],
                run_keys=[],
                error=SerializableErrorInfo("storage refused the listing", [], "OSError") if failed else None,
            )
        )
