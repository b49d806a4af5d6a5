"""A project's own packages: `[environment] requirements` locked with the platform's pins as
constraints, checked at load; each bad input refused before any run, naming file, requirement
and fix. The index is a folder of wheels made here: nothing leaves this machine."""

import subprocess
import sys
from pathlib import Path

import pytest

from mlops_assets.hosting.engines import Engine
from mlops_assets.hosting.image_holds import let_go
from mlops_assets.hosting.processes import LocalTarget
from mlops_assets.ops.scaffold import scaffold
from mlops_assets.project.environment import LOCK_FILE, LockError, check_lock, platform_pins, read_lock
from mlops_assets.project.loader import load_project
from mlops_assets.project.spec import ProjectError
from mlops_assets_tests.conftest import subprocess_env
from mlops_assets_tests.serving_support import free_port
from mlops_assets_tests.wheels import make_wheel

CLI = str(Path(sys.executable).parent / "mlops-assets")


@pytest.fixture
def index(tmp_path) -> Path:
    folder = tmp_path / "wheels"
    folder.mkdir()
    make_wheel(folder, "tinylib", "1.0")
    make_wheel(folder, "tinylib", "1.1")
    return folder


@pytest.fixture
def project(tmp_path) -> Path:
    folder = tmp_path / "with_env"
    scaffold(folder, "binary")
    return folder


def require(folder: Path, *requirements: str) -> None:
    spec = folder / "project.toml"
    listed = ", ".join(f'"{r}"' for r in requirements)
    text = spec.read_text().split("\n[environment]")[0]
    spec.write_text(f"{text}\n[environment]\nrequirements = [{listed}]\n")


def cli(folder: Path, index: Path, *args: str) -> subprocess.CompletedProcess:
    env = subprocess_env(folder.parent / "home") | {
        "MLOPS_MODEL_PROJECT": str(folder),
        "MLOPS_PACKAGE_INDEX": str(index),
    }
    return subprocess.run([CLI, *args], env=env, capture_output=True, text=True, timeout=120)


def test_a_locked_project_loads_and_shows_its_pins_with_hashes(project, index):
    require(project, "tinylib>=1,<1.1")
    with pytest.raises(
        ProjectError, match=r"environment.requirements has no lock .* run: MLOPS_MODEL_PROJECT=.* lock"
    ):
        load_project(project)
    locked = cli(project, index, "lock")
    assert locked.returncode == 0, locked.stderr
    assert locked.stdout.startswith(f"locked {project / LOCK_FILE} (") and "tinylib==1.0" in locked.stdout
    lock = read_lock(project / LOCK_FILE)
    assert lock.pins == {"tinylib": "1.0"} and "--hash=sha256:" in lock.body
    load_project(project)  # current: loads
    shown = cli(project, index, "project")
    assert shown.returncode == 0, shown.stderr
    assert f"environment: tinylib>=1,<1.1; locked {lock.digest}: tinylib==1.0" in shown.stdout


def test_a_new_lock_is_a_new_project_for_a_long_lived_process(project, tmp_path):
    """The cached project (the code location's) is read again when only its lock changes (an
    upgrade: the same requirements locked again once the index has a newer version): the lock is
    part of the package, so of the code digest a candidate's fingerprint covers."""
    from mlops_assets.project.loader import current_project

    upgrading = tmp_path / "upgrading"
    upgrading.mkdir()
    make_wheel(upgrading, "tinylib", "1.0")
    require(project, "tinylib")
    assert cli(project, upgrading, "lock").returncode == 0
    spec = (project / "project.toml").read_bytes()
    before = current_project(project).code_digest
    make_wheel(upgrading, "tinylib", "1.1")
    assert cli(project, upgrading, "lock").returncode == 0
    assert (project / "project.toml").read_bytes() == spec and read_lock(project / LOCK_FILE).pins == {
        "tinylib": "1.1"
    }
    assert current_project(project).code_digest == load_project(project).code_digest != before


def test_a_project_without_requirements_has_no_lock_and_changes_nothing(project):
    assert check_lock(project, ()) is None
    assert load_project(project).spec.environment.requirements == ()
    assert not (project / LOCK_FILE).exists()


