"""Release assets: the scoring image's build context, its digest, the Dockerfile, the release trigger."""

import dataclasses
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest

from mlops_assets.model.artifact import sha256_hex
from mlops_assets.release.assets import (
    model_versions,
    prod_deployment,
    qa_deployment,
    scoring_image,
)
from mlops_assets.release.automation import RELEASE_SENSOR
from mlops_assets.release.local_target import LocalDeploymentTarget
from mlops_assets_tests.conftest import REPO
from mlops_assets_tests.projects import FEATURES, diabetes_frame, fit_diabetes, split_seed
from mlops_assets_tests.release_support import register
from mlops_assets_tests.serving_support import Hammer, free_port


def materialize_image(defs, instance, version: int) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions(model_versions.name, [str(version)])
    return defs.resolve_job_def("release_job").execute_in_process(
        instance=instance,
        partition_key=str(version),
        asset_selection=[dg.AssetKey("scoring_image")],
        raise_on_error=False,
    )


def test_dockerfile_passes_hadolint():
    hadolint = Path(sys.executable).parent / "hadolint"
    result = subprocess.run(
        [str(hadolint), str(REPO / "deploy" / "docker" / "scoring.Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    text = (REPO / "deploy" / "docker" / "scoring.Dockerfile").read_text()
    assert "USER 10001" in text and "HEALTHCHECK" in text and "/health/ready" in text
    assert '"mlops-assets", "serve"' in text
    uv_pin = re.search(r"^UV_VERSION := (\S+)", (REPO / "Makefile").read_text(), re.M).group(1)
    assert f"ARG UV_VERSION={uv_pin}\n" in text and "FROM ${PYTHON_BASE}" in text and "--from=" not in text


def test_scoring_image_context_is_content_addressed(settings, instance, defs):
    one, two = register(defs, 0.5), register(defs, 5.0)
    first = materialize_image(defs, instance, one)
    assert first.success
    image = first.output_for_node("scoring_image")
    context = Path(image["path"])
    assert (
        image["image"] == f"mlops-assets/scoring:{image['tag']}"
        and image["tag"] == f"sha256-{image['digest'][:16]}"
    )
    assert image["reused"] is False
    assert {p.name for p in context.iterdir()} == {
        "Dockerfile",
        "requirements.txt",
        "requirements-azure.txt",
        "project",
        "model",
    }
    manifest = json.loads((context / "model" / "manifest.json").read_text())
    assert (
        manifest["version"] == one
        and sha256_hex((context / "model" / "model.skops").read_bytes()) == manifest["sha256"]
    )
    requirements = (context / "requirements.txt").read_text()
    assert "starlette==" in requirements and "skops==" in requirements
    assert "dagster" not in requirements and "mlflow" not in requirements
    assert (context / "requirements-azure.txt").read_bytes() == b""  # the local profile: no Azure layer
    assert (context / "project" / "mlops_assets" / "serving" / "app.py").is_file()
    if not image["built"]:
        assert (
            "not built" in first.asset_materializations_for_node("scoring_image")[0].metadata["detail"].value
        )

    again = materialize_image(defs, instance, one).output_for_node("scoring_image")
    assert (again["tag"], again["reused"]) == (image["tag"], True)

    other = materialize_image(defs, instance, two).output_for_node("scoring_image")
    assert other["tag"] != image["tag"]
    assert other["code_digest"] == image["code_digest"]  # only the model differs


def test_a_version_whose_artifact_does_not_verify_gets_no_image(settings, instance, defs):
    version = register(defs, 0.5, tamper=True)
    result = materialize_image(defs, instance, version)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert "does not match the expected" in failure.step_failure_data.user_failure_data.description
    assert not list((settings.home_dir / "release" / "contexts").glob("[!.]*"))


def test_versions_registered_in_quick_succession_each_get_a_release_run_in_order(settings, instance, defs):
    sensor = defs.resolve_sensor_def(RELEASE_SENSOR)
    for version in (3, 4):  # both land before the sensor's next tick
        instance.report_runless_asset_event(
            dg.AssetMaterialization(asset_key="registered_model", metadata={"version": version})
        )
    with dg.build_sensor_context(instance=instance, definitions=defs) as context:
        result = sensor(context)
    assert [(r.partition_key, r.run_key) for r in result.run_requests] == [
        ("3", "release-3"),
        ("4", "release-4"),
    ]
    assert result.dynamic_partitions_requests[0].partition_keys == ["3", "4"]
    assert defs.resolve_job_def("release_job").tags["mlops/stage"] == "release"
    # The next tick starts after them: nothing is requested twice.
    with dg.build_sensor_context(instance=instance, definitions=defs, cursor=result.cursor) as context:
        assert sensor(context).run_requests == []
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key="registered_model", metadata={"version": 5})
    )
    with dg.build_sensor_context(instance=instance, definitions=defs, cursor=result.cursor) as context:
        assert [r.run_key for r in sensor(context).run_requests] == ["release-5"]


@pytest.mark.parametrize("job", ["release_job"])
def test_release_job_is_partitioned_by_model_version(defs, job):
    assert defs.resolve_job_def(job).partitions_def == model_versions
    assert scoring_image.partitions_def == model_versions


@pytest.fixture(autouse=True)
def no_orphans(settings):
    """Whatever a test leaves running under its MLOPS_HOME is stopped, pass or fail."""
    yield
    from mlops_assets.hosting.processes import LocalTarget

    target = LocalTarget(settings.home_dir)
    for deployment in target.list():
        target.stop(deployment.name)


def _release(defs, instance, version: int, port: int) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions(model_versions.name, [str(version)])
    resources = {
        **defs.resources,
        "deploy_target": LocalDeploymentTarget(home=defs.resources["deploy_target"].home, qa_port=port),
    }
    return dg.materialize(
        [scoring_image, qa_deployment],
        partition_key=str(version),
        resources=resources,
        instance=instance,
        raise_on_error=False,
    )


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _cli(settings, *args: str) -> str:
    from mlops_assets_tests.conftest import subprocess_env

    result = subprocess.run(
        [str(Path(sys.executable).parent / "mlops-assets"), *args],
        env=subprocess_env(settings.home_dir),
        capture_output=True,
        text=True,
        check=True,
    )
    return result.stdout


@pytest.mark.slow
def test_qa_deploys_from_the_context_s_own_venv_smoke_tests_and_moves_the_alias(
    settings, instance, defs, monkeypatch
):
    secrets = {"MLOPS_ALERT_WEBHOOK_URL": "http://127.0.0.1:9/hook-token", "AZURE_CLIENT_SECRET": "hunter2"}
    for name, value in secrets.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MLOPS_SCORING_MAX_ROWS", "77")  # a setting the service reads is passed on
    version = register(defs, 0.5)
    port = free_port()
    result = _release(defs, instance, version, port)
    assert result.success, [e.step_failure_data for e in result.all_events if e.is_step_failure]
    (check,) = result.get_asset_check_evaluations()
    assert check.check_name == "smoke_test" and check.passed
    deployment = result.output_for_node("qa_deployment")
    assert deployment["url"] == f"http://127.0.0.1:{port}" and deployment["version"] == str(version)
    # The service runs from the context's venv, which has no dagster, under its supervisor.
    assert deployment["details"]["runtime"] == "process"
    pid = deployment["details"]["service_pid"]
    assert _parent(pid) == deployment["details"]["pid"]
    given = dict(
        item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in item
    )
    assert not {name.encode() for name in secrets} & set(given)  # an allow-listed environment
    assert given[b"MLOPS_SCORING_MAX_ROWS"] == b"77" and given[b"MLOPS_DEPLOYMENT_ID"]
    arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    python, serve = Path(arguments[0].decode()), Path(arguments[1].decode())
    assert serve.name == "mlops-assets" and serve.parent == python.parent  # the venv's own script
    assert python.parent.parent.parent == settings.home_dir / "release" / "venvs"
    venv_python = python
    assert subprocess.run([str(venv_python), "-c", "import sklearn"], capture_output=True).returncode == 0
    assert subprocess.run([str(venv_python), "-c", "import dagster"], capture_output=True).returncode != 0
    models = defs.resources["registry"].get_registry()
    assert models.get_alias("qa").version == version and models.get_version(version).release_state == "qa"
    assert f"qa: version {version} at http://127.0.0.1:{port}" in _cli(settings, "deployments")
    assert "stopped qa" in _cli(settings, "down")
    assert (
        not Path(f"/proc/{pid}").exists() or b"mlops-assets" not in Path(f"/proc/{pid}/cmdline").read_bytes()
    )
    assert "no local deployments running" in _cli(settings, "deployments")


@pytest.mark.slow
def test_a_port_in_use_fails_qa_with_a_clear_message_and_no_orphan(settings, instance, defs):
    import socket

    version = register(defs, 0.5)
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        result = _release(defs, instance, version, port)
    assert not result.success
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and f"port {port} on 127.0.0.1 is already in use" in check.description
    failure = next(e for e in result.all_events if e.is_step_failure)
    assert (
        f"QA deployment of version {version} failed"
        in failure.step_failure_data.user_failure_data.description
    )
    assert defs.resources["registry"].get_registry().get_alias("qa") is None
    assert "no local deployments running" in _cli(settings, "deployments")


@pytest.mark.slow
def test_production_swaps_models_without_failing_a_request_and_rolls_back_a_bad_release(
    settings, instance, defs
):
    import httpx

    one, two = register(defs, 0.5), register(defs, 50.0)
    three = register(defs, 5.0, manifest_version=99)  # serves as "99": the smoke test must catch it
    qa_port, prod_port = free_port(), free_port()
    target = LocalDeploymentTarget(
        home=defs.resources["deploy_target"].home, qa_port=qa_port, production_port=prod_port
    )
    resources = {**defs.resources, "deploy_target": target}
    models = defs.resources["registry"].get_registry()
    key = target.scoring_keys()[0]

    def release(
        version: int, assets=(scoring_image, qa_deployment, prod_deployment)
    ) -> dg.ExecuteInProcessResult:
        instance.add_dynamic_partitions(model_versions.name, [str(version)])
        return dg.materialize(
            list(assets),
            partition_key=str(version),
            resources=resources,
            instance=instance,
            raise_on_error=False,
        )

    first = release(one)
    assert first.success and first.output_for_node("prod_deployment")["mode"] == "new process"
    assert models.get_alias("production").version == one
    assert "qa" not in _cli(settings, "deployments")  # QA torn down once production has the version
    assert models.get_alias("qa") is None  # and no version reads as "in QA" any more

    with Hammer(f"http://127.0.0.1:{prod_port}", key) as hammer:
        second = release(two)
        assert second.success and second.output_for_node("prod_deployment")["mode"] == "model swap"
        # Version 3 reaches production without QA (as `promote` may); it serves the wrong version.
        assert release(three, [scoring_image]).success
        third = release(three, [scoring_image, prod_deployment])
    assert hammer.statuses and not hammer.failures(), hammer.failures()
    assert str(one) in hammer.versions and str(two) in hammer.versions

    assert not third.success
    (check,) = third.get_asset_check_evaluations()
    assert check.asset_key.to_user_string() == "prod_deployment" and not check.passed
    assert "x-model-version is '99'" in check.description
    failure = next(e for e in third.all_events if e.is_step_failure)
    assert f"rolled back to version {two}" in failure.step_failure_data.user_failure_data.description
    assert models.get_version(three).release_state == "rolled_back"
    assert models.get_alias("production").version == two
    assert httpx.get(f"http://127.0.0.1:{prod_port}/health/ready").json()["version"] == str(two)
    assert models.get_version(one).release_state == "superseded"
    assert "stopped" in _cli(settings, "down")
    assert "no local deployments running" in _cli(settings, "deployments")


@pytest.mark.slow
def _defs_on_free_ports(monkeypatch):
    """Settings and definitions whose QA and production ports no other test uses."""
    from mlops_assets.definitions import build_definitions
    from mlops_assets.settings import get_settings

    monkeypatch.setenv("MLOPS_QA_PORT", str(free_port()))
    monkeypatch.setenv("MLOPS_PRODUCTION_PORT", str(free_port()))
    get_settings.cache_clear()
    ported = get_settings()
    return ported, build_definitions(ported)


def test_two_releases_started_together_run_one_at_a_time_in_order(settings, instance, monkeypatch):
    import threading

    from mlops_assets.ops import runner

    ported, defs = _defs_on_free_ports(monkeypatch)
    one, two = register(defs, 0.5), register(defs, 50.0)
    outcomes = {}

    def release(version: int) -> None:
        outcomes[version] = runner.release(defs, instance, ported.lock_dir, version)

    threads = [threading.Thread(target=release, args=(v,)) for v in (one, two)]
    threads[0].start()
    # The second release is asked for while the first runs: its run exists once it holds the stage.
    first_started = dg.RunsFilter(job_name="release_job", tags={"dagster/partition": str(one)})
    deadline = time.monotonic() + 120
    while not instance.get_run_records(first_started):
        assert time.monotonic() < deadline, "the first release never started"
        time.sleep(0.05)
    threads[1].start()
    for thread in threads:
        thread.join()

    assert outcomes[one].success and outcomes[two].success, (outcomes[one].errors, outcomes[two].errors)
    first, second = (instance.get_run_record_by_id(outcomes[v].run_id) for v in (one, two))
    assert first.end_time <= second.start_time  # never interleaved
    assert defs.resources["registry"].get_registry().get_alias("production").version == two
    assert outcomes[two].production["previous_version"] == str(one)


def test_the_smoke_test_fails_on_wrong_predictions_a_wrong_version_a_bad_key_or_no_answer(tmp_path):
    from mlops_assets.model.smoke import SmokeSample
    from mlops_assets.release.smoke import smoke_test
    from mlops_assets_tests.serving_support import SAMPLE, Service, predictions, write_release

    served = write_release(tmp_path / "served", 1, alpha=0.5)
    other = write_release(tmp_path / "other", 1, alpha=50.0)
    right = SmokeSample(SAMPLE["data"], predictions(served), "test")
    service = Service(tmp_path / "home", tmp_path / "served").wait_live()
    try:
        service.wait_version("1")
        assert smoke_test(service.url, "key-one", right, "1").passed
        wrong = smoke_test(service.url, "key-one", SmokeSample(SAMPLE["data"], predictions(other), "t"), "1")
        assert len(wrong.failures) == 1 and "differ from the model's" in wrong.failures[0]
        assert smoke_test(service.url, "key-one", right, "2").failures == [
            "x-model-version is '1', expected '2'"
        ]
        refused = smoke_test(service.url, "not-a-key", right, "1")
        assert refused.failures[0].startswith("POST /score with the key: HTTP 401")
    finally:
        service.stop()
    silent = smoke_test(service.url, "key-one", right, "1", timeout=2)
    assert not silent.passed and "did not answer" in silent.failures[0]


def test_the_smoke_test_never_raises_on_an_answer_outside_the_contract():
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from mlops_assets.model.smoke import SmokeSample
    from mlops_assets.release.smoke import smoke_test

    class NotJson(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"<html>a proxy's error page</html>")

        def log_message(self, *_) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotJson)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = smoke_test(url, "key", SmokeSample([[1.0] * 10], [1.0], "test"), "1")
    finally:
        server.shutdown()
        server.server_close()
    assert not result.passed and "answered something other than" in result.failures[0]


