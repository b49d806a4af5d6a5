"""The scoring image, built for real by `scoring_image` with podman and run as production would run it.

Needs podman and a Python base (`make container-base`: Debian's podman, runc, and a base image built
from Debian packages, since no container registry is reachable here). The container runs with the
Kubernetes manifest's security settings and no network: requests go through its own loopback
(`podman exec`), so nothing leaves this machine.
"""

import json
import os
import subprocess
import sys
import time
import uuid

import dagster as dg
import pytest

from mlops_assets.hosting.engines import Engine, find_engine
from mlops_assets.release.assets import model_versions, scoring_image
from mlops_assets.release.builders import LocalImageBuilder
from mlops_assets_tests.release_support import register

pytestmark = pytest.mark.slow
KEY = "container-test-key"
# Runs inside the container: one POST to its own service, printing the status and the body.
CLIENT = """
import json, sys, urllib.request, urllib.error
request = urllib.request.Request(
    "http://127.0.0.1:8080/score", data=sys.argv[1].encode(), method="POST",
    headers={"Content-Type": "application/json", **({"Authorization": "Bearer " + sys.argv[2]} if sys.argv[2] else {})},
)
try:
    with urllib.request.urlopen(request, timeout=10) as answer:
        print(answer.status, answer.headers.get("x-model-version"), answer.read().decode())
except urllib.error.HTTPError as refused:
    print(refused.code, None, refused.read().decode())
"""


@pytest.fixture(scope="module")
def podman() -> Engine:
    engine = find_engine(("podman",))
    assert engine is not None, "podman does not answer: make container-base installs it and the base image"
    return engine


def test_an_engine_counts_only_when_its_version_call_answers(podman):
    import shutil

    # This machine has a docker client and no daemon (no socket): the client alone must not count.
    if (
        shutil.which("docker")
        and not os.path.exists("/var/run/docker.sock")
        and "DOCKER_HOST" not in os.environ
    ):
        assert find_engine(("docker",)) is None
    assert find_engine(("no-such-engine", "docker", "podman")) == podman
    assert podman.environment()["CONTAINERS_CONF"].endswith("deploy/podman/containers.conf")


def _build(defs, instance, version: int, builder: LocalImageBuilder) -> dg.ExecuteInProcessResult:
    instance.add_dynamic_partitions(model_versions.name, [str(version)])
    return dg.materialize(
        [scoring_image],
        partition_key=str(version),
        resources={**defs.resources, "image_builder": builder},
        instance=instance,
        raise_on_error=False,
    )


