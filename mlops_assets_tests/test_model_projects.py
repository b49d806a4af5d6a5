"""Model projects: a spec with a mistake fails at load naming file and key; both shipped projects
go landing -> checks -> training -> gate -> registry on a real instance; the gate follows the spec."""

import json
import re
import shutil
from pathlib import Path

import pytest

from mlops_assets.project.loader import load_project
from mlops_assets.project.locate import MODELS_DIR
from mlops_assets.project.spec import ProjectError
from mlops_assets_tests.projects import (
    CUSTOM_TRANSFORMER,
    FEATURES,
    TREE_TYPES,
    custom_transformer_project,
    diabetes_frame,
    make_tree_project,
)
from mlops_assets_tests.serving_support import free_port
from mlops_assets_tests.wheels import WHEELHOUSE

SHIPPED = sorted(p.name for p in MODELS_DIR.iterdir() if (p / "project.toml").is_file())


def test_the_shipped_projects_load():
    assert SHIPPED == ["churn", "diabetes", "parcels"]
    churn, diabetes, parcels = (load_project(MODELS_DIR / name) for name in SHIPPED)
    assert (churn.spec.task, parcels.spec.task, diabetes.spec.task) == ("binary", "regression", "regression")
    assert {c.kind for c in churn.spec.features.values()} == {"categorical", "integer", "numeric", "boolean"}
    assert len(churn.spec.features) != len(diabetes.spec.features)
    # The one on a library outside scikit-learn, locked in its own environment, on native categories.
    assert parcels.spec.environment.requirements == ("lightgbm>=4.7,<5",)
    assert set(parcels.spec.native_categories) == {"carrier", "service", "region"}


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
            _replace("project.toml", "min = 0\nmax = 240", "min = 0\nmax = nan"),
            "features.tenure_months",
            "max is nan: a bound is a finite number",
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
    ("files", "says"),
    [
        (
            {"model.py": "import torch\n\ndef build_model(params):\n    return None\n"},
            "model.py:1: imports 'torch'",
        ),
        (
            {"model.py": "from requests import get\n\ndef build_model(params):\n    return None\n"},
            "model.py:1: imports 'requests'",
        ),
        (
            {"model.py": "def build_model(params):\n    import lightgbm\n    return None\n"},
            "model.py:2: imports 'lightgbm'",
        ),
        (
            {
                "model.py": "from .features import clip\n\ndef build_model(params):\n    return None\n",
                "features.py": "import os\nimport xgboost\n\ndef clip(x):\n    return x\n",
            },
            "features.py:2: imports 'xgboost'",
        ),
        ({"model.py": "from sklearn.linear_model import Ridge\n"}, "defines no function build_model()"),
        ({"model.py": "def build_model(params:\n"}, "not valid Python"),
    ],
)
def test_every_module_is_checked_before_it_runs(tmp_path, files, says):
    def write(folder):
        for name, text in files.items():
            (folder / name).write_text(text)

    folder = _broken(tmp_path, write)
    with pytest.raises(ProjectError) as raised:
        load_project(folder)
    assert says in str(raised.value)


def test_the_standard_library_and_the_project_s_own_modules_pass_the_check(tmp_path):
    files = {
        "model.py": "import os, json\nfrom collections import OrderedDict\nfrom .features import clip\n"
        "from model_project.features import clip as again\n\ndef build_model(params):\n    return None\n",
        "features.py": "from __future__ import annotations\nimport math\n\ndef clip(x):\n    return x\n",
        "test_model.py": "import pytest\n",  # the project's own tests: not its package, not checked
    }
    folder = _broken(tmp_path, lambda f: [(f / n).write_text(t) for n, t in files.items()])
    project = load_project(folder)
    assert set(project.files) == {"project.toml", "model.py", "features.py", "seed.py"}
    assert set(project.sources()) == {"model.py", "features.py", "seed.py"}


