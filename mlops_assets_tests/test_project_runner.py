"""The project runner: project code and fitted project models run in its process, never in the
code location's, and see no secret of the orchestrator's; a failure there is an answer, not a
crash, and the conversation survives whatever the project prints."""

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from mlops_assets.project.locate import MODELS_DIR
from mlops_assets.project.spec import ProjectError
from mlops_assets.runner.client import ProjectRunError, ProjectRunner

SECRET = "https://hooks.example.invalid/T000/B000/never-seen-by-project-code"


def _project(tmp_path: Path, name: str = "diabetes") -> Path:
    folder = tmp_path / "project"
    shutil.copytree(MODELS_DIR / name, folder, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def _spy_on_import(module: Path, log: Path, outside: Path) -> None:
    """``module``, at import: reads an environment variable and a file outside the project, and
    writes down what it saw and where it ran (as a hostile project would, to send it away)."""
    spy = f"""
import json as _json
import os as _os
import sys as _sys

with open({str(outside)!r}, encoding="utf-8") as _outside, open({str(log)!r}, "a", encoding="utf-8") as _log:
    _log.write(_json.dumps({{
        "pid": _os.getpid(),
        "argv": _sys.orig_argv,
        "webhook": _os.environ.get("MLOPS_ALERT_WEBHOOK_URL"),
        "environment": dict(_os.environ),
        "outside": _outside.read(),
    }}) + "\\n")
"""
    module.write_text(spy + module.read_text())


@pytest.mark.slow
def test_project_code_runs_only_in_the_runner_and_sees_no_secret(settings, instance, tmp_path, monkeypatch):
    from mlops_assets.definitions import build_definitions
    from mlops_assets.ingest.seed import seed
    from mlops_assets.ops.runner import ingest_new_files, retrain
    from mlops_assets.settings import get_settings
    from mlops_assets.storage.fsstore import Storage

    folder, log, outside = _project(tmp_path), tmp_path / "imports.jsonl", tmp_path / "outside.txt"
    outside.write_text("a file of the machine's, outside the project")
    for module in ("model.py", "seed.py"):
        _spy_on_import(folder / module, log, outside)
    monkeypatch.setenv("MLOPS_MODEL_PROJECT", str(folder))
    monkeypatch.setenv("MLOPS_ALERT_WEBHOOK_URL", SECRET)  # the orchestrator holds it
    get_settings.cache_clear()
    defs = build_definitions(get_settings())
    storage = Storage(get_settings().storage_root)
    seed(storage, defs.resources["project"].get())
    assert ingest_new_files(defs, instance, storage, get_settings().lock_dir)[0].success
    outcome = retrain(defs, instance, get_settings().lock_dir)
    assert outcome.success and outcome.registered["version"] == 1, outcome.errors

    imports = [json.loads(line) for line in log.read_text().splitlines()]
    ran_in = {" ".join(record["argv"][1:4]) for record in imports}
    # Seeded (the runner ran seed.py), trained (train.py through Pipes ran model.py), evaluated and
    # smoke-sampled (the runner loaded the fitted model): never in this process, the code location.
    assert any("train.py" in argv for argv in ran_in) and any(
        "mlops_assets.runner.worker" in a for a in ran_in
    )
    assert all(record["pid"] != os.getpid() for record in imports)
    for record in imports:
        assert record["webhook"] is None
        assert SECRET not in json.dumps(record["environment"])
        leaked = [n for n in record["environment"] if n.startswith(("MLOPS_", "DAGSTER_", "AZURE_"))]
        assert set(leaked) <= {"DAGSTER_PIPES_CONTEXT", "DAGSTER_PIPES_MESSAGES"}  # train.py's Pipes session
        assert record["outside"].startswith("a file of the machine's")  # read: the boundary is the process


def _tiny_project(tmp_path: Path, model_source: str) -> Path:
    folder = _project(tmp_path)
    (folder / "model.py").write_text(model_source)
    (folder / "seed.py").unlink()  # build_model's answer is not an estimator: nothing to fit
    return folder


def test_an_error_in_project_code_is_an_answer_and_the_runner_stays_up(tmp_path):
    source = (
        "import sys\n\nprint('chatter on stdout')\nsys.stdout.write('{\"result\": 42}\\n')\n\n"
        "def build_model(params):\n    print('more chatter')\n    raise ValueError('no estimator for ' + repr(params))\n"
    )
    folder = _tiny_project(tmp_path, source)
    runner = ProjectRunner(folder)
    scratch = runner.scratch  # a file may be staged there before the worker starts: one folder
    try:
        assert runner.check(folder) == {"model_functions": ["build_model"]}
        first = runner.pid
        assert Path(f"/proc/{first}/cwd").resolve() == scratch.resolve()
        with pytest.raises(ProjectRunError, match=r"ValueError: no estimator for \{'alpha': 1\}") as raised:
            runner.build(folder, {"alpha": 1})
        assert raised.value.kind == "ValueError"
        assert runner.check(folder)["model_functions"] == ["build_model"] and runner.pid == first
    finally:
        runner.close()
    assert not scratch.exists()


def test_a_seed_that_lacks_a_spec_column_is_refused_naming_file_and_key(tmp_path):
    folder = _project(tmp_path, "churn")
    spec = folder / "project.toml"
    spec.write_text(
        spec.read_text().replace(
            "[features.paperless]", '[features.loyalty_points]\nkind = "integer"\n\n[features.paperless]'
        )
    )
    runner = ProjectRunner(folder)
    try:
        with pytest.raises(
            ProjectError, match=r"project\.toml: features\.loyalty_points: not in the seed data"
        ):
            runner.seed_frame(folder)
    finally:
        runner.close()


def test_a_runner_that_dies_mid_task_says_so_and_the_next_call_gets_a_new_one(tmp_path):
    source = (
        "import os, signal\n\ndef build_model(params):\n"
        "    if params.get('die'):\n        os.kill(os.getpid(), signal.SIGKILL)\n    return 'fine'\n"
    )
    folder = _tiny_project(tmp_path, source)
    runner = ProjectRunner(folder)
    try:
        assert runner.build(folder, {})["estimator"] == "'fine'"
        first = runner.pid
        with pytest.raises(
            ProjectRunError, match=rf"exited with -{signal.SIGKILL.value} during build"
        ) as raised:
            runner.build(folder, {"die": True})
        assert raised.value.kind == ""
        assert runner.build(folder, {})["estimator"] == "'fine'" and runner.pid != first
    finally:
        runner.close()


def test_a_runner_whose_orchestrator_died_cleans_up_after_itself(tmp_path):
    """The orchestrator's process is killed (no atexit, no close): its runner sees its requests end,
    removes the scratch folder it worked in and exits."""
    import subprocess
    import sys

    orchestrator = (
        "import os, sys\n"
        "from pathlib import Path\n"
        "from mlops_assets.runner.client import ProjectRunner\n"
        "runner = ProjectRunner(Path(sys.argv[1]))\n"
        "runner.check(Path(sys.argv[1]))\n"
        "print(runner.pid, runner.scratch, flush=True)\n"
        "os._exit(0)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", orchestrator, str(MODELS_DIR / "diabetes")],
        capture_output=True,
        text=True,
        check=True,
    )
    pid, scratch = out.stdout.split()
    deadline = time.monotonic() + 20
    while Path(scratch).exists() or Path(f"/proc/{pid}").exists():
        assert time.monotonic() < deadline, f"{scratch} or runner {pid} still there"
        time.sleep(0.05)
