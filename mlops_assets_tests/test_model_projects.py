"""Model projects: a spec with a mistake fails at load naming file and key; both shipped projects
go landing -> checks -> training -> gate -> registry on a real instance; the gate follows the spec."""

import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from mlops_assets.project.loader import load_project
from mlops_assets.project.locate import MODELS_DIR
from mlops_assets.project.spec import ProjectError
from mlops_assets_tests.projects import CHURN_ROWS
from mlops_assets_tests.serving_support import free_port

SHIPPED = sorted(p.name for p in MODELS_DIR.iterdir() if (p / "project.toml").is_file())


def test_both_projects_ship_and_load():
    assert SHIPPED == ["churn", "diabetes"]
    churn, diabetes = (load_project(MODELS_DIR / name) for name in SHIPPED)
    assert (churn.spec.task, diabetes.spec.task) == ("binary", "regression")
    assert {c.kind for c in churn.spec.features.values()} == {"categorical", "integer", "numeric", "boolean"}
    assert len(churn.spec.features) != len(diabetes.spec.features)


def _broken(tmp_path: Path, edit) -> Path:
    folder = tmp_path / "project"
    shutil.copytree(MODELS_DIR / "churn", folder)
    edit(folder)
    return folder


def _replace(name: str, old: str, new: str):
    def edit(folder: Path) -> None:
        text = (folder / name).read_text()
        assert old in text, old
        (folder / name).write_text(text.replace(old, new, 1))

    return edit


@pytest.mark.parametrize(
    ("edit", "key", "says"),
    [
        (
            _replace("project.toml", 'kind = "integer"', 'kind = "decimal"'),
            "features.tenure_months.kind",
            "'numeric'",
        ),
        (
            _replace("project.toml", "min = 0\nmax = 240", "min = 300\nmax = 240"),
            "features.tenure_months",
            "min 300 is above max 240",
        ),
        (
            _replace("project.toml", 'primary_metric = "roc_auc"', 'primary_metric = "mse"'),
            "project",
            "'mse' does not fit a binary task",
        ),
        (
            _replace(
                "project.toml",
                'primary_metric = "roc_auc"',
                'primary_metric = "log_loss"\ndirection = "maximize"',
            ),
            "project",
            "log_loss is to minimize",
        ),
        (
            _replace("project.toml", 'name = "churn"', 'name = "churn-v2"'),
            "name",
            "letters, digits and underscores",
        ),
        (
            _replace(
                "project.toml",
                "[features.paperless]",
                '[features.loyalty_points]\nkind = "integer"\n\n[features.paperless]',
            ),
            "features.loyalty_points",
            "not in the seed data",
        ),
        (
            _replace("project.toml", 'task = "binary"', 'task = "ranking"'),
            "task",
            "'regression', 'binary' or 'multiclass'",
        ),
        (
            _replace("project.toml", "holdout_percent = 25", "holdout_percent = 25\nshuffle = true"),
            "evaluation.shuffle",
            "Extra inputs are not permitted",
        ),
    ],
)
def test_a_spec_with_a_mistake_fails_at_load_naming_file_and_key(tmp_path, edit, key, says):
    folder = _broken(tmp_path, edit)
    with pytest.raises(ProjectError) as raised:
        load_project(folder)
    message = str(raised.value)
    assert message.startswith(str(folder / "project.toml")) and f": {key}: " in message and says in message


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("import os\n\ndef build_model(params):\n    return None\n", "model.py:1: imports 'os'"),
        (
            "from requests import get\n\ndef build_model(params):\n    return None\n",
            "model.py:1: imports 'requests'",
        ),
        (
            "def build_model(params):\n    import subprocess\n    return None\n",
            "model.py:2: imports 'subprocess'",
        ),
        ("from . import helpers\n\ndef build_model(params):\n    return None\n", "model.py:1: imports '.'"),
        ("from sklearn.linear_model import Ridge\n", "defines no function build_model()"),
        ("def build_model(params:\n", "not valid Python"),
    ],
)
def test_model_py_is_checked_before_it_runs(tmp_path, source, says):
    folder = _broken(tmp_path, lambda f: (f / "model.py").write_text(source))
    with pytest.raises(ProjectError, match=r"model\.py") as raised:
        load_project(folder)
    assert says in str(raised.value)