def test_a_stale_or_hand_edited_lock_fails_at_load_naming_the_command(project, index):
    require(project, "tinylib")
    assert cli(project, index, "lock").returncode == 0
    require(project, "tinylib>=1.1")
    with pytest.raises(ProjectError, match=r"made for other requirements .* run: .*mlops-assets lock"):
        load_project(project)
    assert cli(project, index, "lock").returncode == 0
    assert read_lock(project / LOCK_FILE).pins == {"tinylib": "1.1"}

    lock = project / LOCK_FILE
    lock.write_text(lock.read_text().replace("--hash=sha256:", "--hash=sha256:0"))
    with pytest.raises(ProjectError, match=r"requirements.lock: edited since `mlops-assets lock` wrote it"):
        load_project(project)


def test_a_lock_whose_shared_package_the_platform_moved_is_stale(project, index, tmp_path):
    require(project, "tinylib")
    assert cli(project, index, "lock").returncode == 0
    platform = tmp_path / "uv.lock"
    platform.write_text('version = 1\n[[package]]\nname = "TinyLib"\nversion = "2.0"\n')
    assert platform_pins(platform) == {"tinylib": {"2.0"}}
    with pytest.raises(
        LockError,
        match=r"the platform's pins moved since it was made: tinylib==1.1 \(the platform pins 2.0\)",
    ):
        check_lock(project, ("tinylib",), platform)


@pytest.mark.parametrize(
    ("requirement", "says"),
    [
        ("numpy<2", "you require numpy<2 and numpy"),  # against the platform's pin
        ("nosuchpackage", "nosuchpackage was not found"),
        ("tinylib>=5", "tinylib>=5"),
    ],
)
def test_a_requirement_that_does_not_resolve_is_refused_and_the_old_lock_stays(
    project, index, requirement, says
):
    require(project, "tinylib")
    assert cli(project, index, "lock").returncode == 0
    before = (project / LOCK_FILE).read_text()
    require(project, requirement)
    refused = cli(project, index, "lock")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
    said = refused.stderr
    assert said.startswith(
        f"error: {project / 'project.toml'}: environment.requirements ['{requirement}'] do not resolve"
    )
    assert says in said and "change the requirement" in said, said
    assert (project / LOCK_FILE).read_text() == before


@pytest.mark.parametrize("requirement", ["tinylib @ https://example.com/t.whl", "-e .", "--index-url=x"])
def test_a_requirement_that_is_not_a_package_of_the_index_fails_at_load(project, requirement):
    require(project, requirement)
    with pytest.raises(ProjectError, match=r"environment.requirements: .*no URL, path or option"):
        load_project(project)


def test_a_module_importing_a_package_the_lock_does_not_hold_is_refused_naming_the_fix(project, index):
    (project / "model.py").write_text("import tinylib\n\n" + (project / "model.py").read_text())
    with pytest.raises(
        ProjectError,
        match=r"model.py:1: imports 'tinylib'.*add the package there, then run mlops-assets lock",
    ):
        load_project(project)
    require(project, "tinylib")
    assert cli(project, index, "lock").returncode == 0
    assert "requirements.lock" in load_project(project).files  # a version carries its lock


TRACE = '''
import sys
from pathlib import Path


def trace(who: str) -> None:
    """Which interpreter ran the project's code, and what tinylib it saw."""
    import tinylib

    with open(Path(__file__).parent / "trace.txt", "a") as log:
        log.write(f"{who} {sys.executable} {tinylib.VERSION}\\n")
'''