def test_a_forbidden_import_never_runs(tmp_path):
    marker = tmp_path / "ran"
    source = (
        f"import requests\nopen({str(marker)!r}, 'w').close()\n\ndef build_model(params):\n    return None\n"
    )
    folder = _broken(tmp_path, lambda f: (f / "model.py").write_text(source))
    with pytest.raises(ProjectError):
        load_project(folder)
    assert not marker.exists()


@pytest.fixture
def project_settings(tmp_path, monkeypatch, request):
    """Settings of a fresh home for the project ``request.param`` names: a shipped one, "init"
    (one made by `mlops-assets init --task multiclass`, as a team would start), "forest" (`init
    --task binary --library forest`) or "custom" (a transformer class of its own)."""
    from mlops_assets.ops.scaffold import scaffold
    from mlops_assets.settings import get_settings

    if request.param == "init":
        folder = tmp_path / "made_by_init"
        scaffold(folder, "multiclass")
    elif request.param == "forest":
        folder = tmp_path / "forest_made_by_init"
        scaffold(folder, "binary", library="forest")
    elif request.param == "custom":
        folder = custom_transformer_project(tmp_path / "clipped")
    else:
        folder = MODELS_DIR / request.param
    if load_project(folder).spec.environment.requirements:
        # Its packages from the wheelhouse make fetched; served by processes, whose venv installs
        # the project's lock (a locked project's image: test_project_environment.py).
        monkeypatch.setenv("MLOPS_PACKAGE_INDEX", str(WHEELHOUSE))
        monkeypatch.setenv("MLOPS_LOCAL_RUNTIME", "process")
    monkeypatch.setenv("MLOPS_MODEL_PROJECT", str(folder))
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "mlops"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "mlops" / "dagster"))
    monkeypatch.setenv("MLOPS_QA_PORT", str(free_port()))
    monkeypatch.setenv("MLOPS_PRODUCTION_PORT", str(free_port()))
    get_settings.cache_clear()
    yield get_settings()
    from mlops_assets.hosting.processes import LocalTarget

    local = LocalTarget(get_settings().home_dir)
    for deployment in local.list():
        local.stop(deployment.name)
    get_settings.cache_clear()


@pytest.fixture
def project_settings_copy(tmp_path, monkeypatch):
    """Settings of a fresh home for a copy of the diabetes project a test may edit, and that copy."""
    from mlops_assets.hosting.processes import LocalTarget
    from mlops_assets.settings import get_settings

    folder = tmp_path / "team-project"
    shutil.copytree(MODELS_DIR / "diabetes", folder, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setenv("MLOPS_MODEL_PROJECT", str(folder))
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "mlops"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "mlops" / "dagster"))
    monkeypatch.setenv("MLOPS_LOCAL_RUNTIME", "process")
    monkeypatch.setenv("MLOPS_QA_PORT", str(free_port()))
    monkeypatch.setenv("MLOPS_PRODUCTION_PORT", str(free_port()))
    get_settings.cache_clear()
    yield get_settings(), folder
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


def _the_production_version_keeps_its_own_classes(defs, settings, instance, project) -> None:
    """The team rewrites features.py: the class version 1 was trained with is gone from the
    project's folder. The gate still scores version 1 (loaded from the package it carries) against
    the new candidate, and batch scoring with production (version 1) still loads it."""
    from mlops_assets.ops.runner import retrain, score_new_files
    from mlops_assets.storage.fsstore import Storage

    (project.folder / "features.py").write_text(
        "from sklearn.preprocessing import FunctionTransformer\n\n\n"
        "def unchanged():\n    return FunctionTransformer()\n"
    )
    model = (project.folder / "model.py").read_text()
    (project.folder / "model.py").write_text(
        model.replace("from .features import ClipToTrainingRange", "from .features import unchanged").replace(
            "ClipToTrainingRange()", "unchanged()"
        )
    )
    rewritten = retrain(defs, instance, settings.lock_dir)
    assert rewritten.success, rewritten.errors
    bar = {scored["label"]: scored for scored in rewritten.evaluation["compared"]}
    assert bar["version 1"]["incomparable"] is None and bar["version 1"]["metrics"], rewritten.evaluation
    storage = Storage(settings.storage_root)
    storage.write_bytes("scoring-input/after-the-rewrite.csv", storage.read_bytes("scoring-input/batch.csv"))
    ((name, scored),) = score_new_files(defs, instance, storage, settings.lock_dir)
    assert name == "after-the-rewrite.csv" and scored.success