def test_a_forbidden_import_never_runs(tmp_path):
    marker = tmp_path / "ran"
    source = f"import os\nopen({str(marker)!r}, 'w').close()\n\ndef build_model(params):\n    return None\n"
    folder = _broken(tmp_path, lambda f: (f / "model.py").write_text(source))
    with pytest.raises(ProjectError):
        load_project(folder)
    assert not marker.exists()


@pytest.fixture
def churn_settings(tmp_path, monkeypatch):
    from mlops_assets.settings import get_settings

    monkeypatch.setenv("MLOPS_MODEL_PROJECT", str(MODELS_DIR / "churn"))
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "mlops"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "mlops" / "dagster"))
    monkeypatch.setenv("MLOPS_QA_PORT", str(free_port()))
    monkeypatch.setenv("MLOPS_PRODUCTION_PORT", str(free_port()))
    get_settings.cache_clear()
    yield get_settings()
    from mlops_assets.release.local_processes import LocalTarget

    local = LocalTarget(get_settings().home_dir)
    for deployment in local.list():
        local.stop(deployment.name)
    get_settings.cache_clear()


def test_the_default_home_is_per_project(monkeypatch):
    from mlops_assets.settings import Settings

    monkeypatch.delenv("MLOPS_HOME", raising=False)
    monkeypatch.delenv("MLOPS_MODEL_PROJECT", raising=False)
    assert Settings().home_dir == (Path(".mlops") / "diabetes").resolve()
    churn = Settings(model_project=MODELS_DIR / "churn")
    assert churn.home_dir == (Path(".mlops") / "churn").resolve()
    assert churn.registered_model_name == "churn"