@pytest.mark.parametrize("runtime", ["process", pytest.param("container", marks=pytest.mark.slow)])
def test_the_project_s_code_runs_in_its_own_environment_made_once_and_the_platform_s_is_untouched(
    project, index, tmp_path, monkeypatch, runtime
):
    """Trained (train.py) and seeded (the runner) by the environment's interpreter, made once under
    MLOPS_HOME/environments; the platform's own environment never gets the package; the version
    carries its lock into its build context, and the process runtime's venv installs it."""
    import dagster as dg

    from mlops_assets.core.instance import write_instance_config
    from mlops_assets.definitions import build_definitions
    from mlops_assets.ingest.seed import seed
    from mlops_assets.ops.runner import ingest_new_files, release, retrain
    from mlops_assets.settings import get_settings
    from mlops_assets.storage.fsstore import Storage

    (project / "tracing.py").write_text(TRACE)
    for module, who in (("model.py", "train"), ("seed.py", "seed")):
        path = project / module
        text = path.read_text().replace("\ndef ", "\nfrom .tracing import trace\n\n\ndef ", 1)
        call = (
            "def build_model(params: dict) -> Pipeline:\n"
            if module == "model.py"
            else "def seed_frame() -> pd.DataFrame:\n"
        )
        path.write_text(text.replace(call, f"{call}    trace({who!r})\n"))
    require(project, "tinylib==1.1")
    assert cli(project, index, "lock").returncode == 0
    home = tmp_path / "mlops"
    for name, value in {
        "MLOPS_MODEL_PROJECT": str(project),
        "MLOPS_HOME": str(home),
        "DAGSTER_HOME": str(home / "dagster"),
        "MLOPS_PACKAGE_INDEX": str(index),
        "MLOPS_LANDING_SETTLE_SECONDS": "0",
        "MLOPS_IMAGE_ENGINES": "podman" if runtime == "container" else "",
        "MLOPS_LOCAL_RUNTIME": runtime,
        "MLOPS_QA_PORT": str(free_port()),
        "MLOPS_PRODUCTION_PORT": str(free_port()),
    }.items():
        monkeypatch.setenv(name, value)
    get_settings.cache_clear()
    settings = get_settings()
    try:
        defs = build_definitions(settings)
        storage = Storage(settings.storage_root)
        write_instance_config(settings.dagster_home)
        python = defs.resources["project"].python(load_project(project))
        seed(storage, load_project(project), python)
        with dg.DagsterInstance.get() as instance:
            (landed,) = ingest_new_files(defs, instance, storage, settings.lock_dir)
            assert landed.success
            trained = retrain(defs, instance, settings.lock_dir)
            assert trained.success and trained.registered["version"] == 1, trained.errors
            tags = defs.resources["registry"].get_registry().get_version(1).tags
            lock = read_lock(project / LOCK_FILE)
            assert (tags["environment_lock"], tags["environment_pins"]) == (lock.digest, "tinylib==1.1")
            released = release(defs, instance, settings.lock_dir, 1)
        asked = ["-c", "import tinylib; print(tinylib.VERSION)"]
        if runtime == "process":
            (venv,) = (home / "release" / "venvs").iterdir()
            shown = subprocess.run([str(venv / "bin" / "python"), *asked], capture_output=True, text=True)
        elif released.success:  # the image's own layer installed it
            image = released.production["image"]
            shown = Engine("podman").run("run", "--rm", "--entrypoint", "python", image, *asked, timeout=120)
    finally:
        get_settings.cache_clear()
        for deployment in LocalTarget(home).list():
            LocalTarget(home).stop(deployment.name)
        if runtime == "container":
            let_go(Engine("podman"), home.resolve(), keep=set())
    (environment,) = [p for p in (home / "environments").iterdir() if not p.name.startswith(".")]
    assert python == str(environment / "bin" / "python")
    ran = {tuple(line.split()) for line in (project / "trace.txt").read_text().splitlines()}
    assert ran == {("seed", python, "1.1"), ("train", python, "1.1")}
    assert subprocess.run([sys.executable, "-c", "import tinylib"], capture_output=True).returncode == 1
    assert released.success and released.qa_passed and released.prod_passed, released.errors
    context = Path(released.production["context"])
    assert (context / "project-requirements" / "requirements.lock").read_text() == (
        project / LOCK_FILE
    ).read_text()
    assert sorted(p.name for p in (context / "project-requirements" / "wheels").iterdir()) == [
        "tinylib-1.1-py3-none-any.whl"  # the locked one of the folder index, not 1.0
    ]
    assert "COPY project-requirements/ /app/project-requirements/" in (context / "Dockerfile").read_text()
    assert shown.stdout.strip() == "1.1", shown.stderr


def test_a_context_gets_the_project_layer_only_for_a_version_that_locks_packages(tmp_path, index):
    """A project without a lock ships exactly the context it did (the Dockerfile as it is, no
    project-requirements/); one with a lock gets its own layer, the lock and, from a folder index,
    the locked wheels (an image build cannot reach this machine's folders)."""
    from mlops_assets.release.build_context import DOCKERFILE, assemble

    plain, _ = assemble(tmp_path / "plain", "model.skops", b"artifact", {"version": 1}, b"numpy==2\n")
    assert (plain.path / "Dockerfile").read_bytes() == DOCKERFILE.read_bytes()
    assert not (plain.path / "project-requirements").exists()

    lock_text = "# a lock\ntinylib==1.0 \\\n    --hash=sha256:00\n"
    package = {"model.py": "", "requirements.lock": lock_text}
    locked, _ = assemble(
        tmp_path / "locked", "model.skops", b"artifact", {"version": 1}, b"numpy==2\n", package=package,
        package_index=str(index),
    )  # fmt: skip
    own = locked.path / "project-requirements"
    assert (own / "requirements.lock").read_text() == lock_text
    assert [p.name for p in (own / "wheels").iterdir()] == ["tinylib-1.0-py3-none-any.whl"]
    dockerfile = (locked.path / "Dockerfile").read_text()
    assert dockerfile.index("COPY project-requirements/") < dockerfile.index("COPY project/ /app/project/")
    assert dockerfile.index("COPY requirements-azure.txt") < dockerfile.index("COPY project-requirements/")
    linted = subprocess.run(
        [str(Path(sys.executable).parent / "hadolint"), str(locked.path / "Dockerfile")],
        capture_output=True,
        text=True,
    )
    assert linted.returncode == 0, linted.stdout

    by_url, _ = assemble(
        tmp_path / "url", "model.skops", b"artifact", {"version": 1}, b"numpy==2\n", package=package,
        package_index="https://packages.example/simple",
    )  # fmt: skip
    assert (
        by_url.path / "project-requirements" / "index-url"
    ).read_text() == "https://packages.example/simple"
    assert not (by_url.path / "project-requirements" / "wheels").exists()