# Per project: compiled?, what answers in production, and a word of the reason it did not compile.
EXPECTED_COMPILED = {
    "diabetes": (True, "affine map", ""),
    "churn": (True, "onnx graph", ""),
    "parcels": (True, "onnx graph", ""),
    "init": (True, "onnx graph", ""),
    "forest": (True, "onnx graph", ""),
    "custom": (False, "the model", "no converter"),
}


@pytest.mark.slow
@pytest.mark.parametrize(
    "project_settings", ["diabetes", "churn", "parcels", "init", "forest", "custom"], indirect=True
)
def test_a_project_lives_from_landing_to_batch_scoring_by_its_spec(project_settings, request):
    """diabetes (regression, numbers only), churn (binary: categories, booleans, a nullable
    integer, a flagged category), parcels (LightGBM in the project's own locked environment, on
    native categories, fitted by its own train() with early stopping), a multiclass project made
    by `mlops-assets init`, a binary random forest made by `init --library forest` (served by its
    compiled graph) and a project whose pipeline holds a transformer class of its own (in a
    helper module), each through the same lifecycle."""
    import dagster as dg

    from mlops_assets.core.instance import write_instance_config
    from mlops_assets.definitions import build_definitions
    from mlops_assets.storage.fsstore import Storage
    from mlops_assets_tests.lifecycle import run_lifecycle

    settings = project_settings
    defs = build_definitions(settings)
    write_instance_config(settings.dagster_home)
    with dg.DagsterInstance.get() as instance:
        lived = run_lifecycle(defs, settings, instance, Storage(settings.storage_root))
        if CUSTOM_TRANSFORMER in lived["project"].spec.artifact.trusted_types:
            _the_production_version_keeps_its_own_classes(defs, settings, instance, lived["project"])
    spec = lived["project"].spec
    # Each registers a compiled graph or says why not; production answers with the fastest
    # predictor proven equal to the model: a linear model's reading, else the graph, else the model.
    compiled = lived["manifest"]["compiled"]
    expected = EXPECTED_COMPILED[request.node.callspec.params["project_settings"]]
    assert ("sha256" in compiled, lived["answered_by"]) == expected[:2], compiled
    assert "sha256" in compiled or expected[2] in compiled["reason"], compiled
    labels = {"boolean": bool, "categorical": str, "numeric": float}[spec.target.kind]
    assert all(isinstance(label, labels) for label in lived["answer"]["result"])
    if spec.target.kind == "categorical":
        assert set(lived["answer"]["probabilities"][0]) == set(spec.target.categories)
        assert set(lived["output"]["prediction"]) <= set(spec.target.categories)
    if spec.environment.requirements:
        # LightGBM is the project's, never the platform's: it ran in the environment of the lock.
        import importlib.util

        assert importlib.util.find_spec("lightgbm") is None
        assert lived["candidate"]["model_kind"] == "LGBMRegressor"
        # its categories are fed to the graph as codes, from the manifest's table
        assert compiled["inputs"] == "coded" and set(compiled["codes"]) == {"carrier", "service", "region"}
        assert lived["manifest"]["project_package"]["modules"]["requirements.lock"].startswith(
            "# mlops-assets lock"
        )
    if CUSTOM_TRANSFORMER in spec.artifact.trusted_types:
        # The version carries its package: the class loaded from it in the runner, the service
        # (served above) and batch scoring, and the release packaged it beside the serving spec.
        manifest = lived["manifest"]
        assert manifest["project_package"]["modules"]["features.py"].startswith('"""Feature engineering')
        packaged = list(
            settings.home_dir.glob("release/contexts/*/project/mlops_assets/model/project-package")
        )
        assert packaged and all((folder / "features.py").is_file() for folder in packaged)


