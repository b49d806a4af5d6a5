"""production_health_sensor against a real local production (a supervised process on 127.0.0.1),
a real Dagster instance and a real webhook receiver: hung, lost outright, stopped on purpose, and
the alert rules' conditions (core/alert_rules.py) as it posts them."""

import os
import signal
import time
from dataclasses import replace
from pathlib import Path

import dagster as dg
import httpx
import pytest
from dagster._core.scheduler.instigation import TickStatus

from mlops_assets.core import keys
from mlops_assets.core.alert_rules import AlertThresholds
from mlops_assets.hosting.processes import LocalTarget
from mlops_assets.hosting.state import point_link
from mlops_assets.release.automation import HEALTH_SENSOR, build_health_sensor
from mlops_assets.settings import get_settings
from mlops_assets_tests.release_support import register
from mlops_assets_tests.sensor_ticks import write_ticks
from mlops_assets_tests.serving_support import free_port, write_release

pytestmark = pytest.mark.slow


@pytest.fixture
def stage(settings, instance, webhook, monkeypatch):
    from mlops_assets.definitions import build_definitions
    from mlops_assets.ops.runner import release

    monkeypatch.setenv("MLOPS_QA_PORT", str(free_port()))
    monkeypatch.setenv("MLOPS_PRODUCTION_PORT", str(free_port()))
    monkeypatch.setenv("MLOPS_ALERT_WEBHOOK_URL", webhook.url)
    get_settings.cache_clear()
    ported = get_settings()
    defs = build_definitions(ported)
    one = register(defs, 0.5)
    assert release(defs, instance, ported.lock_dir, one).success
    yield defs, ported, one
    local = LocalTarget(ported.home_dir)
    for deployment in local.list():
        local.stop(deployment.name)
    get_settings.cache_clear()


def _tick(defs, instance, cursor: str | None):
    sensor = defs.resolve_sensor_def(HEALTH_SENSOR)
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources) as context:
        result = sensor(context)
    return result, context.cursor if result.cursor is None else result.cursor


def test_a_hung_production_is_alerted_once_and_its_recovery_too(stage, instance, webhook):
    defs, settings, _ = stage
    result, cursor = _tick(defs, instance, None)
    assert result.skip_reason.skip_message == "production serving" and not webhook.received
    service = LocalTarget(settings.home_dir).get("production").status["service_pid"]
    os.kill(service, signal.SIGSTOP)  # alive, supervised, recorded, answering nothing
    try:
        result, cursor = _tick(defs, instance, cursor)
        assert not result.run_requests  # a hung service is alerted, not replaced
        (alert,) = webhook.received
        assert (
            "production not answering at http://127.0.0.1:" in alert["text"]
            and alert["sensor"] == HEALTH_SENSOR
        )
        _tick(defs, instance, cursor)
        assert len(webhook.received) == 1  # the same problem: said once
    finally:
        os.kill(service, signal.SIGCONT)
    result, cursor = _tick(defs, instance, cursor)
    assert "production answers again" in webhook.received[-1]["text"]


def test_production_lost_outright_is_released_again_and_a_stopped_one_is_left_alone(stage, instance, webhook):
    defs, settings, one = stage
    local = LocalTarget(settings.home_dir)
    serving = local.get("production")
    service = serving.status["service_pid"]
    os.kill(serving.pid, signal.SIGKILL)  # the supervisor alone: its service must not linger
    deadline = time.monotonic() + 15
    while _serving(service):
        assert time.monotonic() < deadline, "the service outlived its supervisor"
        time.sleep(0.1)

    result, cursor = _tick(defs, instance, None)
    (request,) = result.run_requests
    assert request.partition_key == str(one) and request.tags["mlops/trigger"] == "health-restore"
    assert request.run_key == f"restore-{serving.deployment_id}"  # the loss itself: pids recur
    assert f"version {one} at {serving.url} is gone" in webhook.received[-1]["text"]
    again, _ = _tick(defs, instance, cursor)
    assert [r.run_key for r in again.run_requests] == [request.run_key]  # the same loss: one run key

    from mlops_assets.ops.runner import release

    assert release(defs, instance, settings.lock_dir, one, request.tags).success
    result, cursor = _tick(defs, instance, cursor)
    assert result.skip_reason.skip_message == "production serving" and local.lost("production") is None

    local.stop("production")  # `mlops-assets down`: on purpose
    result, _ = _tick(defs, instance, cursor)
    assert result.skip_reason.skip_message == "production stopped" and not result.run_requests