def test_the_smoke_sample_comes_from_the_manifest_and_a_version_without_one_is_not_released(settings, defs):
    from mlops_assets.model.smoke import smoke_block
    from mlops_assets.release.from_registry import ReleaseInputError, smoke_sample

    models = defs.resources["registry"].get_registry()
    old = register(defs, 0.5, without_smoke=True)  # as registered before manifests carried one
    with pytest.raises(ReleaseInputError, match=f"version {old}: its manifest has no smoke block"):
        smoke_sample(models, old)

    holdout = split_seed(diabetes_frame())[1]
    new = register(
        defs, 5.0, smoke=smoke_block(fit_diabetes(split_seed(diabetes_frame())[0], 5.0), holdout, FEATURES)
    )
    sample = smoke_sample(models, new)
    assert sample.source == "manifest" and len(sample.rows) == 3
    assert sample.rows == holdout[list(FEATURES)].head(3).to_numpy(dtype=float).tolist()


@pytest.mark.slow
def test_an_edited_build_context_is_verified_again_and_never_deployed(settings, instance, defs):
    """A build context edited after scoring_image assembled it (model and manifest swapped
    consistently), then deployed without building again, as promote and rollback do: the deployment
    re-verifies it against the registry, so QA serves the registry's model and the smoke test,
    expecting the registry's predictions, passes."""
    import shutil

    from mlops_assets.release.build_context import intact
    from mlops_assets_tests.serving_support import write_release

    version = register(defs, 0.5)
    image = materialize_image(defs, instance, version)
    assert image.success
    context = Path(image.output_for_node("scoring_image")["path"])
    other = settings.home_dir / "other-model"
    write_release(other, version, alpha=50.0)
    for name in ("model.skops", "manifest.json"):
        shutil.copy2(other / name, context / "model" / name)
    assert not intact(context)
    target = LocalDeploymentTarget(home=defs.resources["deploy_target"].home, qa_port=free_port())
    try:
        result = dg.materialize(
            [scoring_image, qa_deployment],
            selection=[qa_deployment],  # scoring_image as it was stored: not assembled again
            partition_key=str(version),
            resources={**defs.resources, "deploy_target": target},
            instance=instance,
            raise_on_error=False,
        )
        assert result.success
        (check,) = result.get_asset_check_evaluations()
        assert check.passed, check.description
        assert intact(context)
    finally:
        target.teardown_qa()


