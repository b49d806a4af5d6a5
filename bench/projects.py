"""The model projects the scoring benchmarks serve: each fitted as the trainer fits it, with its requests."""

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class BenchProject:
    """A model project as the benchmark serves it: its fitted model and the requests sent."""

    project: Any  # mlops_assets.project.loader.ModelProject
    model: Any
    payloads: dict[int, list]  # rows per request -> the rows, as a client sends them

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


def bench_projects(names: list[str]) -> list[BenchProject]:
    """diabetes: rows as arrays (Azure ML's contract); churn: rows by name, every feature kind."""
    from mlops_assets.ops.demo import client_rows
    from mlops_assets_tests.projects import CHURN, DIABETES, fit_project, split_seed, typed_seed

    rng = np.random.default_rng(0)
    projects = []
    for name in names:
        project = {"diabetes": DIABETES, "churn": CHURN}[name]
        if name == "diabetes":
            model = fit_project(DIABETES, split_seed(typed_seed(DIABETES))[0])
            pool = typed_seed(DIABETES)[list(DIABETES.spec.feature_names)].to_numpy().tolist()
        else:
            model = fit_project(CHURN, typed_seed(CHURN))
            pool = client_rows(CHURN, CHURN.seed_frame())
        payloads = {n: [pool[i] for i in rng.choice(len(pool), n)] for n in (1, 100)}
        projects.append(BenchProject(project, model, payloads))
    return projects