@pytest.mark.slow
def test_the_churn_project_goes_from_landing_to_a_registered_version_and_a_bad_file_is_blocked(
    churn_settings,
):
    import dagster as dg
    import pandas as pd

    from mlops_assets.core.fsstore import Storage
    from mlops_assets.core.instance import write_instance_config
    from mlops_assets.definitions import build_definitions
    from mlops_assets.ingest.seed import seed, seed_parts
    from mlops_assets.ops.runner import ingest_new_files, monitor, release, retrain, score_new_files
    from mlops_assets.serving.keys import read_keys

    settings = churn_settings
    defs = build_definitions(settings)
    project = defs.resources["project"].get()
    assert project.name == "churn"
    storage = Storage(settings.storage_root)
    seed(storage, project)
    _, held_back = seed_parts(project)
    bad = held_back.astype(object)
    bad.loc[4, "plan"] = "gold"  # not a plan: rejected
    bad.loc[6, "region"] = "mars"  # flagged only
    storage.write_bytes("landing/bad-plans.csv", bad.to_csv(index=False).encode())
    write_instance_config(settings.dagster_home)
    with dg.DagsterInstance.get() as instance:
        outcomes = {o.partition: o for o in ingest_new_files(defs, instance, storage, settings.lock_dir)}
        assert outcomes["churn-part-1.csv"].success
        blocked = outcomes["bad-plans.csv"]
        assert not blocked.success
        assert any(
            "landing/bad-plans.csv: column plan has 1 value(s) not one of basic, standard, premium: row 6: 'gold'"
            in problem
            for problem in blocked.failed_checks
        ), blocked.failed_checks

        first = retrain(defs, instance, settings.lock_dir)
        assert first.success and first.registered["version"] == 1, first.errors
        assert first.training_data["batches"] == ["churn-part-1.csv"]  # the blocked file never feeds it
        candidate = first.candidate
        assert candidate["metric_names"] == "accuracy,f1,roc_auc,log_loss"
        assert 0.7 < candidate["roc_auc"] <= 1.0
        registry = defs.resources["registry"].get_registry()
        assert registry.model_name == "churn"
        version = registry.get_version(1)
        assert (version.tags["project"], version.tags["task"], version.tags["primary_metric"]) == (
            "churn",
            "binary",
            "roc_auc",
        )
        manifest = json.loads(registry.read_file(1, "manifest.json"))
        assert manifest["features"] == list(project.spec.feature_names) and manifest["target"] == "churned"
        assert manifest["project"]["spec_digest"] == project.spec_digest
        assert len(manifest["smoke"]["rows"]) == 3 and isinstance(manifest["smoke"]["rows"][0][0], str)
        assert "roc_auc" in first.evaluation["reason"] or "first candidate" in first.evaluation["reason"]

        # The same data, spec and code again: the same fingerprint, a clean skip.
        again = retrain(defs, instance, settings.lock_dir)
        assert (
            again.success and not again.registered and "identical to version 1" in again.evaluation["reason"]
        )

        # Released as the diabetes model is: the spec packaged with the code, QA smoke-tested on
        # the manifest's rows (text, booleans, a null), then production scores by name and by position.
        released = release(defs, instance, settings.lock_dir, 1)
        assert released.success, released.errors
        url = released.production["url"]
        key = {"Authorization": f"Bearer {read_keys(settings.keys_file)[0]}"}
        by_name = httpx.post(f"{url}/score", json={"data": CHURN_ROWS}, headers=key)
        assert by_name.status_code == 200, by_name.text
        by_position = [[row[f] for f in project.spec.feature_names] for row in CHURN_ROWS]
        assert httpx.post(f"{url}/score", json={"data": by_position}, headers=key).json() == by_name.json()
        assert all(isinstance(label, bool) for label in by_name.json()["result"])
        refused = httpx.post(f"{url}/score", json={"data": [{**CHURN_ROWS[0], "plan": "gold"}]}, headers=key)
        assert refused.status_code == 422 and "feature plan: 'gold' is outside" in refused.json()["error"]

        # Monitoring follows the spec: the day's log (rows by name and by position) compacts into
        # the project's typed columns, and drift is judged per kind (chi-square for categories).
        day = datetime.now(UTC).date().isoformat()
        for _ in range(10):
            assert httpx.post(f"{url}/score", json={"data": CHURN_ROWS * 3}, headers=key).status_code == 200
        deadline = time.monotonic() + 20

        def logged() -> int:  # ours: the smoke tests' records are synthetic
            files = storage.list_files(f"scoring-logs/date={day}", versions=False)
            return sum(storage.read_bytes(f.path).count(b'"synthetic":false') for f in files)

        while logged() < 12:
            assert time.monotonic() < deadline, "the production's log never reached storage"
            time.sleep(0.2)
        monitored = monitor(defs, instance, settings.lock_dir, day)
        assert monitored.success, monitored.errors
        assert monitored.logs["rows"] == 64  # 10 x 6 rows, and the 2 + 2 of the requests above
        table = monitored.drift["table"]
        assert "| plan " in table and "chi2" in table and "| tenure_months " in table and "ks" in table

        # Batch scoring follows it too: the held-back rows as a CSV, scored by name, with labels
        # and each class's probability.
        features = list(project.spec.feature_names)
        storage.write_bytes("scoring-input/churn-batch.csv", held_back[features].to_csv(index=False).encode())
        ((name, batch),) = score_new_files(defs, instance, storage, settings.lock_dir)
        assert name == "churn-batch.csv" and batch.success
        output = pd.read_parquet(storage.uri("scoring-output/churn-batch.parquet"))
        assert len(output) == len(held_back) and output["prediction"].dtype == bool
        assert ((output["probability_false"] + output["probability_true"] - 1).abs() < 1e-9).all()