def test_a_stored_context_is_reused_only_while_its_files_are_what_was_assembled(tmp_path):
    from mlops_assets.release.build_context import assemble, intact, serving_requirements
    from mlops_assets_tests.serving_support import write_release

    write_release(tmp_path / "release", version=1)
    artifact = (tmp_path / "release" / "model.skops").read_bytes()
    manifest = json.loads((tmp_path / "release" / "manifest.json").read_text())
    requirements = serving_requirements()
    first, new = assemble(tmp_path / "contexts", "model.skops", artifact, manifest, requirements)
    again, reused_new = assemble(tmp_path / "contexts", "model.skops", artifact, manifest, requirements)
    assert (new, reused_new, again.path, again.repaired) == (True, False, first.path, False)

    edited = dict(manifest, version=99)  # consistent with itself, not with the registry's inputs
    (first.path / "model" / "manifest.json").write_text(json.dumps(edited))
    assert not intact(first.path)
    repaired, _ = assemble(tmp_path / "contexts", "model.skops", artifact, manifest, requirements)
    assert repaired.repaired and repaired.path == first.path and intact(first.path)
    assert json.loads((first.path / "model" / "manifest.json").read_text())["version"] == 1


@pytest.mark.slow
def test_rollback_returns_to_what_served_before_the_last_change_and_every_change_is_logged(
    settings, instance, monkeypatch
):
    """promote 1 after 2 was released, then rollback: back to 2 (what served before the promote),
    not refused for want of a version numbered below 1. Every change is in the event log."""
    from mlops_assets.hosting.processes import LocalTarget
    from mlops_assets.ops.runner import release, rollback
    from mlops_assets.release.events import event_log_key, read_log
    from mlops_assets.settings import get_settings

    settings, defs = _defs_on_free_ports(monkeypatch)
    one, two = register(defs, 0.5), register(defs, 50.0)
    try:
        assert release(defs, instance, settings.lock_dir, one, {"mlops/by": "ci"}).success
        assert release(defs, instance, settings.lock_dir, two).success
        promoted = release(
            defs,
            instance,
            settings.lock_dir,
            one,
            {"mlops/trigger": "manual-promote", "mlops/reason": "2 misbehaves", "mlops/by": "alice"},
        )
        assert promoted.success and promoted.production["version"] == str(one)
        back = rollback(defs, instance, settings.lock_dir, "1 was a mistake", by="bob")
        assert back.success, back.errors
        assert back.production["version"] == str(two)

        storage = defs.resources["storage"].get()
        log = read_log(storage, event_log_key(settings))
        events = log.events
        assert [(e.action, e.from_version, e.to_version, e.by, e.reason) for e in events] == [
            ("release", None, str(one), "ci", ""),
            ("release", str(one), str(two), "dagster", ""),
            ("promote", str(two), str(one), "alice", "2 misbehaves"),
            ("rollback", str(one), str(two), "bob", "1 was a mistake"),
        ]
        assert all(e.os_user and e.host and e.run_id and e.time for e in events)
        assert [e.seq for e in events] == [1, 2, 3, 4] and not log.problems

        # Released again while it serves: the way back (to 1) is kept, not lost to "- -> 2".
        assert release(defs, instance, settings.lock_dir, two).success
        again = read_log(storage, event_log_key(settings)).events[-1]
        assert (again.action, again.from_version, again.to_version) == ("release", str(one), str(two))

        # Its last event deleted, the chain still verifies (a chain cannot tell it was cut short),
        # but its last change no longer moved production to what serves: rollback refuses.
        kept = storage.read_bytes(f"events/production/seq-{again.seq:010d}.json")
        promoted_one = release(defs, instance, settings.lock_dir, one, {"mlops/trigger": "manual-promote"})
        assert promoted_one.success
        last = read_log(storage, event_log_key(settings)).events[-1]
        storage.fs.rm(storage.fs_path(f"events/production/seq-{last.seq:010d}.json"))
        with pytest.raises(ValueError, match="is not what serves"):
            rollback(defs, instance, settings.lock_dir, "after a deletion")
        # A forged event (no key) at the end: the chain does not verify, rollback says why.
        forged = {**json.loads(kept), "seq": last.seq, "to_version": str(one), "from_version": "7"}
        storage.write_bytes(f"events/production/seq-{last.seq:010d}.json", json.dumps(forged).encode())
        with pytest.raises(ValueError, match="its MAC does not match"):
            rollback(defs, instance, settings.lock_dir, "after a forgery")
        assert defs.resources["registry"].get_registry().get_alias("production").version == one
    finally:
        local = LocalTarget(settings.home_dir)
        for deployment in local.list():
            local.stop(deployment.name)
        get_settings.cache_clear()


