"""production_health_sensor against a real local production (a supervised process on 127.0.0.1),
a real Dagster instance and a real webhook receiver: hung, lost outright, stopped on purpose."""

import os
import signal
import time
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.release.automation import HEALTH_SENSOR
from mlops_assets.release.local_processes import LocalTarget
from mlops_assets.settings import get_settings
from mlops_assets_tests.release_support import register
from mlops_assets_tests.serving_support import free_port

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