@pytest.mark.slow
def test_an_edited_model_and_an_edited_spec_each_make_a_new_version_with_the_reason(tmp_path, monkeypatch):
    """A team's copy of the diabetes project: v1; a build_model that fits better is a new
    fingerprint and v2; a spec without one feature leaves no comparable bar, so v3 is promoted
    and the reason says why."""
    import dagster as dg

    from mlops_assets.core.fsstore import Storage
    from mlops_assets.core.instance import write_instance_config
    from mlops_assets.definitions import build_definitions
    from mlops_assets.ingest.seed import seed
    from mlops_assets.ops.runner import ingest_new_files, retrain
    from mlops_assets.settings import get_settings

    folder = tmp_path / "team-project"
    shutil.copytree(MODELS_DIR / "diabetes", folder)
    monkeypatch.setenv("MLOPS_MODEL_PROJECT", str(folder))
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "mlops"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "mlops" / "dagster"))
    get_settings.cache_clear()
    settings = get_settings()
    defs = build_definitions(settings)
    storage = Storage(settings.storage_root)
    seed(storage, defs.resources["project"].get())
    write_instance_config(settings.dagster_home)
    try:
        with dg.DagsterInstance.get() as instance:
            ingest_new_files(defs, instance, storage, settings.lock_dir)
            first = retrain(defs, instance, settings.lock_dir)
            assert first.registered["version"] == 1

            _replace(
                "model.py", 'Ridge(alpha=float(params["alpha"]))', 'Ridge(alpha=10 * float(params["alpha"]))'
            )(folder)
            edited = retrain(defs, instance, settings.lock_dir)
            assert edited.candidate["fingerprint"] != first.candidate["fingerprint"]
            assert edited.candidate["data_version"] == first.candidate["data_version"]
            assert edited.registered["version"] == 2, edited.evaluation["reason"]
            assert edited.evaluation["reason"].startswith("promoted: candidate mse")

            spec = (folder / "project.toml").read_text()
            s6 = spec.index("[features.s6]")
            (folder / "project.toml").write_text(spec[:s6] + spec[spec.index("[evaluation]") :])
            fewer = retrain(defs, instance, settings.lock_dir)
            assert fewer.success, fewer.errors
            assert fewer.registered["version"] == 3
            # Nothing is in production, so both registered versions form the bar; neither compares.
            changed = "was trained for other columns or another task (spec changed)"
            assert fewer.evaluation["reason"] == (
                f"promoted without comparison: version 1 {changed}; version 2 {changed}"
            )
            manifest = json.loads(defs.resources["registry"].get_registry().read_file(3, "manifest.json"))
            assert "s6" not in manifest["features"] and len(manifest["features"]) == 9
    finally:
        get_settings.cache_clear()


def test_the_cli_describes_a_project_and_refuses_a_broken_one_by_file_and_key(tmp_path):
    import subprocess
    import sys

    from mlops_assets_tests.conftest import subprocess_env

    cli = [str(Path(sys.executable).parent / "mlops-assets"), "project"]
    env = {k: v for k, v in subprocess_env(tmp_path / "home").items() if k != "MLOPS_HOME"}
    env["MLOPS_MODEL_PROJECT"] = str(MODELS_DIR / "churn")
    shown = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.startswith("churn (spec version 1): binary")
    assert "promotion: roc_auc improves by more than 0.00% on a 25% holdout" in shown.stdout
    home = subprocess.run([*cli, "home"], env=env, capture_output=True, text=True, timeout=120)
    assert home.stdout.strip() == str((Path(".mlops") / "churn").resolve())

    folder = _broken(tmp_path, _replace("project.toml", 'kind = "boolean"', 'kind = "yes/no"'))
    env["MLOPS_MODEL_PROJECT"] = str(folder)
    refused = subprocess.run(cli, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith(f"error: {folder / 'project.toml'}: target.kind: Input should be")
