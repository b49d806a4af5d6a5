"""How much the gate's metric moves between retrains of the same model on the same data: the
noise a project's ``min_improvement`` must stand above (init's defaults are set from this run).

Each task's project made by ``mlops-assets init`` is fitted 30 times on 90% subsamples of its
training rows and scored on the same holdout; printed: the primary metric's mean, its standard
deviation and the 95th percentile of the relative difference between two such retrains.

With ``--library lightgbm`` (or xgboost), the project init makes on that library: locked from
MLOPS_PACKAGE_INDEX, its environment made, and the library imported from there into this process
(after the platform's own packages, which the lock shares at the same versions).

Run: .venv/bin/python bench/gate_noise.py [--quick] [--library sklearn|forest|hgb|lightgbm|xgboost]
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np

from bench.projects import library_path
from mlops_assets.ops.lock import lock_project
from mlops_assets.ops.scaffold import LIBRARIES, scaffold
from mlops_assets.project.fitting import as_model_input
from mlops_assets.project.loader import load_project
from mlops_assets.project.metrics import TASKS, evaluate, task_metrics
from mlops_assets.training.train import holdout_mask
from mlops_assets_tests.projects import typed_seed

RETRAINS = 30


def import_from_its_environment(folder: Path) -> None:
    """The project locked, and its library importable here: its environment's packages after ours."""
    from mlops_assets.settings import get_settings

    index = get_settings().package_index
    lock_project(folder, load_project_spec_requirements(folder), index)
    library_path(folder, index)


def load_project_spec_requirements(folder: Path) -> tuple[str, ...]:
    from mlops_assets.project.spec import read_spec

    return read_spec(folder).environment.requirements


def spread(task: str, folder: Path, retrains: int, library: str = "sklearn") -> str:
    scaffold(folder, task, library=library)
    if LIBRARIES[library]["requirement"]:
        import_from_its_environment(folder)
    project = load_project(folder)
    spec = project.spec
    frame = as_model_input(typed_seed(project), spec.native_categories)
    features, target = list(spec.feature_names), spec.target.name
    held = holdout_mask(frame, list(spec.columns), spec.evaluation.holdout_percent)
    train, test = frame[~held], frame[held]
    metric = task_metrics(task)[spec.evaluation.primary_metric]
    values = []
    for seed in range(retrains):
        rows = train.sample(frac=0.9, random_state=seed)
        model = (
            project.model_module().build_model(dict(spec.params)).fit(rows[features], rows[target].to_numpy())
        )
        values.append(evaluate(task, model, test[features], test[target].to_numpy())[metric.name])
    found = np.array(values)
    pairs = np.abs(found[:, None] - found[None, :])[np.triu_indices(retrains, 1)] / abs(found.mean())
    return (
        f"{library:<9} {task:<11} {metric.name:<9} mean {found.mean():.4f}  sd {found.std():.4f}  "
        f"p95 relative difference between two retrains {np.percentile(pairs, 95):.2%}  "
        f"(init's min_improvement: {spec.evaluation.min_improvement:.0%})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 retrains: checks the script works")
    parser.add_argument("--library", default="sklearn", choices=list(LIBRARIES))
    args = parser.parse_args()
    retrains = 3 if args.quick else RETRAINS
    with tempfile.TemporaryDirectory() as scratch:
        for task in TASKS:
            if task in LIBRARIES[args.library]["estimators"] or args.library == "sklearn":
                print(spread(task, Path(scratch) / task, retrains, args.library))