def _wait_healthy(podman: Engine, container: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if podman.run("healthcheck", "run", container, timeout=30).returncode == 0:
            return
        time.sleep(1)
    logs = podman.run("logs", container, timeout=30)
    raise AssertionError(f"{container} never became healthy: {(logs.stdout + logs.stderr)[-3000:]}")


def test_scoring_image_builds_and_serves_as_production_runs_it(settings, instance, defs, podman):
    version = register(defs, 0.5)
    result = _build(
        defs, instance, version, LocalImageBuilder(engines=["podman"], home=str(settings.home_dir))
    )
    assert result.success, [e.step_failure_data for e in result.all_events if e.is_step_failure]
    built = result.output_for_node("scoring_image")
    metadata = result.asset_materializations_for_node("scoring_image")[0].metadata
    assert built["built"] and built["reference"] == metadata["image_id"].value
    assert metadata["size_mb"].value > 50 and metadata["build_seconds"].value > 0
    assert (
        podman.run("image", "inspect", "--format", "{{.Config.User}}", built["image"]).stdout.strip()
        == "10001:10001"
    )

    # The same context again: the engine has the image, nothing is rebuilt.
    again = _build(
        defs, instance, version, LocalImageBuilder(engines=["podman"], home=str(settings.home_dir))
    )
    assert not again.output_for_node("scoring_image")["built"]
    assert again.output_for_node("scoring_image")["reference"] == built["reference"]

    container = f"mlops-test-{uuid.uuid4().hex[:8]}"
    started = podman.run(
        "run", "--detach", "--name", container,
        "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--network", "none", "--env", f"MLOPS_SCORING_KEYS={KEY}",
        built["reference"], "--workers", "1",
        timeout=60,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        _wait_healthy(podman, container)  # the image's own HEALTHCHECK
        assert podman.run("exec", container, "id", "-u").stdout.strip() == "10001"
        denied = podman.run("exec", container, "touch", "/app/model/x")
        assert denied.returncode != 0 and "Read-only file system" in denied.stderr

        manifest = json.loads(defs.resources["registry"].get_registry().read_file(version, "manifest.json"))
        smoke = manifest["smoke"]
        body = json.dumps({"data": smoke["rows"]})
        status, served, answer = podman.run(
            "exec", container, "python", "-c", CLIENT, body, KEY
        ).stdout.split(" ", 2)
        assert (status, served) == ("200", str(version))
        assert json.loads(answer)["result"] == pytest.approx(smoke["predictions"], rel=1e-9)
        status, _, _ = podman.run("exec", container, "python", "-c", CLIENT, body, "").stdout.split(" ", 2)
        assert status == "401"
    finally:
        podman.run("rm", "--force", "--time", "5", container, timeout=60)


def test_a_dockerfile_that_fails_to_build_fails_scoring_image_with_its_last_lines(
    settings, instance, defs, podman, tmp_path, monkeypatch
):
    from mlops_assets.release import build_context

    broken = tmp_path / "Dockerfile"
    broken.write_text(
        (build_context.DOCKERFILE.read_text()).replace(
            "COPY requirements.txt", "RUN echo 'step that breaks' && exit 3\nCOPY requirements.txt", 1
        )
    )
    monkeypatch.setattr(build_context, "DOCKERFILE", broken)
    version = register(defs, 0.7)

    def build_containers() -> set[str]:  # buildah's, which podman's own list leaves out
        every = set(podman.run("ps", "--all", "--quiet", "--external").stdout.split())
        return every - set(podman.run("ps", "--all", "--quiet").stdout.split())

    before = build_containers()
    result = _build(
        defs, instance, version, LocalImageBuilder(engines=["podman"], home=str(settings.home_dir))
    )
    # Nothing of the failed build is left: no intermediate (build) container. Another test's build
    # running beside this one has its own for a while; a leftover of ours would stay.
    deadline = time.monotonic() + 120
    while build_containers() - before:
        assert time.monotonic() < deadline, f"build containers left: {build_containers() - before}"
        time.sleep(2)
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.user_failure_data.description
    assert "podman build of mlops-assets/scoring:sha256-" in message and "failed (exit" in message
    assert "step that breaks" in message
    assert instance.get_materialized_partitions(scoring_image.key) == set()


# Runs inside the code-location container: what the webserver asks its code server first.
LIST_REPOSITORIES = """
from dagster._grpc.client import DagsterGrpcClient
from dagster._serdes import deserialize_value
answer = deserialize_value(DagsterGrpcClient(port=4000, host="127.0.0.1").list_repositories())
print(type(answer).__name__, [r.repository_name for r in getattr(answer, "repository_symbols", [])])
print(getattr(answer, "message", ""))
"""


def test_the_code_location_image_builds_and_its_container_serves_the_definitions(podman):
    from mlops_assets.hosting.engines import REPO

    tag = "localhost/mlops-assets-dagster:test"
    base = podman.python_base()
    assert base is not None, "no Python base: make container-base"
    dockerfile = REPO / "deploy" / "docker" / "dagster.Dockerfile"
    previous = podman.run("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip()
    built = podman.run(*podman.build_args(tag, base, REPO, dockerfile), timeout=1200)
    assert built.returncode == 0, (built.stdout + built.stderr)[-3000:]
    if previous and previous != podman.run("image", "inspect", "--format", "{{.Id}}", tag).stdout.strip():
        podman.run("rmi", previous, timeout=300)  # the last run's, untagged now: 2.3 GB a run otherwise
    container = f"mlops-test-{uuid.uuid4().hex[:8]}"
    started = podman.run(
        "run", "--detach", "--name", container,
        "--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
        "--network", "none", "--env", "MLOPS_HOME=/tmp/mlops", "--env", "DAGSTER_HOME=/tmp/dagster",
        tag,
        timeout=60,
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    try:
        _wait_healthy(podman, container, timeout=180)  # the image's own HEALTHCHECK
        assert podman.run("exec", container, "id", "-u").stdout.strip() == "10001"
        # Healthy says the server is up, not that the definitions loaded: ask for them.
        answer = podman.run("exec", container, "python", "-c", LIST_REPOSITORIES, timeout=120)
        assert answer.stdout.startswith("ListRepositoriesResponse ['__repository__']"), answer.stdout[-3000:]
    finally:
        podman.run("rm", "--force", "--time", "5", container, timeout=60)


def test_a_home_removes_only_the_images_no_other_home_holds_and_no_container_runs(
    settings, instance, defs, podman, tmp_path
):
    """Two homes that assemble the same context share one image (parallel test runs, two
    projects): each holds it by a tag of its own, and letting go removes it only once no home holds
    it and no container runs from it; a refused image stays held, for a later release."""
    from mlops_assets.hosting.image_holds import held, hold, let_go

    home, neighbour = settings.home_dir, tmp_path / "neighbour-home"
    version = register(defs, 0.9)
    result = _build(defs, instance, version, LocalImageBuilder(engines=["podman"], home=str(home)))
    assert result.success, [e.step_failure_data for e in result.all_events if e.is_step_failure]
    built = result.output_for_node("scoring_image")
    tag, image_id = built["tag"], built["reference"]
    assert held(podman, home) == {tag: image_id}
    assert hold(podman, built["image"], tag, neighbour)  # the neighbour reuses the same image

    kept = let_go(podman, home, keep={tag})
    assert (kept.removed, kept.shared, kept.refused) == ([], [], []) and held(podman, home) == {tag: image_id}
    shared = let_go(podman, home, keep=set())
    assert shared.shared == [tag] and held(podman, home) == {}
    assert podman.has_image(image_id) and held(podman, neighbour) == {tag: image_id}

    container = f"mlops-test-{uuid.uuid4().hex[:8]}"
    assert podman.run("create", "--name", container, image_id, timeout=60).returncode == 0
    try:
        refused = let_go(podman, neighbour, keep=set())
        assert refused.refused == [tag] and podman.has_image(image_id)
        assert held(podman, neighbour) == {tag: image_id}  # still held: not lost to every home
    finally:
        podman.run("rm", "--force", container, timeout=60)
    # What `make clean` runs for the neighbour's home: its deployments stopped, its images let go of.
    cleaned = subprocess.run(
        [sys.executable, "-m", "mlops_assets.ops.cli", "clean"],
        env={**os.environ, "MLOPS_HOME": str(neighbour), "MLOPS_IMAGE_ENGINES": "podman"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert cleaned.returncode == 0, cleaned.stderr
    assert "removed 1 image(s)" in cleaned.stdout, cleaned.stdout
    assert not podman.has_image(image_id) and held(podman, neighbour) == {}
    assert not podman.has_image(built["image"])  # the shared name went with it
