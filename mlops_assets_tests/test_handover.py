"""Production on the local target when the serving code changes: a process handover under load."""

import json
import os
import shutil
from pathlib import Path

import httpx
import pytest

from mlops_assets.release.build_context import assemble, serving_requirements
from mlops_assets.release.deployments import DeploymentError
from mlops_assets.release.local_processes import LocalTarget
from mlops_assets.serving.keys import ensure_key_file, read_keys
from mlops_assets_tests.serving_support import Hammer, free_port, write_release

pytestmark = pytest.mark.slow


def _context(tmp_path: Path, version: int, alpha: float) -> Path:
    folder = tmp_path / f"release-{version}"
    write_release(folder, version, alpha)
    manifest = json.loads((folder / "manifest.json").read_text())
    built, _ = assemble(
        tmp_path / "contexts",
        "model.skops",
        (folder / "model.skops").read_bytes(),
        manifest,
        serving_requirements(),
    )
    return built.path


def _serving_pids(target: LocalTarget) -> set[int]:
    """Every scoring process of this MLOPS_HOME, recorded or not (an orphan would show here)."""
    marker = target._listener_address("", "").rsplit("/", 2)[0].encode()
    pids = set()
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "cmdline").read_bytes():
                    pids.add(int(proc.name))
            except OSError:
                continue
    return pids


@pytest.fixture
def target(settings):
    local = LocalTarget(settings.home_dir)
    yield local
    for deployment in local.list():
        local.stop(deployment.name)


def test_new_serving_code_takes_over_the_socket_without_failing_a_request(settings, target, tmp_path):
    one, two = _context(tmp_path, 1, 0.5), _context(tmp_path, 2, 50.0)
    ensure_key_file(settings.keys_file)
    key = read_keys(settings.keys_file)[0]
    port = free_port()
    first, mode = target.release("production", one, "code-a", "1", "scoring:one", port)
    assert mode == "new process"

    with Hammer(first.url, key, clients=4) as hammer:
        while len(hammer.statuses) < 200:  # traffic flowing on keep-alive connections first
            pass
        second, mode = target.release("production", two, "code-b", "2", "scoring:two", port)
        served_after = len(hammer.statuses)
        while len(hammer.statuses) < served_after + 200:
            pass

    assert mode == "process handover (the serving code changed)"
    assert second.pid != first.pid and second.url == first.url
    assert _serving_pids(target) == {second.pid}  # the old process drained and exited
    assert hammer.statuses and not hammer.failures(), hammer.failures()
    assert "1" in hammer.versions and hammer.versions[-1] == "2"

    # The same code again: the running process swaps the model in, no new process.
    third, mode = target.release("production", one, "code-b", "1", "scoring:one", port)
    assert mode == "model swap" and third.pid == second.pid


def test_a_successor_that_never_becomes_ready_leaves_the_old_process_serving(settings, target, tmp_path):
    good = _context(tmp_path, 1, 0.5)
    port = free_port()
    first, _ = target.release("production", good, "code-a", "1", "scoring:one", port)
    # A context whose artifact does not match its manifest: the service starts but refuses the model.
    bad = tmp_path / "bad-context"
    shutil.copytree(_context(tmp_path, 2, 50.0), bad)
    artifact = bad / "model" / "model.skops"
    artifact.write_bytes(artifact.read_bytes() + b"tampered")

    with pytest.raises(DeploymentError, match="not ready with version 2 within 4 s"):
        target.release("production", bad, "code-b", "2", "scoring:two", port, ready_timeout=4)

    still = target.get("production")
    assert still is not None and still.pid == first.pid and still.version == "1"
    assert _serving_pids(target) == {first.pid}  # the successor is gone, no orphan
    assert not list((target.state_dir / "production").glob("*/model")) or all(
        os.path.realpath(link) == str(good / "model")
        for link in (target.state_dir / "production").glob("*/model")
    )
    assert httpx.get(f"{first.url}/health/ready").json()["version"] == "1"