def test_the_event_log_only_appends_and_knows_its_actions(tmp_path):
    from mlops_assets.release.events import ProductionEvent, read_log, record, version_before_last_change
    from mlops_assets.storage.fsstore import Storage

    key = b"k" * 32
    storage = Storage((tmp_path / "storage").as_uri())
    assert read_log(storage, key).events == [] and version_before_last_change([]) == (None, None)
    first = record(storage, ProductionEvent("release", "1", None, "", "ci", "u", "h", "run-1"), key)
    record(
        storage,
        ProductionEvent("automatic_rollback", "1", "2", "smoke failed", "dagster", "u", "h", "run-2"),
        key,
    )
    events = read_log(storage, key).events
    assert [e.action for e in events] == ["release", "automatic_rollback"] and events[0] == first
    assert version_before_last_change(events) == (None, first)  # an automatic rollback changed nothing
    with pytest.raises(ValueError, match="unknown production event 'deploy'"):
        record(storage, ProductionEvent("deploy", "1", None, "", "x", "u", "h", "r"), key)
    assert len(list(storage.list_files("events/production", versions=False))) == 2


def test_the_event_log_is_a_keyed_chain_nobody_without_the_key_can_forge_or_fork(tmp_path):
    """Entries are validated (a bad one is named, never a crash), chained by an HMAC under a key
    storage does not hold, and appended by a conditional create: concurrent writers never fork it."""
    import threading

    from mlops_assets.release.events import ProductionEvent, read_log, record
    from mlops_assets.storage.fsstore import Storage

    key = b"k" * 32
    storage = Storage((tmp_path / "storage").as_uri())
    legacy = {"action": "release", "to_version": "1", "from_version": None, "reason": "", "by": "x",
              "os_user": "u", "host": "h", "run_id": "r", "time": "2026-01-01T00:00:00.000+00:00"}  # fmt: skip
    storage.write_bytes("events/production/20260101T000000000000-abc.json", json.dumps(legacy).encode())

    def append(n: int) -> None:
        for i in range(8):
            record(storage, ProductionEvent("release", str(n * 10 + i), None, "", "w", "u", "h", "r"), key)

    writers = [threading.Thread(target=append, args=(n,)) for n in range(3)]
    for writer in writers:
        writer.start()
    for writer in writers:
        writer.join()
    log = read_log(storage, key)
    assert not log.problems and log.chained == 24
    assert [e.seq for e in log.trusted] == list(range(1, 25))  # one chain, no fork, no gap
    assert len(log.events) == 25 and log.events[0].seq == 0  # the history from before the chain

    def problems_after(path: str, data: bytes) -> list[str]:
        original = storage.read_bytes(path)
        storage.write_bytes(path, data)
        try:
            return read_log(storage, key).problems
        finally:
            storage.write_bytes(path, original)

    fifth = "events/production/seq-0000000005.json"
    event = json.loads(storage.read_bytes(fifth))
    edited = problems_after(fifth, json.dumps({**event, "to_version": "99"}).encode())
    assert edited == [f"{fifth}: its MAC does not match (edited, or written without the key)"]
    wrong_key = read_log(storage, b"another key").problems
    assert len(wrong_key) == 24 and "its MAC does not match" in wrong_key[0]
    extra = problems_after(fifth, json.dumps({**event, "admin": True}).encode())
    assert extra[0] == f"{fifth}: unexpected admin"  # named, not a TypeError
    assert problems_after(fifth, b"{not json")[0] == f"{fifth}: not JSON"
    storage.fs.rm(storage.fs_path(fifth))
    assert read_log(storage, key).problems == ["event 5 is missing (the chain jumps to 6)"]
    assert storage.create_bytes(fifth, b"{}") and not storage.create_bytes(fifth, b"[]")
    assert storage.read_bytes(fifth) == b"{}"  # the second create changed nothing