@pytest.mark.slow
def test_an_edited_model_and_an_edited_spec_each_make_a_new_version_with_the_reason(tmp_path, monkeypatch):
    """A team's copy of the diabetes project: v1; a build_model that fits better is a new
    fingerprint and v2; a spec without one feature leaves no comparable bar, so v3 is promoted
    and the reason says why."""
    import dagster as dg

    from mlops_assets.core.instance import write_instance_config
    from mlops_assets.definitions import build_definitions
    from mlops_assets.ingest.seed import seed
    from mlops_assets.ops.runner import ingest_new_files, retrain
    from mlops_assets.settings import get_settings
    from mlops_assets.storage.fsstore import Storage

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
    assert refused.stderr.strip().endswith("or 'boolean', not 'yes/no'")  # the misspelled value, named


# Above what retrains of the same model on the same data differ by (bench/gate_noise.py): 0 let noise promote.
INIT_MIN_IMPROVEMENT = {
    "sklearn": {"regression": 0.01, "binary": 0.01, "multiclass": 0.04},
    "forest": {"regression": 0.05, "binary": 0.03, "multiclass": 0.12},
    "hgb": {"regression": 0.05, "binary": 0.04, "multiclass": 0.09},
}


@pytest.mark.parametrize("library", ["sklearn", "forest", "hgb"])
@pytest.mark.parametrize("task", ["regression", "binary", "multiclass"])
def test_init_makes_a_project_that_passes_its_own_test(tmp_path, task, library):
    import subprocess
    import sys

    folder = tmp_path / f"my-{task}-model"
    made = subprocess.run(
        [
            str(Path(sys.executable).parent / "mlops-assets"),
            "init",
            str(folder),
            "--task",
            task,
            "--library",
            library,
        ],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    project = load_project(folder)
    assert (project.name, project.spec.task) == (f"my_{task}_model", task)
    assert project.spec.evaluation.min_improvement == INIT_MIN_IMPROVEMENT[library][task]
    own_test = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(folder / "test_project.py")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
    )
    assert own_test.returncode == 0 and "3 passed" in own_test.stdout, own_test.stdout[-2000:]
    # Made under models/, the project is linted by `make test`: it passes as made.
    ruff = [str(Path(sys.executable).parent / "ruff"), "--config", str(MODELS_DIR.parent / "pyproject.toml")]
    for check in (["check"], ["format", "--check"]):
        linted = subprocess.run([*ruff[:1], *check, *ruff[1:], str(folder)], capture_output=True, text=True)
        assert linted.returncode == 0, linted.stdout + linted.stderr

    again = subprocess.run(
        [str(Path(sys.executable).parent / "mlops-assets"), "init", str(folder), "--task", task],
        capture_output=True,
        text=True,
    )
    assert again.returncode == 2 and "not empty; init writes only into a new or empty folder" in again.stderr
    assert project.spec_digest == load_project(folder).spec_digest  # nothing was overwritten