def test_a_context_leaves_out_the_wheels_the_platform_installs_and_names_the_debian_packages(tmp_path, index):
    """From a folder index, a locked package the serving requirements pin at the same version
    (numpy, scipy: the platform's) is installed by the layer above and stays out of the context;
    a spec's system_packages go into the context for the image's apt layer."""
    from mlops_assets.release.build_context import assemble

    make_wheel(index, "numpy", "2")
    lock_text = "tinylib==1.0 \\\n    --hash=sha256:00\nnumpy==2 \\\n    --hash=sha256:11\n"
    serving_spec = {"name": "x", "features": [], "system_packages": ["libgomp1"]}
    context, _ = assemble(
        tmp_path / "ctx", "model.skops", b"artifact", {"version": 1}, b"numpy==2 ; python_full_version < '3.12'\n",
        serving_spec=serving_spec, package={"requirements.lock": lock_text}, package_index=str(index),
    )  # fmt: skip
    own = context.path / "project-requirements"
    assert [p.name for p in (own / "wheels").iterdir()] == ["tinylib-1.0-py3-none-any.whl"]
    assert (own / "debian-packages").read_text() == "libgomp1\n"


def test_a_locked_project_s_aml_jobs_run_in_an_environment_registered_under_its_digest(
    project, index, tmp_path
):
    """AML's training and batch jobs of a project that locks packages run in an AML Environment of
    its own: train.yml plus the lock's pins, registered once under the digest of what it installs,
    the job referring to it by id; a project without a lock keeps train.yml's inline environment."""
    from types import SimpleNamespace

    import dagster as dg
    import yaml

    from mlops_assets.azure.jobs import TRAIN_ENVIRONMENT, AzureMLJobs
    from mlops_assets.core.storage import StorageResource
    from mlops_assets_tests.cloud_recorders import LocalAmlWorkspace

    require(project, "tinylib<1.1")
    assert cli(project, index, "lock").returncode == 0
    lock_text = (project / LOCK_FILE).read_text()
    workspace = LocalAmlWorkspace(tmp_path / "aml", job_secrets={})

    class Jobs(AzureMLJobs):
        def ml_client(self):
            return workspace

    jobs = Jobs(
        subscription_id="sub",
        resource_group="rg",
        workspace="mlw",
        storage=StorageResource(root_url="file:///x"),
    )
    chosen = jobs.job_environment("with_env", lock_text)
    (registered,), _ = workspace.recorder.last("environments.create_or_update")
    assert chosen == f"azureml:mlops-assets-train-with_env:{registered['version']}"
    assert registered["name"] == "mlops-assets-train-with_env" and len(registered["version"]) == 16
    assert registered["image"] == jobs.environment_image
    pip = registered["conda_file"]["dependencies"][-1]["pip"]
    train = yaml.safe_load(TRAIN_ENVIRONMENT.read_text())["dependencies"][-1]["pip"]
    assert pip == [*train, "tinylib==1.0"]  # the platform's pins as train.yml has them, then the lock's

    # The same lock again (the next retrain, a batch job): found, not registered again.
    assert jobs.job_environment("with_env", lock_text) == chosen
    assert workspace.recorder.names().count("environments.create_or_update") == 1
    # Another lock is another environment.
    require(project, "tinylib>=1.1")
    assert cli(project, index, "lock").returncode == 0
    upgraded = jobs.job_environment("with_env", (project / LOCK_FILE).read_text())
    assert upgraded != chosen and workspace.recorder.names().count("environments.create_or_update") == 2

    context = SimpleNamespace(run_id="r" * 36, asset_key=dg.AssetKey("candidate_model"))
    job = jobs.command(context, tmp_path, "python train.py", "train", "https://acct", chosen)._to_dict()
    assert job["environment"] == chosen
    plain = jobs.command(context, tmp_path, "python train.py", "train", "https://acct")._to_dict()
    assert plain["environment"]["name"] == "mlops-assets-train" and "tinylib==1.0" not in str(plain)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("library", "task", "package"), [("xgboost", "binary", "xgboost"), ("lightgbm", "multiclass", "lightgbm")]
)
def test_init_on_a_library_locks_it_and_the_project_s_own_test_passes_in_its_environment(
    tmp_path, library, task, package
):
    """`init --library` writes a project on XGBoost (the xgboost-cpu wheel) or LightGBM, locks it
    from the index and passes its own test, run by `project --test` in the project's environment;
    the platform's environment never gets the library."""
    import importlib.util

    from mlops_assets_tests.wheels import WHEELHOUSE

    folder = tmp_path / f"on_{library}"
    made = subprocess.run(
        [CLI, "init", str(folder), "--task", task, "--library", library],
        env=subprocess_env(tmp_path / "home") | {"MLOPS_PACKAGE_INDEX": str(WHEELHOUSE)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert made.returncode == 0, made.stderr
    assert f"its lock:  {folder / LOCK_FILE} from {WHEELHOUSE}" in made.stdout
    assert f"MLOPS_MODEL_PROJECT={folder} .venv/bin/mlops-assets project --test" in made.stdout
    spec = load_project(folder).spec
    assert spec.native_categories and spec.environment.requirements[0].startswith(
        {"xgboost": "xgboost-cpu>=", "lightgbm": "lightgbm>="}[library]
    )
    tested = cli(folder, WHEELHOUSE, "project", "--test")
    assert tested.returncode == 0 and "3 passed" in tested.stdout, (
        tested.stdout[-3000:] + tested.stderr[-2000:]
    )
    assert importlib.util.find_spec(package) is None
    if library == "lightgbm":
        # A type the spec does not trust fails on the author's machine, naming the line to put back.
        spec_file = folder / "project.toml"
        trusting = spec_file.read_text()
        spec_file.write_text(trusting.replace('"lightgbm.basic.Booster", ', ""))
        refused = cli(folder, WHEELHOUSE, "project", "--build")
        assert refused.returncode == 2, refused.stderr
        assert "refusing to load untrusted types ['lightgbm.basic.Booster']" in refused.stderr
        assert '"lightgbm.basic.Booster"' in refused.stderr.rsplit("trusted_types = ", 1)[1]
        spec_file.write_text(trusting)
    ruff = [
        str(Path(sys.executable).parent / "ruff"),
        "--config",
        str(Path(__file__).parents[1] / "pyproject.toml"),
    ]
    for check in (["check"], ["format", "--check"]):
        linted = subprocess.run([ruff[0], *check, *ruff[1:], str(folder)], capture_output=True, text=True)
        assert linted.returncode == 0, linted.stdout + linted.stderr


def test_init_refuses_a_library_that_cannot_take_the_task_s_labels(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"--library xgboost --task multiclass: its classifier takes labels 0..n-1 only, not a target of "
        r"text labels; use --library sklearn or forest or hgb or lightgbm for a multiclass task",
    ):
        scaffold(tmp_path / "x", "multiclass", library="xgboost")
    with pytest.raises(
        ValueError, match=r"unknown library 'catboost'; one of sklearn, forest, hgb, lightgbm, xgboost"
    ):
        scaffold(tmp_path / "y", "binary", library="catboost")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_project_test_says_when_there_is_no_test_to_run(project, index):
    (project / "test_project.py").unlink()
    said = cli(project, index, "project", "--test")
    assert said.returncode == 2 and "no test_*.py to run" in said.stderr


@pytest.mark.parametrize("package", ["libgomp1; rm -rf /", "libgomp1=12.2", "--allow-unauthenticated", "Lib"])
def test_a_system_package_is_a_debian_name_and_nothing_else(project, package):
    spec = project / "project.toml"
    spec.write_text(spec.read_text() + f'\n[environment]\nsystem_packages = ["{package}"]\n')
    with pytest.raises(
        ProjectError, match=r"project.toml: environment.system_packages: .* a Debian package's name"
    ):
        load_project(project)
