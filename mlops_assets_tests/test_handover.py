"""Production on the local target when the serving code changes: a process handover under load."""

import contextlib
import json
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from mlops_assets.hosting.health import DeploymentError
from mlops_assets.hosting.processes import LocalTarget
from mlops_assets.release.build_context import assemble, serving_requirements
from mlops_assets.serving.keys import ensure_key_file, read_keys
from mlops_assets_tests.serving_support import SAMPLE, Hammer, free_port, process_tree, write_release

pytestmark = pytest.mark.slow


def _context(tmp_path: Path, version: int, alpha: float, serving_spec: dict | None = None) -> Path:
    folder = tmp_path / f"release-{version}"
    write_release(folder, version, alpha)
    manifest = json.loads((folder / "manifest.json").read_text())
    built, _ = assemble(
        tmp_path / "contexts",
        "model.skops",
        (folder / "model.skops").read_bytes(),
        manifest,
        serving_requirements(),
        serving_spec=serving_spec,
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


def test_a_successor_delivers_the_records_its_predecessor_could_not(settings, target, tmp_path, monkeypatch):
    one, two = _context(tmp_path, 1, 0.5), _context(tmp_path, 2, 50.0)
    ensure_key_file(settings.keys_file)
    key = read_keys(settings.keys_file)[0]
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the log root should be: every write fails")
    monkeypatch.setenv("MLOPS_SCORING_LOG_URL", str(blocked))
    monkeypatch.setenv("MLOPS_SCORING_LOG_FLUSH_SECONDS", "0.2")
    port = free_port()
    first, _ = target.release("production", one, "code-a", "1", "scoring:one", port)
    for _ in range(7):
        answer = httpx.post(f"{first.url}/score", json=SAMPLE, headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 200
    spill = Path(first.folder) / "spill"
    _until(lambda: _lines(spill) == 7, "the predecessor spilled its 7 records")
    # One file was claimed by a writer (a live pid: no writer hands it back) when the deployment
    # stopped: its records are as undelivered as the rest. Left half-written: a temp file.
    claimed = sorted(spill.rglob("*.jsonl"))[0]
    in_claim = claimed.read_bytes().count(b"\n")
    claimed.rename(claimed.with_name(f"{claimed.name}.claim-{os.getpid()}-0a1b2c3d"))
    (claimed.parent / f"{claimed.name}.tmp-{os.getpid()}-0a1b2c3d").write_bytes(b'{"request_id": "half')
    assert _lines(spill) == 7 - in_claim

    logs = tmp_path / "logs"
    monkeypatch.setenv("MLOPS_SCORING_LOG_URL", str(logs))  # storage is back, for the successor
    second, mode = target.release("production", two, "code-b", "2", "scoring:two", port)
    assert mode == "process handover (the serving code changed)"
    _until(lambda: _lines(logs / "scoring-logs") == 7, "the successor delivered them")
    assert not Path(first.folder).exists()  # nothing left of the predecessor
    assert _lines(Path(second.folder) / "spill") == 0


def _lines(folder: Path) -> int:
    return sum(p.read_bytes().count(b"\n") for p in folder.rglob("*.jsonl")) if folder.exists() else 0


def _until(predicate, what: str, timeout: float = 20) -> None:
    import time

    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what
        time.sleep(0.1)


def test_a_killed_service_is_restarted_on_the_same_socket_and_no_connection_is_refused(
    settings, target, tmp_path
):
    import signal

    ensure_key_file(settings.keys_file)
    key = read_keys(settings.keys_file)[0]
    deployment, _ = target.release(
        "production", _context(tmp_path, 1, 0.5), "code-a", "1", "scoring:one", free_port()
    )
    killed = deployment.status["service_pid"]
    os.kill(killed, signal.SIGKILL)
    # Sent at once, while no service runs: it waits in the supervisor's accept queue, not refused.
    answer = httpx.post(
        f"{deployment.url}/score", json=SAMPLE, headers={"Authorization": f"Bearer {key}"}, timeout=60
    )
    assert answer.status_code == 200 and answer.headers["x-model-version"] == "1"
    status = target.get("production").status
    assert status["starts"] == 2 and status["exits"] == [-signal.SIGKILL] and status["service_pid"] != killed
    assert target.get("production").pid == deployment.pid  # the same supervisor


def test_deployments_says_what_answers_not_what_was_recorded(settings, target, tmp_path):
    import signal
    import subprocess
    import sys

    from mlops_assets_tests.conftest import subprocess_env

    deployment, _ = target.release(
        "production", _context(tmp_path, 1, 0.5), "code-a", "1", "scoring:one", free_port()
    )

    def listed() -> str:
        command = [str(Path(sys.executable).parent / "mlops-assets"), "deployments"]
        return subprocess.run(
            command, env=subprocess_env(settings.home_dir), capture_output=True, text=True
        ).stdout

    assert listed().rstrip().endswith("answering ready")
    service = deployment.status["service_pid"]
    os.kill(service, signal.SIGSTOP)  # hung: alive, recorded, supervised, and answering nothing
    try:
        assert (
            "production: version 1" in listed()
            and "not answering at http://127.0.0.1:" in listed()
            and "(ReadTimeout)" in listed()
        )
    finally:
        os.kill(service, signal.SIGCONT)
    assert listed().rstrip().endswith("answering ready")


def test_a_recorded_pid_that_now_runs_something_else_is_never_signalled(settings, target, tmp_path):
    """After a reboot a deployment's recorded pid may run another process, even one whose command
    line says mlops-assets (another home's, an editor on the repository): `down` must not kill it."""
    import dataclasses
    import subprocess
    import sys
    import uuid

    from mlops_assets.hosting.state import Deployment

    stranger = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(120)", "mlops-assets", "--listen", "127.0.0.1:8100"],
        start_new_session=True,
    )
    try:
        record = Deployment(
            "production", stranger.pid, "http://127.0.0.1:1", 1, "1", "img", str(tmp_path), "", 0.0
        )
        target.store.write(dataclasses.replace(record, deployment_id=uuid.uuid4().hex))
        assert target.get("production") is None  # not ours: recorded as lost, not as serving
        assert target.lost("production").pid == stranger.pid
        assert target.stop("production") is False
        assert stranger.poll() is None  # alive: never signalled
    finally:
        stranger.kill()
        stranger.wait()


@pytest.mark.slow
def test_stopping_waits_for_the_service_s_whole_shutdown_before_killing(settings, target, tmp_path):
    """A service stops in bounded steps (drain, graceful shutdown, the request log's last flush):
    one still flushing 31 s after SIGTERM is waited for, not killed mid-flush."""
    import dataclasses
    import subprocess
    import sys
    import uuid

    from mlops_assets.hosting.state import Deployment

    deployment_id = uuid.uuid4().hex
    slow_to_stop = (
        "import signal, sys, time\n"
        "stopping = []\n"
        "signal.signal(signal.SIGTERM, lambda *_: stopping.append(time.monotonic()))\n"
        "print('up', flush=True)\n"
        "while not stopping: time.sleep(0.05)\n"
        "time.sleep(31)  # the last flush of a slow storage account\n"
    )
    service = subprocess.Popen(
        [sys.executable, "-c", slow_to_stop, "--share-at", f"@mlops-assets/x/production/{deployment_id}"],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert service.stdout.readline().strip() == "up"
    record = Deployment(
        "production", service.pid, "http://127.0.0.1:1", 1, "1", "img", str(tmp_path), "", 0.0
    )
    target.store.write(dataclasses.replace(record, deployment_id=deployment_id))
    assert settings.service_stop_seconds >= 5 + 30 + 30
    assert target.stop("production") is True
    assert service.wait(timeout=5) == 0  # it finished its shutdown: never SIGKILLed


def test_the_supervisor_keeps_the_deployment_s_log_bounded(tmp_path):
    """A chatty service (a flood of refused requests writes a line each): the log is copied to
    <log>.1 and truncated past its size, while the service keeps running and writing."""
    import subprocess
    import sys
    import uuid

    log = tmp_path / "production.log"
    chatty = "import time\nwhile True:\n    print('x' * 99, flush=True)\n    time.sleep(0.001)\n"
    command = [
        str(Path(sys.executable).parent / "mlops-assets-supervise"),
        "--listen", f"127.0.0.1:{free_port()}",
        "--share-at", f"@mlops-assets-test/{uuid.uuid4().hex}",
        "--status", str(tmp_path / "status.json"),
        "--log", str(log),
        "--log-max-bytes", "20000",
        "--", sys.executable, "-c", chatty,
    ]  # fmt: skip
    with open(log, "a") as handle:
        supervisor = subprocess.Popen(
            command, stdout=handle, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        kept = tmp_path / "production.log.1"
        _until(kept.exists, "the log was rotated")
        _until(lambda: log.stat().st_size < kept.stat().st_size, "the log starts again after a rotation")
        sizes = []
        for _ in range(3):  # rotated again and again: never more than about a second past the size
            time.sleep(1.1)
            sizes.append(log.stat().st_size)
        assert max(sizes) < 20000 + 250_000 and supervisor.poll() is None
        assert json.loads((tmp_path / "status.json").read_text())["starts"] == 1  # never restarted
    finally:
        os.killpg(supervisor.pid, signal.SIGKILL)
        supervisor.wait()


# A release in a process of its own, killed (SIGKILL, as kill -9 would) at the step named by
# MLOPS_HANDOVER_FAILPOINT: argv = context, version, port, ready timeout.
RELEASE_THEN_DIE = """
import sys
from pathlib import Path
from mlops_assets.hosting.processes import LocalTarget
from mlops_assets.settings import get_settings
context, version, port, ready = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
LocalTarget(get_settings().home_dir).release(
    "production", context, "code-" + version, version, "scoring:" + version, port, ready_timeout=ready
)
"""


def _release_killed_at(step: str, context: Path, version: str, port: int, ready: float = 90):
    import subprocess
    import sys

    from mlops_assets.hosting.takeover import FAILPOINT_VARIABLE

    killed = subprocess.run(
        [sys.executable, "-c", RELEASE_THEN_DIE, str(context), version, str(port), str(ready)],
        env={**os.environ, FAILPOINT_VARIABLE: step},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert killed.returncode == -signal.SIGKILL, (step, killed.returncode, killed.stderr[-2000:])


def test_a_release_killed_at_each_step_of_a_handover_leaves_exactly_one_version_serving(
    settings, target, tmp_path
):
    """Killed at any step, a handover ends with one supervisor on the port, the record naming it,
    and every answer from its version: the old one if the successor never started, else the new one
    (it commits and stops its predecessor on its own). The next release then proceeds as usual."""
    from mlops_assets.hosting.takeover import STEPS

    one, two = _context(tmp_path, 1, 0.5), _context(tmp_path, 2, 50.0)
    port = free_port()
    target.release("production", one, "code-1", "1", "scoring:1", port)
    for step in STEPS:
        serving = target.get("production")
        after = "2" if serving.version == "1" else "1"
        _release_killed_at(step, two if after == "2" else one, after, port)
        expected = serving.version if step == "prepared" else after

        def settled(expected=expected) -> bool:
            now = target.get("production")
            return now is not None and now.version == expected and _serving_pids(target) == {now.pid}

        _until(settled, f"one supervisor serving version {expected} after a kill at {step}", timeout=90)
        assert target.strays() == []
        versions = {httpx.get(f"{serving.url}/health/ready").json()["version"] for _ in range(40)}
        assert versions == {expected}, (step, versions)
    folders = {p.name for p in (target.state_dir / "production").iterdir()}
    assert len(folders) <= 2  # the serving one, and at most one a kill left before the next release


def test_a_successor_an_interrupted_release_left_is_found_by_deployments_and_stopped_by_down(
    settings, target, tmp_path
):
    import subprocess
    import sys

    good = _context(tmp_path, 1, 0.5)
    port = free_port()
    first, _ = target.release("production", good, "code-a", "1", "scoring:one", port)
    bad = tmp_path / "bad-context"  # its service starts but never becomes ready: the successor waits
    shutil.copytree(_context(tmp_path, 2, 50.0), bad)
    (bad / "model" / "model.skops").write_bytes(b"tampered")
    _release_killed_at("spawned", bad, "2", port, ready=120)

    _until(lambda: len(target.strays("production")) == 1, "the waiting successor found")
    stray = target.strays("production")[0]
    assert stray.pid in _serving_pids(target) and stray.pid != first.pid
    cli = [sys.executable, "-m", "mlops_assets.ops.cli"]
    listed = subprocess.run([*cli, "deployments"], capture_output=True, text=True, timeout=120)
    assert f"unrecorded supervisor pid {stray.pid}" in listed.stdout, listed.stdout
    assert "production: version 1" in listed.stdout
    down = subprocess.run([*cli, "down"], capture_output=True, text=True, timeout=300)
    assert down.returncode == 0 and "stopped production" in down.stdout, down.stdout
    assert _serving_pids(target) == set() and target.list() == [] and target.strays() == []


def test_a_service_that_stops_answering_is_killed_and_started_again_within_30_s(
    settings, target, tmp_path, monkeypatch
):
    """kill -STOP the service: it keeps its process and the socket while clients time out. The
    supervisor's liveness probe misses its answers, kills it, and the usual restart follows."""
    import time

    from mlops_assets.settings import get_settings

    monkeypatch.setenv("MLOPS_SERVICE_PROBE_SECONDS", "1")
    monkeypatch.setenv("MLOPS_SERVICE_PROBE_MISSES", "3")
    get_settings.cache_clear()
    deployment, _ = target.release(
        "production", _context(tmp_path, 1, 0.5), "code-a", "1", "scoring:one", free_port()
    )
    _until(lambda: httpx.get(f"{deployment.url}/health/live").json()["deployment"], "live answers")
    time.sleep(1.5)  # the probe has had its first answer from this service
    hung = deployment.status["service_pid"]
    os.kill(hung, signal.SIGSTOP)
    stopped_at = time.monotonic()

    def serving_again() -> bool:
        status = target.get("production").status
        return status.get("starts") == 2 and deployment.health(timeout=1) == "answering ready"

    try:
        _until(serving_again, "killed and started again", timeout=30)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(hung, signal.SIGCONT)
    assert time.monotonic() - stopped_at < 30
    status = target.get("production").status
    assert status["exits"] == [-signal.SIGKILL] and status["service_pid"] != hung
    assert target.get("production").pid == deployment.pid  # the same supervisor, no release involved


def test_production_comes_back_within_30_s_after_its_supervisor_is_killed_with_no_dagster_running(
    settings, target, tmp_path
):
    """kill -9 the supervisor (its service drains and exits with it): `mlops-assets keep` starts
    the same release again from the record, with no Dagster process anywhere."""
    import subprocess
    import sys
    import time

    deployment, _ = target.release(
        "production", _context(tmp_path, 1, 0.5), "code-a", "1", "scoring:one", free_port()
    )
    keeper = subprocess.Popen(
        [sys.executable, "-m", "mlops_assets.ops.cli", "keep", "--every", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        os.killpg(deployment.pid, signal.SIGKILL)
        killed_at = time.monotonic()

        def back() -> bool:
            now = target.get("production")
            return (
                now is not None and now.pid != deployment.pid and now.health(timeout=1) == "answering ready"
            )

        _until(back, "production started again by the keeper", timeout=30)
        assert time.monotonic() - killed_at < 30
        again = target.get("production")
        assert (again.version, again.port, again.model_dir) == ("1", deployment.port, deployment.model_dir)
        assert _serving_pids(target) == {again.pid}
        target.stop("production")  # stopped on purpose: the keeper leaves it stopped
        time.sleep(3)
        assert target.get("production") is None and _serving_pids(target) == set()
    finally:
        keeper.terminate()
        output, _ = keeper.communicate(timeout=30)
    assert keeper.returncode == 0 and "lost its supervisor" in output, output[-2000:]


class _CountedLooks(threading.Event):
    """The keeper's stop event, counting its looks (one wait between each)."""

    def __init__(self) -> None:
        super().__init__()
        self.looks = 0

    def wait(self, timeout: float | None = None) -> bool:
        self.looks += 1
        return super().wait(timeout)


@pytest.mark.parametrize("stopped_meanwhile", [True, False], ids=["stopped on purpose", "left as it failed"])
def test_a_keeper_s_failed_start_is_tried_again_unless_production_was_stopped_on_purpose_meanwhile(
    target, tmp_path, monkeypatch, stopped_meanwhile
):
    """A start can fail its readiness wait while the service it started comes up anyway and is then
    stopped on purpose (`down`, a teardown): the keeper must leave it stopped, not start it again.
    A start that just failed is tried again at each look. The start is the keeper's own function,
    made to fail here; the loss and the stop are the real records."""
    from mlops_assets.hosting import keeper

    deployment, _ = target.release(
        "production", _context(tmp_path, 1, 0.5), "code-a", "1", "scoring:one", free_port()
    )
    os.killpg(deployment.pid, signal.SIGKILL)
    _until(lambda: target.lost("production") is not None, "the supervisor's death recorded as a loss")
    starts = []

    def failing_start(where: LocalTarget, lost):
        starts.append(lost.version)
        if stopped_meanwhile:
            where.stop("production")  # what a person's `down` does while the start is under way
        raise DeploymentError("not ready in time")

    monkeypatch.setattr(keeper, "bring_back", failing_start)
    stopping = _CountedLooks()
    looking = threading.Thread(target=keeper.keep, args=(target, contextlib.nullcontext, stopping, 0.02))
    looking.start()
    try:
        _until(lambda: stopping.looks >= 20, "twenty looks of the keeper")
    finally:
        stopping.set()
        looking.join(timeout=10)
    assert starts == ["1"] if stopped_meanwhile else len(starts) >= 10, starts
    assert target.get("production") is None


def _descendants(pid: int) -> list[str]:
    """The command lines of every process under ``pid``."""
    found = []
    for child in process_tree(pid)[1:]:
        with contextlib.suppress(OSError):
            found.append((Path("/proc") / str(child) / "cmdline").read_bytes().replace(b"\0", b" ").decode())
    return found


def test_a_process_deployment_runs_as_many_workers_as_its_project_s_service_says(target, tmp_path):
    """[serving] workers = 3 in the project: the local process serves with three uvicorn workers
    (the default is one), each answering."""
    from mlops_assets_tests.projects import DIABETES

    spec = DIABETES.spec.model_copy(
        update={"serving": DIABETES.spec.serving.model_copy(update={"workers": 3})}
    )
    sized = spec.serving_dict()
    deployment, _ = target.release(
        "production", _context(tmp_path, 1, 0.5, sized), "code-a", "1", "scoring:one", free_port()
    )
    _until(lambda: deployment.health(timeout=1) == "answering ready", "production ready")
    workers = [
        line for line in _descendants(deployment.pid) if "multiprocessing" in line and "spawn_main" in line
    ]
    assert len(workers) == 3, _descendants(deployment.pid)
