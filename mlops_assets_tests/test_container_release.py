"""QA and production as supervised containers of the image `scoring_image` built: the release as
`mlops-assets promote` runs it, with podman, on 127.0.0.1.

Needs podman and a Python base (`make container-base`). Each container runs with the Kubernetes
manifest's security settings and no network of its own: it accepts on the supervisor's socket.
"""

import json
import os
import signal
import time
from pathlib import Path

import dagster as dg
import httpx
import pytest

from mlops_assets.hosting.engines import Engine, find_engine
from mlops_assets.hosting.image_holds import held
from mlops_assets.hosting.processes import LocalTarget
from mlops_assets.release import build_context
from mlops_assets.serving.keys import add_key, read_keys
from mlops_assets.settings import get_settings
from mlops_assets_tests.release_support import register
from mlops_assets_tests.serving_support import Hammer, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def podman() -> Engine:
    engine = find_engine(("podman",))
    assert engine is not None, "podman does not answer: make container-base installs it and the base image"
    return engine


@pytest.fixture
def on_containers(settings, monkeypatch, podman):
    """Definitions as the local profile makes them when podman answers, on free ports, keeping the
    images of production and the newest version only."""
    from mlops_assets.definitions import build_definitions

    monkeypatch.setenv("MLOPS_KEEP_RELEASES", "1")
    monkeypatch.setenv("MLOPS_IMAGE_ENGINES", "podman")
    monkeypatch.setenv("MLOPS_LOCAL_RUNTIME", "auto")
    monkeypatch.setenv("MLOPS_QA_PORT", str(free_port()))
    monkeypatch.setenv("MLOPS_PRODUCTION_PORT", str(free_port()))
    get_settings.cache_clear()
    ported = get_settings()
    yield ported, build_definitions(ported)
    local = LocalTarget(ported.home_dir)
    for deployment in local.list():
        local.stop(deployment.name)
    get_settings.cache_clear()


def _ours(podman: Engine, home: Path) -> list[str]:
    """Every container of this MLOPS_HOME's deployments, running or not."""
    listed = podman.run("ps", "--all", "--format", "{{.Names}}", "--filter", "name=^mlops-", timeout=60)
    folders = (
        {p.name for p in (home / "deployments").glob("*/*")} if (home / "deployments").exists() else set()
    )
    return [n for n in listed.stdout.split() if any(n.endswith(f[:12]) for f in folders)]


def _supervisors(home: Path) -> set[int]:
    marker = str(home / "deployments").encode()
    found = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                command = (proc / "cmdline").read_bytes()
            except OSError:
                continue
            if b"mlops-assets-supervise" in command and marker in command:
                found.add(int(proc.name))
    return found


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if answer := predicate():
            return answer
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {timeout} s")


def test_qa_and_production_run_the_tested_image_as_supervised_containers(on_containers, instance, podman):
    from mlops_assets.ops.runner import release

    settings, defs = on_containers
    one, two = register(defs, 0.5), register(defs, 50.0)
    first = release(defs, instance, settings.lock_dir, one)
    assert first.success, first.errors
    production = first.production
    assert production["mode"] == "new container", production
    details = production["details"]
    assert details["runtime"] == "container" and details["container"].startswith("mlops-production-")
    config = json.loads(podman.run("inspect", details["container"], timeout=60).stdout)[0]
    assert config["Config"]["User"] == "10001:10001"
    assert config["HostConfig"]["ReadonlyRootfs"] and config["HostConfig"]["NetworkMode"] == "none"
    assert config["HostConfig"]["CapDrop"] and config["HostConfig"]["Memory"] == 1 << 30
    env = "\n".join(config["Config"]["Env"])
    key = read_keys(settings.keys_file)[0]
    assert key not in env and "MLOPS_SCORING_KEYS=" not in env  # a mounted file, not the environment
    # It runs the image QA tested: the one scoring_image built for this version.
    built = (
        instance.get_latest_materialization_event(dg.AssetKey("scoring_image"))
        .asset_materialization.metadata["image_id"]
        .value
    )
    assert config["Image"] == built and production["image"] == built

    url = production["url"]
    answer = httpx.post(f"{url}/score", json=_sample(), headers={"Authorization": f"Bearer {key}"})
    assert answer.status_code == 200 and answer.headers["x-model-version"] == str(one)
    assert httpx.post(f"{url}/score", json=_sample()).status_code == 401
    # A key added to the keys file (rotation) reaches the container, as it reaches a process.
    rotated = add_key(settings.keys_file)
    _wait(
        lambda: (
            httpx.post(
                f"{url}/score", json=_sample(), headers={"Authorization": f"Bearer {rotated}"}
            ).status_code
            == 200
        ),
        15,
        "the rotated key accepted",
    )
    storage = defs.resources["storage"].get()
    _wait(lambda: list(storage.list_files("scoring-logs")), 15, "the request log in storage")  # from inside

    # The service dies (the container is killed): its supervisor starts it again on the same socket.
    local = LocalTarget(settings.home_dir)
    podman.run("kill", details["container"], timeout=60)
    _wait(lambda: local.get("production").status.get("starts") == 2, 30, "a restart")
    _wait(lambda: _ready(url) == str(one), 60, "serving again after the kill")

    # Version 2 under load: another image, so a container handover on the supervisor's socket.
    with Hammer(url, key, clients=4) as hammer:
        _wait(lambda: len(hammer.statuses) > 100, 30, "traffic")
        second = release(defs, instance, settings.lock_dir, two)
        after = len(hammer.statuses)
        _wait(lambda: len(hammer.statuses) > after + 100, 30, "traffic after the handover")
    assert second.success, second.errors
    assert second.production["mode"] == "container handover (another image)"
    assert hammer.statuses and not hammer.failures(), hammer.failures()
    assert hammer.versions[-1] == str(two)
    running = local.get("production")
    assert _supervisors(settings.home_dir) == {running.pid}  # the old supervisor drained and exited
    assert _ours(podman, settings.home_dir) == [running.container]  # QA and the old container: gone
    # Version 1's image: no alias names it, nothing runs it, not the newest: removed with its
    # context; this home holds version 2's alone (MLOPS_KEEP_RELEASES=1).
    assert not podman.has_image(built)
    assert list(held(podman, settings.home_dir).values()) == [second.production["image"]]

    # The supervisor itself killed outright (and the engine's client with it), not the container:
    # the next look at the deployment removes the container, nothing is left running.
    os.killpg(running.pid, signal.SIGKILL)
    _wait(lambda: not _supervisors(settings.home_dir), 10, "the supervisor gone")
    assert local.get("production") is None
    assert _ours(podman, settings.home_dir) == []