def test_the_event_log_key_is_made_once_locally_and_required_on_azure(settings):
    from mlops_assets.release.events import EventLogError, event_log_key

    made = event_log_key(settings)
    assert len(made) == 64 and event_log_key(settings) == made  # made once, then read
    assert settings.event_log_key_file.stat().st_mode & 0o777 == 0o600
    with pytest.raises(EventLogError, match="the azure profile needs MLOPS_EVENT_LOG_KEY"):
        event_log_key(settings.model_copy(update={"profile": "azure"}))


def test_a_conditional_create_on_blob_storage_never_overwrites(azurite):
    from azure.storage.blob import BlobServiceClient

    from mlops_assets.storage.fsstore import Storage, credential_options

    BlobServiceClient.from_connection_string(azurite.connection_string).create_container("events")
    storage = Storage("az://events", **credential_options(azurite.connection_string, None))
    assert storage.create_bytes("events/production/seq-0000000001.json", b"first")
    assert not storage.create_bytes("events/production/seq-0000000001.json", b"second")
    assert storage.read_bytes("events/production/seq-0000000001.json") == b"first"


@pytest.mark.slow
def test_a_busy_production_port_fails_naming_the_port_and_the_setting_and_leaves_nothing_behind(
    settings, instance, monkeypatch
):
    import socket

    from mlops_assets.definitions import build_definitions
    from mlops_assets.hosting.processes import LocalTarget
    from mlops_assets.ops.runner import release
    from mlops_assets.release.events import event_log_key, read_log
    from mlops_assets.settings import get_settings

    with socket.socket() as holder:  # something else already listens on the production port
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        monkeypatch.setenv("MLOPS_PRODUCTION_PORT", str(busy))
        monkeypatch.setenv("MLOPS_QA_PORT", str(free_port()))
        get_settings.cache_clear()
        settings = get_settings()
        defs = build_definitions(settings)
        one = register(defs, 0.5)
        try:
            outcome = release(defs, instance, settings.lock_dir, one)
            assert not outcome.success and outcome.qa_passed
            assert any(
                f"port {busy} on 127.0.0.1 is already in use" in e and "MLOPS_PRODUCTION_PORT" in e
                for e in outcome.errors
            ), outcome.errors
            # It never served: "failed" (out of the gate's bar), not "rolled_back".
            assert defs.resources["registry"].get_registry().get_version(one).release_state == "failed"
            assert LocalTarget(settings.home_dir).list() == []  # QA torn down too
            assert "automatic_rollback" not in [
                e.action for e in read_log(defs.resources["storage"].get(), event_log_key(settings)).events
            ]
        finally:
            local = LocalTarget(settings.home_dir)
            for deployment in local.list():
                local.stop(deployment.name)
            get_settings.cache_clear()


