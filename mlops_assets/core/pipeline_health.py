"""How fresh the pipeline is and whether its sensors fail, read from the Dagster instance.

One reading serves both alert paths: ``production_health_sensor`` evaluates it in the daemon, and
`mlops-assets pipeline-metrics` exports it to Prometheus (``PipelineCollector``), read afresh at
each scrape.
"""

from __future__ import annotations

from dataclasses import dataclass

import dagster as dg

from mlops_assets.core import keys

# A stage is fresh when its asset was last materialized: new data validated, a model trained
# (whether or not the gate then registered it).
FRESHNESS_STAGES: dict[str, dg.AssetKey] = {"ingest": keys.VALIDATED_BATCH, "retrain": keys.CANDIDATE_MODEL}
TICKS_LOOKED_AT = 20  # a sensor failing longer than this reads as this many


@dataclass(frozen=True)
class PipelineFigures:
    last_success: dict[str, float | None]  # stage -> unix time of its asset's last materialization
    failed_ticks: dict[str, int]  # sensor -> its newest ticks that failed, in a row


def _failed_in_a_row(ticks) -> int:
    from dagster._core.scheduler.instigation import TickStatus

    count = 0
    for tick in ticks:  # newest first
        if tick.status == TickStatus.STARTED and count == 0:
            continue  # the tick in progress has not failed yet
        if tick.status != TickStatus.FAILURE:
            break
        count += 1
    return count


def pipeline_figures(instance: dg.DagsterInstance) -> PipelineFigures:
    from dagster._core.definitions.run_request import InstigatorType

    last_success = {}
    for stage, key in FRESHNESS_STAGES.items():
        event = instance.get_latest_materialization_event(key)
        last_success[stage] = None if event is None else event.timestamp
    failed: dict[str, int] = {}
    for state in instance.all_instigator_state(instigator_type=InstigatorType.SENSOR):
        ticks = instance.get_ticks(state.instigator_origin_id, state.selector_id, limit=TICKS_LOOKED_AT)
        name = state.instigator_name
        failed[name] = max(failed.get(name, 0), _failed_in_a_row(ticks))
    return PipelineFigures(last_success, failed)


class PipelineCollector:
    """A prometheus_client collector: each scrape reads the instance once."""

    def __init__(self, instance: dg.DagsterInstance) -> None:
        self.instance = instance

    def collect(self):
        from prometheus_client.core import GaugeMetricFamily

        figures = pipeline_figures(self.instance)
        last = GaugeMetricFamily(
            "mlops_pipeline_last_success_timestamp_seconds",
            "When each stage's asset was last materialized (ingest: validated_batch, retrain: "
            "candidate_model); absent until it first is.",
            labels=["stage"],
        )
        for stage, when in figures.last_success.items():
            if when is not None:
                last.add_metric([stage], when)
        yield last
        ticks = GaugeMetricFamily(
            "mlops_sensor_failed_ticks",
            f"A sensor's newest ticks that failed, in a row (at most {TICKS_LOOKED_AT}).",
            labels=["sensor"],
        )
        for sensor, count in sorted(figures.failed_ticks.items()):
            ticks.add_metric([sensor], count)
        yield ticks


def serve_pipeline_metrics(instance: dg.DagsterInstance, host: str, port: int):
    """Serve /metrics on host:port in a thread; returns the server (``shutdown()`` stops it)."""
    from prometheus_client import CollectorRegistry, start_http_server

    registry = CollectorRegistry(auto_describe=False)
    registry.register(PipelineCollector(instance))
    server, _ = start_http_server(port, addr=host, registry=registry)
    return server