def test_a_container_that_never_becomes_ready_fails_qa_and_production_keeps_its_image(
    on_containers, instance, podman, tmp_path, monkeypatch
):
    from mlops_assets.ops.runner import release

    settings, defs = on_containers
    one = register(defs, 0.5)
    assert release(defs, instance, settings.lock_dir, one).success
    serving = LocalTarget(settings.home_dir).get("production")

    broken = tmp_path / "Dockerfile"  # a wrong entry point: the container exits at once
    broken.write_text(
        build_context.DOCKERFILE.read_text().replace(
            'ENTRYPOINT ["mlops-assets", "serve"', 'ENTRYPOINT ["mlops-assets", "no-such-command"', 1
        )
    )
    monkeypatch.setattr(build_context, "DOCKERFILE", broken)
    two = register(defs, 50.0)
    outcome = release(defs, instance, settings.lock_dir, two)
    assert not outcome.success and not outcome.qa_passed
    assert any("the service exited with 2 before it was ready" in e for e in outcome.errors), outcome.errors
    now = LocalTarget(settings.home_dir).get("production")
    assert now is not None and (now.image, now.pid, now.version) == (serving.image, serving.pid, str(one))
    assert _ready(now.url) == str(one)
    assert _supervisors(settings.home_dir) == {serving.pid}
    assert _ours(podman, settings.home_dir) == [serving.container]  # no QA container left behind


def _ready(url: str) -> str | None:
    try:
        return httpx.get(f"{url}/health/ready", timeout=2).json().get("version")
    except (httpx.HTTPError, ValueError):
        return None


def _sample() -> dict:
    from mlops_assets_tests.serving_support import SAMPLE

    return SAMPLE


def test_the_image_serves_the_azure_profile_request_log_on_blob_storage_telemetry_to_app_insights(
    on_containers, instance, podman, azurite, monkeypatch
):
    """The image with the serving-azure group, run as the local target runs it: host network on
    127.0.0.1 (its peers are remote services), the request log on Azurite's az://, App Insights
    pointed at a receiver; both credentials reach it as files, not in its environment."""
    import uuid

    from azure.storage.blob import BlobServiceClient

    from mlops_assets.definitions import build_definitions
    from mlops_assets.ops.runner import release
    from mlops_assets_tests.webhook import TelemetryReceiver

    container = f"logs-{uuid.uuid4().hex[:12]}"
    blobs = BlobServiceClient.from_connection_string(azurite.connection_string)
    blobs.create_container(container)
    with TelemetryReceiver() as insights:
        monkeypatch.setenv("MLOPS_SCORING_LOG_URL", f"az://{container}")
        monkeypatch.setenv("MLOPS_AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
        monkeypatch.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", insights.connection_string)
        get_settings.cache_clear()
        settings = get_settings()
        assert settings.image_serves_azure  # chosen by the settings: a log on az://, telemetry on
        defs = build_definitions(settings)
        one = register(defs, 0.5)
        outcome = release(defs, instance, settings.lock_dir, one)
        assert outcome.success, outcome.errors
        details = outcome.production["details"]
        config = json.loads(podman.run("inspect", details["container"], timeout=60).stdout)[0]
        assert config["HostConfig"]["NetworkMode"] == "host" and config["Config"]["User"] == "10001:10001"
        env = "\n".join(config["Config"]["Env"])
        assert "AccountKey" not in env and "InstrumentationKey" not in env  # files, not variables
        key = read_keys(settings.keys_file)[0]
        url = outcome.production["url"]
        ids = set()
        for _ in range(5):
            answer = httpx.post(f"{url}/score", json=_sample(), headers={"Authorization": f"Bearer {key}"})
            assert answer.status_code == 200
            ids.add(answer.headers["x-request-id"])

        def logged() -> set[str]:
            found = set()
            for blob in blobs.get_container_client(container).list_blobs(
                name_starts_with="scoring-logs/date="
            ):
                data = blobs.get_blob_client(container, blob.name).download_blob().readall()
                found |= {json.loads(line)["request_id"] for line in data.splitlines()}
            return found

        _wait(lambda: ids <= logged(), 30, "the request log on Azurite")
        _wait(
            lambda: [
                r
                for r in insights.of_type("RequestData")
                if r["data"]["baseData"]["name"] == "POST /score"
                and r["data"]["baseData"]["responseCode"] == "200"
            ],
            60,
            "requests in Application Insights",
        )
        # QA ran the same image the same way, and is gone.
        assert _ours(podman, settings.home_dir) == [details["container"]]