def test_a_version_is_packaged_with_its_own_spec_after_the_project_s_spec_is_edited(defs, tmp_path):
    """Promote and restore take the version's registered spec; a version registered before
    manifests carried one is packaged with the project's spec of today."""
    from mlops_assets.model.rows import SPEC_NAME
    from mlops_assets.release.deployments import Endpoint
    from mlops_assets.release.from_registry import assemble_version, restorable_release
    from mlops_assets_tests.projects import DIABETES

    models = defs.resources["registry"].get_registry()
    contexts = tmp_path / "contexts"
    registered = DIABETES.spec.serving_dict()
    edited = {**registered, "features": [{**f, "max": 1.0} for f in registered["features"]]}

    def packaged(context: Path) -> dict:
        return json.loads((context / "project" / "mlops_assets" / "model" / SPEC_NAME).read_text())

    one = register(defs, 0.5)
    context, _ = assemble_version(models, one, contexts, serving_spec=edited)  # a promote
    assert packaged(context.path) == registered
    shutil.rmtree(context.path)  # a restore on a machine without the context
    previous = Endpoint("production", "http://127.0.0.1:1", str(one), context.tag, context=str(context.path))
    assert packaged(restorable_release(models, previous, contexts, serving_spec=edited).context) == registered

    older = register(defs, 5.0)
    manifest = json.loads(models.read_file(older, "manifest.json"))
    del manifest["serving_spec"]  # as versions registered before it was kept
    models.write_manifest(older, manifest)
    assert packaged(assemble_version(models, older, contexts, serving_spec=edited)[0].path) == edited