def _serving(pid: int) -> bool:
    try:
        return b"mlops-assets" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_the_alert_rules_are_posted_when_they_start_and_when_they_clear(stage, instance, webhook, tmp_path):
    """The rules' local twins over a real production's /metrics and the real instance: a refused
    model, a stale ingest and a failing sensor are each posted once, and their end too."""
    defs, settings, _ = stage
    thresholds = replace(AlertThresholds.from_settings(settings), ingest_days=0.5 / 86400)  # half a second
    # The baseline tick with a day's patience: however long it takes, ingest is not stale yet.
    sensor = build_health_sensor(dg.DefaultSensorStatus.STOPPED, replace(thresholds, ingest_days=1.0))

    def tick(cursor):
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources=defs.resources) as context:
            result = sensor(context)
        return result, result.cursor

    def posted() -> dict[str, str]:
        return {a["alert"]: a["text"] for a in webhook.received if "alert" in a}

    instance.report_runless_asset_event(dg.AssetMaterialization(keys.VALIDATED_BATCH))
    result, cursor = tick(None)  # the first read of /metrics: a baseline, no window yet
    assert result.skip_reason.skip_message == "production serving" and not webhook.received

    time.sleep(1)  # past the half second: stale at the next tick
    sensor = build_health_sensor(dg.DefaultSensorStatus.STOPPED, thresholds)
    write_ticks(instance, "landing_sensor", [TickStatus.FAILURE] * thresholds.failed_ticks)
    production = LocalTarget(settings.home_dir).get("production")
    link, served = Path(production.model_link), Path(production.model_link).resolve()
    write_release(tmp_path / "tampered", version=99, tamper=True)
    point_link(link, tmp_path / "tampered")  # what a corrupted release folder looks like to the service
    deadline = time.monotonic() + 20
    while "scoring_model_load_failures_total 1.0" not in httpx.get(f"{production.url}/metrics").text:
        assert time.monotonic() < deadline, "the service never refused the tampered model"
        time.sleep(0.2)
    result, cursor = tick(cursor)
    alerts = posted()
    assert set(alerts) == {"ScoringModelRefused", "PipelineIngestStale", "SensorTicksFailing"}, alerts
    assert "models refused by the service: 1" in alerts["ScoringModelRefused"]
    assert "landing_sensor (3 ticks in a row)" in alerts["SensorTicksFailing"]
    assert (
        "firing: PipelineIngestStale, ScoringModelRefused, SensorTicksFailing"
        in result.skip_reason.skip_message
    )
    assert httpx.get(f"{production.url}/health/ready").json()["version"] == str(
        production.version
    )  # still serves

    result, cursor = tick(cursor)
    assert len(webhook.received) == 3  # still firing: not said again
    point_link(link, served)
    write_ticks(instance, "landing_sensor", [TickStatus.SUCCESS])
    instance.report_runless_asset_event(dg.AssetMaterialization(keys.VALIDATED_BATCH))
    thresholds_relaxed = replace(thresholds, ingest_days=1.0)
    sensor = build_health_sensor(dg.DefaultSensorStatus.STOPPED, thresholds_relaxed)
    result, cursor = tick(cursor)
    resolved = [a["text"] for a in webhook.received[3:]]
    assert sorted(resolved) == [
        "mlops-assets: PipelineIngestStale resolved",
        "mlops-assets: SensorTicksFailing resolved",
    ]  # the refusal counts for 15 minutes, as increase(...[15m]) does
    assert "ScoringModelRefused" in result.skip_reason.skip_message
