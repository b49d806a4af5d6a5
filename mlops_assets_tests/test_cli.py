"""The commands a user types: `mlops-assets demo` twice, the Dagster CLI and UI on the same instance."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_assets_tests.conftest import REPO, subprocess_env
from mlops_assets_tests.serving_support import free_port

pytestmark = pytest.mark.slow
BIN = Path(sys.executable).parent


PORTS: dict[str, str] = {}


def run(
    args: list[str], home: Path, timeout: int = 300, ports: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        args,
        cwd=REPO,
        env=subprocess_env(home) | (PORTS if ports is None else ports),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture(scope="module")
def demo_home(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess, subprocess.CompletedProcess]:
    home = tmp_path_factory.mktemp("demo") / "mlops"
    PORTS.update(MLOPS_PRODUCTION_PORT=str(free_port()), MLOPS_QA_PORT=str(free_port()))
    first = run([str(BIN / "mlops-assets"), "demo"], home)
    second = run([str(BIN / "mlops-assets"), "demo"], home)
    yield home, first, second
    run([str(BIN / "mlops-assets"), "down"], home)


def test_demo_runs_the_whole_loop_from_nothing(demo_home):
    _, first, _ = demo_home
    assert first.returncode == 0, first.stderr[-3000:]
    out = first.stdout
    assert "✓ diabetes-part-1.csv: 331 rows passed every blocking check" in out
    assert "→ registered diabetes version 1: no registered model yet" in out
    assert "✓ diabetes-part-2.csv: 111 rows passed every blocking check" in out
    assert "training data" in out and "442 rows from 2 batch(es)" in out
    round_two = out.split("Round 2")[1]
    assert "→ registered diabetes version 2" in round_two or "→ clean skip" in round_two
    assert "QA smoke test passed, production smoke test passed" in out
    port = PORTS["MLOPS_PRODUCTION_PORT"]
    assert f"Production URL: http://127.0.0.1:{port}/score" in out
    assert "Traceback" not in first.stderr
    # The monitoring loop on the demo's own traffic: compacted, synthetic smoke tests left out, no drift.
    assert "Monitoring: 40 scoring requests sent to production" in out
    assert re.search(
        r"✓ scoring_logs\[\d{4}-\d\d-\d\d\]: 40 requests, 200 rows, model versions \{'2': 40\}", out
    )
    assert re.search(r"✓ drift_report\[[\d-]+\]: no drift over 200 rows, against version 2", out)
    assert (
        "✓ batch_predictions[demo-clinic.csv]: 110 of 111 rows scored with version 2, 1 refused "
        "(reasons in the .refused.parquet beside the output)" in out
    )


def test_demo_twice_succeeds_and_says_there_was_nothing_new(demo_home):
    _, first, second = demo_home
    assert second.returncode == 0, second.stderr[-3000:]
    assert "wrote nothing (already seeded)" in second.stdout
    assert "no new files under landing/" in second.stdout
    assert "nothing new under scoring-input/" in second.stdout
    assert "→ clean skip, nothing registered: not promoted: identical to version" in second.stdout
    assert "Production: reusing the running deployment of version" in second.stdout
    assert (
        first.stdout.split("Registered versions:")[1].split("Done")[0]
        == second.stdout.split("Registered versions:")[1].split("Done")[0]
    )


# Runs a command in-process, then names the heavy libraries it loaded (each costs a second or more).
HEAVY_PROBE = (
    "import sys\n"
    "from mlops_assets.ops.cli import main\n"
    "code = main(sys.argv[1:])\n"
    "print('loaded:', sorted(m for m in ('dagster', 'mlflow', 'sklearn', 'azure.ai.ml') if m in sys.modules))\n"
    "sys.exit(code)\n"
)


def test_commands_that_start_no_run_load_neither_dagster_mlflow_nor_scikit_learn(demo_home, tmp_path):
    home, _, _ = demo_home
    csv = tmp_path / "new.csv"
    csv.write_text("a,b\n1,2\n")
    land_home = tmp_path / "other"  # a file landed in the demo's home would feed its later tests
    for args, where in [
        (["project"], home),
        (["versions"], home),
        (["deployments"], home),
        (["history"], home),
        (["instance"], home),
        (["land", str(csv)], land_home),
    ]:
        done = run([sys.executable, "-c", HEAVY_PROBE, *args], where)
        assert done.returncode == 0, (args, done.stderr[-2000:])
        assert done.stdout.splitlines()[-1] == "loaded: []", (args, done.stdout[-2000:])


def test_versions_show_each_metric_on_its_own_holdout_and_on_the_current_one(demo_home):
    home, _, _ = demo_home
    lines = run([str(BIN / "mlops-assets"), "versions"], home).stdout.splitlines()
    serving = [line for line in lines if line.startswith("production here: ")]
    assert len(serving) == 1 and serving[0].endswith("answering ready"), lines
    lines = [line for line in lines if line not in serving]
    pattern = re.compile(
        r"diabetes v(\d+)(?: \[[a-z, ]+\])?: mse ([\d.e+]+) on holdout (\w{8})"
        r"(?:, ([\d.e+]+) on the current (\w{8}))?; (\w+); compiled \(onnx, matrix of float64\)"
    )
    parsed = {int(m[1]): m.groups()[1:] for m in map(pattern.fullmatch, lines) if m}
    assert len(parsed) == len(lines) >= 2, lines
    first_judged, first_holdout, first_now, current, _ = parsed[1]
    # Version 1 was judged on the first batch's holdout; the second round scored it on the new one.
    assert first_holdout != current and first_now is not None and first_now != first_judged
    latest = parsed[max(parsed)]
    assert latest[1] == latest[3] and latest[0] == latest[2]  # judged on the current holdout itself


def test_instance_has_telemetry_off_and_stage_limits(demo_home):
    home, _, _ = demo_home
    config = (home / "dagster" / "dagster.yaml").read_text()
    assert "telemetry:\n  enabled: false" in config and "nux:\n  enabled: false" in config
    assert "value: training" in config and "value: release" in config
    assert not (home / "dagster" / "logs").exists()  # where dagster would queue telemetry events


def test_dagster_cli_validates_and_runs_retraining_on_the_demo_instance(demo_home):
    home, _, _ = demo_home
    validate = run([str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"], home)
    assert validate.returncode == 0, validate.stderr[-3000:]
    execute = run(
        [str(BIN / "dagster"), "job", "execute", "-m", "mlops_assets.definitions", "-j", "retraining_job"],
        home,
    )
    assert execute.returncode == 0, execute.stderr[-3000:]
    assert "RUN_SUCCESS" in execute.stderr + execute.stdout
    versions = run([str(BIN / "mlops-assets"), "versions"], home)
    assert "diabetes v1" in versions.stdout


def test_the_ui_serves_the_asset_graph_from_the_same_instance(demo_home):
    from mlops_assets_tests import dagster_dev

    home, _, _ = demo_home
    port = free_port()
    server = dagster_dev.start(subprocess_env(home), port)
    try:
        query = "{ assetNodes { assetKey { path } } runsOrError { ... on Runs { results { runId } } } }"
        data = dagster_dev.wait_for_asset_graph(server, port, query, 120)
        keys = {"/".join(node["assetKey"]["path"]) for node in data["assetNodes"]}
        assert {
            "landed_batch",
            "validated_batch",
            "training_data",
            "candidate_model",
            "model_evaluation",
            "registered_model",
        } <= keys
        assert len(data["runsOrError"]["results"]) >= 4  # the demo's runs, seen by the UI
    finally:
        dagster_dev.stop(server)


def test_rollback_and_promote_move_production_and_are_recorded(demo_home):
    home, first, _ = demo_home
    if "registered diabetes version 2" not in first.stdout:
        pytest.skip("the demo promoted only one version; nothing to roll back to")
    back = run([str(BIN / "mlops-assets"), "rollback", "--reason", "latency regression"], home)
    assert back.returncode == 0, back.stderr[-3000:]
    assert "version 1 serves at" in back.stdout
    listed = run([str(BIN / "mlops-assets"), "deployments"], home).stdout
    assert listed.startswith("production: version 1")
    versions = run([str(BIN / "mlops-assets"), "versions"], home).stdout
    assert "v1 [production]" in versions and "v2 [production" not in versions and "rolled_back" in versions
    again = run([str(BIN / "mlops-assets"), "promote", "2", "--reason", "fixed"], home)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "version 2 serves at" in again.stdout
    assert run([str(BIN / "mlops-assets"), "deployments"], home).stdout.startswith("production: version 2")
    assert "v2 [production]: " in run([str(BIN / "mlops-assets"), "versions"], home).stdout  # QA torn down
    nothing = run([str(BIN / "mlops-assets"), "promote", "99"], home)
    assert nothing.returncode == 2 and "version 99 is not registered" in nothing.stderr
    logged = run([str(BIN / "mlops-assets"), "history"], home).stdout.splitlines()
    assert [line.split()[1:3] for line in logged[-2:]] == [["rollback", "2"], ["promote", "1"]]
    assert "2 -> 1" in logged[-2] and "latency regression" in logged[-2] and "1 -> 2" in logged[-1]
    verified = run([str(BIN / "mlops-assets"), "history", "--verify"], home)
    assert verified.returncode == 0 and "the chain verifies:" in verified.stdout, verified.stderr


def test_down_stops_the_demo_s_deployments_and_a_new_demo_brings_production_back(demo_home):
    home, _, _ = demo_home
    listed = run([str(BIN / "mlops-assets"), "deployments"], home).stdout
    assert listed.startswith("production: version") and "qa:" not in listed
    assert "production here: version" in run([str(BIN / "mlops-assets"), "versions"], home).stdout
    assert "answering ready" in run([str(BIN / "mlops-assets"), "versions"], home).stdout
    serving = re.match(r"production: version (\d+)", listed)[1]
    assert "stopped production" in run([str(BIN / "mlops-assets"), "down"], home).stdout
    # Production stopped by hand is in its history, in the verified chain.
    last = run([str(BIN / "mlops-assets"), "history"], home).stdout.splitlines()[-1]
    assert last.split()[1:3] == ["down", f"{serving}"] and "-> -" in last, last
    assert "outside any run: stopped by mlops-assets down" in last
    assert run([str(BIN / "mlops-assets"), "history", "--verify"], home).returncode == 0
    stopped = run([str(BIN / "mlops-assets"), "versions"], home).stdout
    assert "production here: nothing serves version" in stopped and "answering" not in stopped
    again = run([str(BIN / "mlops-assets"), "demo"], home)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "is the champion but not running here; releasing it again" in again.stdout
    assert "production smoke test passed" in again.stdout


@pytest.mark.slow
def test_a_demo_whose_production_port_is_taken_fails_naming_it_and_the_next_demo_releases_it(tmp_path):
    """A release that failed for a reason outside the model (a busy port) is no verdict on the
    version: the message names the command that releases it again, and the next demo does."""
    import socket

    with socket.socket() as holder:  # something else already listens on the production port
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        ports = {"MLOPS_PRODUCTION_PORT": str(busy), "MLOPS_QA_PORT": str(free_port())}
        home = tmp_path / "mlops"
        demo = run([str(BIN / "mlops-assets"), "demo"], home, timeout=600, ports=ports)
        assert demo.returncode == 1, demo.stdout[-3000:]
        failed = re.search(r"the release of version (\d+) failed, as said above", demo.stderr)
        assert failed is not None, demo.stderr[-3000:]
        assert f"release it again: .venv/bin/mlops-assets promote {failed[1]}" in demo.stderr
        assert (
            f"port {busy} on 127.0.0.1 is already in use" in demo.stdout
            and "MLOPS_PRODUCTION_PORT" in demo.stdout
        )
        assert "rolled_back" not in demo.stdout  # the registered versions: none ever served
        listed = run([str(BIN / "mlops-assets"), "deployments"], home, ports=ports)
        assert "no local deployments running" in listed.stdout
    try:
        again = run([str(BIN / "mlops-assets"), "demo"], home, timeout=600, ports=ports)
        assert again.returncode == 0, (again.stdout[-3000:], again.stderr[-3000:])
        assert f"Production: version {failed[1]}'s release failed before it served; releasing it again" in (
            again.stdout
        )
        assert f"Production URL: http://127.0.0.1:{busy}/score (version {failed[1]})" in again.stdout
    finally:
        run([str(BIN / "mlops-assets"), "down"], home, ports=ports)


@pytest.mark.slow
def test_a_demo_whose_model_fails_to_train_says_why_in_one_line(tmp_path):
    from mlops_assets.ops.scaffold import scaffold

    folder = tmp_path / "broken"
    scaffold(folder, "regression")
    model = folder / "model.py"
    model.write_text(
        model.read_text().replace(
            "def build_model(params: dict) -> Pipeline:\n",
            "def build_model(params: dict) -> Pipeline:\n    raise ValueError('no estimator yet')\n",
        )
    )
    ports = {"MLOPS_PRODUCTION_PORT": str(free_port()), "MLOPS_QA_PORT": str(free_port())}
    demo = run(
        [str(BIN / "mlops-assets"), "demo"],
        tmp_path / "mlops",
        ports=ports | {"MLOPS_MODEL_PROJECT": str(folder)},
    )
    assert demo.returncode == 1, demo.stdout[-3000:]
    line = next(line for line in demo.stdout.splitlines() if "train.py exited with 1" in line)
    assert line.strip() == (
        f"train.py exited with 1: ValueError: no estimator yet (raised at {model}:17, in build_model)"
    )
    assert "No production deployment is running: no version was registered (retraining failed" in (
        demo.stderr
    )
    assert "release" not in demo.stderr.split("No production deployment is running")[1]