@pytest.mark.slow
def test_release_files_of_versions_nothing_needs_are_removed_and_a_promote_rebuilds_them(
    settings, instance, monkeypatch
):
    """MLOPS_KEEP_RELEASES=1: after each release only the contexts of production and the newest
    version stay (a venv only while a kept context installs into it); promoting a pruned version
    assembles its context again from the registry and serves it."""
    from mlops_assets.hosting.runtimes import venv_key
    from mlops_assets.ops.runner import release

    monkeypatch.setenv("MLOPS_KEEP_RELEASES", "1")
    settings, defs = _defs_on_free_ports(monkeypatch)
    contexts, venvs = settings.home_dir / "release" / "contexts", settings.home_dir / "release" / "venvs"

    def versions_on_disk() -> list[int]:
        return sorted(
            int(json.loads((c / "model" / "manifest.json").read_text())["version"])
            for c in contexts.iterdir()
        )

    one, two, three = register(defs, 0.5), register(defs, 5.0), register(defs, 50.0)
    assert release(defs, instance, settings.lock_dir, one).success
    assert versions_on_disk() == [one]  # production's (the newest, 3, was never assembled)
    assert release(defs, instance, settings.lock_dir, two).success
    assert versions_on_disk() == [two]  # 1: no alias, no deployment, not the newest
    stale = venvs / "0123456789abcdef"
    stale.mkdir(parents=True)
    (stale / ".complete").write_text("")  # a finished venv no context installs into
    building = venvs / "fedcba9876543210"
    building.mkdir()  # one being built: never touched
    promoted = release(defs, instance, settings.lock_dir, one, {"mlops/trigger": "manual-promote"})
    assert promoted.success and promoted.production["version"] == str(one), promoted.errors
    assert versions_on_disk() == [one]
    kept = {venv_key(c) for c in contexts.iterdir()}
    assert {v.name for v in venvs.iterdir()} == kept | {building.name}
    assert three  # registered, never released: nothing of it on disk


