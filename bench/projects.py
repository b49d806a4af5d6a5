"""The model projects the scoring benchmarks serve: each fitted as the trainer fits it, with its
requests, and compiled as registration compiles it (its graph beside the artifact, or the reason
it was not)."""

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

PROJECTS = ("diabetes", "churn", "forest")


@dataclass
class BenchProject:
    """A model project as the benchmark serves it: its fitted model and the requests sent."""

    project: Any  # mlops_assets.project.loader.ModelProject
    model: Any
    payloads: dict[int, list]  # rows per request -> the rows, as a client sends them
    holdout: Any  # the rows registration checks the graph on
    compiled: bool = False  # set by write_release: the service answers with a graph

    @property
    def name(self) -> str:
        return self.project.spec.name

    @property
    def classifier(self) -> bool:
        return hasattr(self.model, "predict_proba")

    def expected(self, rows: list) -> np.ndarray:
        """What a server must answer for ``rows``: predictions, or a classifier's probabilities."""
        from mlops_assets_tests.projects import typed_rows

        typed = typed_rows(self.project, rows)
        return self.model.predict_proba(typed) if self.classifier else self.model.predict(typed)

    def write_release(self, folder: Path) -> dict:
        """The release folder registration writes: artifact, manifest with its smoke rows, and the
        compiled graph where the model compiled. Returns the manifest's ``compiled`` block."""
        from mlops_assets.model.compiled import COMPILED_NAME
        from mlops_assets.model.compiling import compile_model
        from mlops_assets.model.rows import ServingSpec
        from mlops_assets.model.smoke import smoke_block
        from mlops_assets_tests.projects import write_project_release

        _, manifest = write_project_release(folder, self.project, self.model)
        spec = ServingSpec.from_dict(self.project.spec.serving_dict())
        graph, block = compile_model(self.model, spec, self.holdout)
        manifest["smoke"] = smoke_block(self.model, self.holdout, list(spec.names))
        self.compiled = graph is not None
        if graph is not None:
            (folder / COMPILED_NAME).write_bytes(graph)
            block = block | {"file": COMPILED_NAME}
        manifest["compiled"] = block
        (folder / "manifest.json").write_text(json.dumps(manifest))
        return block


def _forest_project() -> Any:
    """What `mlops-assets init --task binary --library forest` writes, loaded."""
    from mlops_assets.ops.scaffold import scaffold
    from mlops_assets.project.loader import load_project

    folder = Path(tempfile.mkdtemp(prefix="mlops-bench-forest-")) / "forest"
    scaffold(folder, "binary", library="forest")
    return load_project(folder)


def bench_projects(names: list[str]) -> list[BenchProject]:
    """diabetes: rows as arrays (Azure ML's contract); churn: rows by name, every feature kind;
    forest: init's random forest over the same kinds, rows by name."""
    from mlops_assets.ops.demo import client_rows
    from mlops_assets_tests.projects import CHURN, DIABETES, fit_project, split_seed, typed_seed

    rng = np.random.default_rng(0)
    projects = []
    for name in names:
        if name not in PROJECTS:
            raise SystemExit(f"unknown project {name!r}; one of {', '.join(PROJECTS)}")
        project = {"diabetes": DIABETES, "churn": CHURN}.get(name) or _forest_project()
        seed = typed_seed(project)
        train, holdout = split_seed(seed)
        model = fit_project(project, train)
        if name == "diabetes":
            pool = seed[list(DIABETES.spec.feature_names)].to_numpy().tolist()
        else:
            pool = client_rows(project, project.seed_frame())
        payloads = {n: [pool[i] for i in rng.choice(len(pool), n)] for n in (1, 100)}
        projects.append(BenchProject(project, model, payloads, holdout[list(project.spec.feature_names)]))
    return projects