def test_a_tree_model_s_untrusted_types_fail_its_own_test_and_build_naming_the_line_to_add(tmp_path):
    """The types a fitted model holds are found on the author's machine (the project's own test,
    `project --build`), not at the first `make demo`; the message is the line to put in project.toml."""
    import subprocess
    import sys

    from mlops_assets.ops.scaffold import scaffold
    from mlops_assets_tests.conftest import subprocess_env

    folder = tmp_path / "trees"
    scaffold(folder, "binary")
    make_tree_project(folder)
    own_test = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        str(folder / "test_project.py"),
    ]
    build = [str(Path(sys.executable).parent / "mlops-assets"), "project", "--build"]
    env = subprocess_env(tmp_path / "home") | {"MLOPS_MODEL_PROJECT": str(folder)}

    failed = subprocess.run(own_test, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert failed.returncode == 1 and "1 failed, 2 passed" in failed.stdout, failed.stdout[-2000:]
    refused = subprocess.run(build, env=env, capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    said = refused.stderr.strip()
    assert "\n" not in said and said.startswith("error: the fitted model: refusing to load untrusted types")
    line = re.search(r"trust them under \[artifact\] in (\S+): (trusted_types = \[.*\])$", said)
    assert line is not None and line[1] == str(folder / "project.toml"), said
    assert json.loads(line[2].split(" = ")[1]) == sorted({"numpy.dtype", *TREE_TYPES})
    assert line[2] in failed.stdout  # the project's test says the same line

    spec = folder / "project.toml"
    spec.write_text(re.sub(r"^trusted_types = .*$", line[2], spec.read_text(), flags=re.M))
    passed = subprocess.run(own_test, capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert passed.returncode == 0 and "3 passed" in passed.stdout, passed.stdout[-2000:]
    built = subprocess.run(build, env=env, capture_output=True, text=True, timeout=300)
    assert built.returncode == 0, built.stderr
    assert (
        "fitted: fitted on the seed's 1200 rows, saved and loaded back as every stage loads it"
        in built.stdout
    )


def test_a_home_belongs_to_one_project_and_refuses_another_naming_both(tmp_path, monkeypatch):
    """One exported MLOPS_HOME and a switched MLOPS_MODEL_PROJECT: every command that reads or
    writes the home, and the code location, refuse the second project, naming both and the fix;
    nothing of it is written there."""
    import subprocess
    import sys

    from mlops_assets.definitions import build_definitions
    from mlops_assets.settings import HomeOfAnotherProject, get_settings
    from mlops_assets_tests.conftest import subprocess_env

    home = tmp_path / "shared-home"
    cli = str(Path(sys.executable).parent / "mlops-assets")
    env = subprocess_env(home)
    first = subprocess.run([cli, "seed"], env=env, capture_output=True, text=True, timeout=120)
    assert first.returncode == 0, first.stderr
    env["MLOPS_MODEL_PROJECT"] = str(MODELS_DIR / "churn")
    for command in (["seed"], ["versions"], ["deployments"], ["promote", "1"], ["demo"]):
        refused = subprocess.run([cli, *command], env=env, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, (command, refused.stderr)
        assert refused.stderr.startswith(
            f"error: {home} belongs to model project diabetes ({MODELS_DIR / 'diabetes'}), and "
            f"MLOPS_MODEL_PROJECT names churn ({MODELS_DIR / 'churn'})"
        ), refused.stderr
        assert "unset MLOPS_HOME" in refused.stderr
    assert sorted(p.name for p in (home / "storage" / "landing").iterdir()) == ["diabetes-part-1.csv"]

    monkeypatch.setenv("MLOPS_HOME", str(home))
    monkeypatch.setenv("MLOPS_MODEL_PROJECT", str(MODELS_DIR / "churn"))
    get_settings.cache_clear()
    try:
        with pytest.raises(HomeOfAnotherProject, match="belongs to model project diabetes"):
            build_definitions(get_settings())
    finally:
        get_settings.cache_clear()


@pytest.fixture
def binary_project_settings(tmp_path, monkeypatch):
    """Settings of a fresh home for a binary project made by `mlops-assets init`, and its folder."""
    from mlops_assets.ops.scaffold import scaffold
    from mlops_assets.settings import get_settings

    folder = tmp_path / "made_by_init"
    scaffold(folder, "binary")
    monkeypatch.setenv("MLOPS_MODEL_PROJECT", str(folder))
    monkeypatch.setenv("MLOPS_HOME", str(tmp_path / "mlops"))
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "mlops" / "dagster"))
    monkeypatch.setenv("MLOPS_LANDING_SETTLE_SECONDS", "0")
    get_settings.cache_clear()
    yield get_settings(), folder
    get_settings.cache_clear()


def test_a_classifier_s_data_with_one_class_is_refused_as_a_data_rule_naming_the_column(
    binary_project_settings,
):
    """Every batch may hold one class; the training data as a whole may not (a binary model
    cannot learn, nor be judged, from one): training_data refuses it, naming the target column,
    before train.py runs (it had crashed with an IndexError in the metrics)."""
    import dagster as dg

    from mlops_assets.core.instance import write_instance_config
    from mlops_assets.definitions import build_definitions
    from mlops_assets.ops.runner import ingest_new_files, retrain
    from mlops_assets.storage.fsstore import Storage

    settings, folder = binary_project_settings
    defs = build_definitions(settings)
    storage = Storage(settings.storage_root)
    write_instance_config(settings.dagster_home)
    rows = load_project(folder).seed_frame().head(400).assign(converted=False)
    storage.write_bytes("landing/no-conversions.csv", rows.to_csv(index=False).encode())
    with dg.DagsterInstance.get() as instance:
        (landed,) = ingest_new_files(defs, instance, storage, settings.lock_dir)
        assert landed.success and landed.rows == 400
        outcome = retrain(defs, instance, settings.lock_dir)
    assert not outcome.success and outcome.candidate is None
    assert outcome.errors == [
        "target column converted: one class (false) in the training data (400 rows); a binary model "
        "learns from at least two, so the data lacks the other labels (or the file writes them in a "
        "way the spec does not read); batches: no-conversions.csv"
    ]


def _seeded(settings):
    """The definitions of ``settings`` and their storage, seeded with the project's first file."""
    from mlops_assets.core.instance import write_instance_config
    from mlops_assets.definitions import build_definitions
    from mlops_assets.ingest.seed import seed
    from mlops_assets.storage.fsstore import Storage

    defs = build_definitions(settings)
    storage = Storage(settings.storage_root)
    seed(storage, defs.resources["project"].get())
    write_instance_config(settings.dagster_home)
    return defs, storage


@pytest.mark.slow
def test_a_spec_only_edit_reaches_qa_on_the_process_runtime_with_its_own_rules(project_settings_copy):
    """project.toml alone edited (a parameter and a feature's range): the new version trains, passes
    the gate, and QA and production (processes) serve its rules; the model's code never changed."""
    import dagster as dg
    import httpx

    from mlops_assets.ops.runner import ingest_new_files, release, retrain
    from mlops_assets.serving.keys import read_keys

    settings, folder = project_settings_copy
    defs, storage = _seeded(settings)
    with dg.DagsterInstance.get() as instance:
        ingest_new_files(defs, instance, storage, settings.lock_dir)
        assert retrain(defs, instance, settings.lock_dir).registered["version"] == 1
        spec = (folder / "project.toml").read_text()
        age = spec.index("[features.age]")
        edited = spec[:age] + spec[age:].replace("max = 120", "max = 100", 1)
        (folder / "project.toml").write_text(edited.replace("alpha = 0.5", "alpha = 5.0"))
        second = retrain(defs, instance, settings.lock_dir)
        assert second.registered["version"] == 2, second.evaluation["reason"]
        assert second.candidate["model_code_digest"] == defs.resources["project"].get().code_digest

        released = release(defs, instance, settings.lock_dir, 2)
        assert released.success and released.qa_passed and released.prod_passed, released.errors
        url, key = released.production["url"], {"Authorization": f"Bearer {read_keys(settings.keys_file)[0]}"}
        row = {k: float(v) for k, v in diabetes_frame().iloc[0][list(FEATURES)].items()}
        scored = httpx.post(f"{url}/score", json={"data": [{**row, "age": 60.0}]}, headers=key)
        assert scored.status_code == 200 and scored.headers["x-model-version"] == "2", scored.text
        refused = httpx.post(f"{url}/score", json={"data": [{**row, "age": 110.0}]}, headers=key)
        assert refused.status_code == 422 and "feature age" in refused.json()["error"], refused.text


@pytest.mark.slow
def test_a_spec_that_gains_a_column_trains_on_the_batches_that_have_it(project_settings_copy):
    """A batch validated before the spec listed a column is left out of training with the reason
    (it has no values for it), and the batches that have it train the next version."""
    import dagster as dg
    import numpy as np
    import pandas as pd

    from mlops_assets.ingest.seed import SeedFiles
    from mlops_assets.ops.runner import ingest_new_files, retrain

    settings, folder = project_settings_copy
    defs, storage = _seeded(settings)
    with dg.DagsterInstance.get() as instance:
        (first,) = ingest_new_files(defs, instance, storage, settings.lock_dir)
        assert first.success and retrain(defs, instance, settings.lock_dir).registered["version"] == 1

        spec = (folder / "project.toml").read_text()
        glucose = '[features.glucose]\nkind = "numeric"\nunit = "mg/dL"\nmin = 20\nmax = 600\n\n'
        (folder / "project.toml").write_text(spec.replace("[evaluation]", glucose + "[evaluation]"))
        files = SeedFiles.of(defs.resources["project"].get())
        held_back = pd.read_csv(storage.uri(files.held_back))
        held_back.insert(len(held_back.columns) - 1, "glucose", np.linspace(70, 200, len(held_back)).round(1))
        storage.write_bytes(files.held_back_landing, held_back.to_csv(index=False).encode())
        (second,) = ingest_new_files(defs, instance, storage, settings.lock_dir)
        assert second.success, second.failed_checks + second.errors

        retrained = retrain(defs, instance, settings.lock_dir)
        assert retrained.success, retrained.errors
        name = files.first.removeprefix("landing/")
        assert retrained.training_data["batches"] == [files.held_back_landing.removeprefix("landing/")]
        assert retrained.training_data["left_out"] == [
            f"{name}: lacks glucose (validated before the spec listed it; land it again with it)"
        ]
        assert retrained.training_data["rows"] == len(held_back)
        assert retrained.registered["version"] == 2


@pytest.mark.parametrize(
    ("folder", "name", "says"),
    [
        ("ok", 'x"""; import os; os.system("touch pwned"); """', "letters, digits and underscores only"),
        ("ok", "churn\n", "letters, digits and underscores only"),
        ('bad"""; open("pwned", "w"); """', None, "a folder name may not hold"),
        ("back\\slash", None, "a folder name may not hold"),
    ],
)
def test_init_refuses_a_name_or_folder_that_would_become_code(tmp_path, folder, name, says):
    """A name lands in project.toml and the folder in test_project.py's docstring: a `\"\"\"` there
    once ran code under pytest. Both are checked before anything is written."""
    from mlops_assets.ops.scaffold import scaffold

    with pytest.raises(ValueError, match=says):
        scaffold(tmp_path / folder, "binary", name)
    assert not (tmp_path / folder).exists() and not list(tmp_path.rglob("pwned"))


def test_what_the_ui_shows_as_markdown_is_escaped():
    """Feature names (a team's spec) and values (a landed file) reach markdown metadata: a `|` must
    not split a table row, nor `[x](url)` become a live link."""
    import pandas as pd

    from mlops_assets.core import markdown

    frame = pd.DataFrame({"bmi|age": ["a|b"], "[click](http://evil.example)": ["<img src=x>"]})
    lines = markdown.table(frame).splitlines()
    unescaped_bars = [len(re.findall(r"(?<!\\)\|", line)) for line in lines]
    assert len(set(unescaped_bars)) == 1 and unescaped_bars[0] == 3  # two columns on every line
    shown = markdown.table(frame)
    assert not re.search(r"(?<!\\)\]\(|(?<!\\)<img", shown), shown  # no live link, no live tag
