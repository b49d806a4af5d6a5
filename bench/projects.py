"""The model projects the scoring benchmarks serve: each fitted as the trainer fits it, with its
requests, and compiled as registration compiles it (its graph beside the artifact, or the reason
it was not). A project with a library of its own (parcels: LightGBM) gets its locked environment,
made once under bench/.venvs/environments, and its packages importable here after ours."""

import json
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PROJECTS = ("diabetes", "churn", "parcels", "forest", "hgb")
ENVIRONMENTS = Path(__file__).resolve().parent / ".venvs" / "environments"


@dataclass
class BenchProject:
    """A model project as the benchmark serves it: its fitted model and the requests sent."""

    project: Any  # mlops_assets.project.loader.ModelProject
    model: Any
    payloads: dict[int, list]  # rows per request -> the rows, as a client sends them
    holdout: Any  # the rows registration checks the graph on
    compiled: bool = False  # set by write_release: the service answers with a graph
    library_path: str = ""  # the project environment's packages (its own library), if any

    @property
    def name(self) -> str:
        return self.project.spec.name

    @property
    def classifier(self) -> bool:
        return hasattr(self.model, "predict_proba")

    def expected(self, rows: list) -> np.ndarray:
        """What a server must answer for ``rows``: predictions, or a classifier's probabilities."""
        from mlops_assets.project.fitting import as_model_input
        from mlops_assets_tests.projects import typed_rows

        typed = as_model_input(typed_rows(self.project, rows), self.project.spec.native_categories)
        return self.model.predict_proba(typed) if self.classifier else self.model.predict(typed)

    def write_release(self, folder: Path) -> dict:
        """The release folder registration writes: artifact, manifest with its smoke rows, and the
        compiled graph where the model compiled. Returns the manifest's ``compiled`` block."""
        from mlops_assets.model.compiled import COMPILED_NAME
        from mlops_assets.model.compiling import compile_model
        from mlops_assets.model.rows import ServingSpec
        from mlops_assets.model.smoke import smoke_block
        from mlops_assets.project.fitting import as_model_input
        from mlops_assets_tests.projects import write_project_release

        _, manifest = write_project_release(folder, self.project, self.model)
        spec = ServingSpec.from_dict(self.project.spec.serving_dict())
        graph, block = compile_model(self.model, spec, self.holdout)
        native = as_model_input(self.holdout, self.project.spec.native_categories)
        manifest["smoke"] = smoke_block(self.model, native, list(spec.names))
        self.compiled = graph is not None
        if graph is not None:
            (folder / COMPILED_NAME).write_bytes(graph)
            block = block | {"file": COMPILED_NAME}
        manifest["compiled"] = block
        (folder / "manifest.json").write_text(json.dumps(manifest))
        return block


def _init_project(library: str) -> Any:
    """What `mlops-assets init --task binary --library <library>` writes, loaded."""
    from mlops_assets.ops.scaffold import scaffold
    from mlops_assets.project.loader import load_project

    folder = Path(tempfile.mkdtemp(prefix=f"mlops-bench-{library}-")) / library
    scaffold(folder, "binary", library=library)
    return load_project(folder)


def library_path(folder: Path, index: str) -> str:
    """A folder holding only what the project's lock adds to ours (its own library: links into
    its environment, made from the lock if not there yet), put on this process's path; "" if the
    project has no lock. Given as PYTHONPATH to a server, it shadows none of our packages."""
    import importlib.util

    from mlops_assets.project.environment import LOCK_FILE, lock_imports, read_lock
    from mlops_assets.runner.environments import environment_python, site_packages

    if not (folder / LOCK_FILE).is_file():
        return ""
    python = environment_python(read_lock(folder / LOCK_FILE), ENVIRONMENTS, index)
    purelib = site_packages(python)
    own = python.parents[1].with_name(python.parents[1].name + "-own")
    own.mkdir(exist_ok=True)
    for module in sorted(lock_imports(folder)):
        if importlib.util.find_spec(module) is None and not (own / module).exists():
            (own / module).symlink_to(purelib / module)
    if str(own) not in sys.path:
        sys.path.append(str(own))
    return str(own)


def bench_projects(names: list[str]) -> list[BenchProject]:
    """diabetes: rows as arrays (Azure ML's contract); churn: rows by name, every feature kind;
    parcels: LightGBM on native categories, fitted by its own train(); forest and hgb: init's
    random forest and histogram gradient boosting over churn's kinds of feature, rows by name."""
    from mlops_assets.ops.demo import client_rows
    from mlops_assets.project.fitting import as_model_input, fit
    from mlops_assets.project.loader import load_project
    from mlops_assets.settings import get_settings
    from mlops_assets_tests.projects import CHURN, DIABETES, MODELS_DIR, split_seed, typed_seed

    rng = np.random.default_rng(0)
    projects = []
    for name in names:
        if name not in PROJECTS:
            raise SystemExit(f"unknown project {name!r}; one of {', '.join(PROJECTS)}")
        if name in ("forest", "hgb"):
            project = _init_project(name)
        else:
            project = {"diabetes": DIABETES, "churn": CHURN}.get(name) or load_project(MODELS_DIR / name)
        packages = library_path(project.folder, get_settings().package_index)
        spec = project.spec
        seed = typed_seed(project)
        train, holdout = split_seed(seed)
        features = list(spec.feature_names)
        model = fit(
            project.folder,
            as_model_input(train, spec.native_categories),
            features,
            spec.target.name,
            dict(spec.params),
        )
        if name == "diabetes":
            pool = seed[features].to_numpy().tolist()
        else:
            pool = client_rows(project, project.seed_frame())
        payloads = {n: [pool[i] for i in rng.choice(len(pool), n)] for n in (1, 100)}
        projects.append(BenchProject(project, model, payloads, holdout[features], library_path=packages))
    return projects