@pytest.mark.slow
def test_a_promote_killed_mid_handover_fails_its_run_and_the_version_it_started_serves_alone(
    settings, instance, monkeypatch
):
    """`mlops-assets promote` killed (SIGKILL) once the new supervisor has started: the successor
    makes production its own, the predecessor drains, and the next run marks the killed one failed
    (it would stay STARTED); the alias moves with the next successful release only."""
    from mlops_assets.hosting.processes import LocalTarget
    from mlops_assets.hosting.takeover import FAILPOINT_VARIABLE
    from mlops_assets.ops.runner import release

    settings, defs = _defs_on_free_ports(monkeypatch)
    one = register(defs, 0.5)
    assert release(defs, instance, settings.lock_dir, one).success
    local = LocalTarget(settings.home_dir)
    # Recorded as served by other code: version 2 is a handover (a new supervisor), not a model swap.
    local.store.write(dataclasses.replace(local.get("production"), code_digest="other serving code"))
    two = register(defs, 50.0)
    killed = subprocess.run(
        [sys.executable, "-m", "mlops_assets.ops.cli", "promote", str(two), "--reason", "killed"],
        env={**os.environ, FAILPOINT_VARIABLE: "production:spawned"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert killed.returncode == -9, killed.stderr[-3000:]
    (abandoned,) = instance.get_run_records(dg.RunsFilter(tags={"mlops/reason": "killed"}))
    assert abandoned.dagster_run.status == dg.DagsterRunStatus.STARTED

    deadline = time.monotonic() + 90
    while (
        local.get("production").version != str(two)
        or len([s for s in local.supervisors() if s.name == "production"]) != 1
    ):
        assert time.monotonic() < deadline, (local.list(), local.supervisors())
        time.sleep(0.2)
    models = defs.resources["registry"].get_registry()
    assert models.get_alias("production").version == one  # moved only by a release that finished

    again = release(defs, instance, settings.lock_dir, two)
    assert again.success, again.errors
    run = instance.get_run_by_id(abandoned.dagster_run.run_id)
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert models.get_alias("production").version == two
    assert {d.version for d in local.list()} == {str(two)} and local.strays() == []


def test_a_registry_that_lost_its_records_never_gives_a_version_number_to_another_model(settings, defs):
    """The MLflow database deleted after version 1 was registered: the next process's registry
    would number the next model 1 again, while the index in storage (and scoring logs,
    deployments) mean another artifact by 1. Registration refuses, saying what was lost and what
    to do, and registers nothing."""
    assert register(defs, 0.5) == 1
    (settings.home_dir / "mlflow" / "mlflow.db").unlink()
    again = subprocess.run(
        [sys.executable, "-c", REGISTER_IN_A_NEW_PROCESS], capture_output=True, text=True, timeout=300
    )
    assert again.returncode != 0
    assert "LostVersionsError: the registry of diabetes no longer has version(s) 1," in again.stderr
    assert "it would number this model 1 again" in again.stderr and "Nothing was registered" in again.stderr
    assert (
        "registered []"
        in subprocess.run(
            [sys.executable, "-c", LIST_IN_A_NEW_PROCESS], capture_output=True, text=True, timeout=300
        ).stdout
    )


REGISTER_IN_A_NEW_PROCESS = """
from mlops_assets.definitions import build_definitions
from mlops_assets.settings import get_settings
from mlops_assets_tests.release_support import register
register(build_definitions(get_settings()), 50.0)
"""
LIST_IN_A_NEW_PROCESS = """
from mlops_assets.definitions import build_definitions
from mlops_assets.settings import get_settings
registry = build_definitions(get_settings()).resources["registry"].get_registry()
print("registered", [v.version for v in registry.list_versions()])
"""
