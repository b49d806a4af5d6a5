"""How much the gate's metric moves between retrains of the same model on the same data: the
noise a project's ``min_improvement`` must stand above (init's defaults are set from this run).

Each task's project made by ``mlops-assets init`` is fitted 30 times on 90% subsamples of its
training rows and scored on the same holdout; printed: the primary metric's mean, its standard
deviation and the 95th percentile of the relative difference between two such retrains.

Run: .venv/bin/python bench/gate_noise.py [--quick]
"""

import argparse
import tempfile
from pathlib import Path

import numpy as np

from mlops_assets.ops.scaffold import scaffold
from mlops_assets.project.loader import load_project
from mlops_assets.project.metrics import TASKS, evaluate, task_metrics
from mlops_assets.training.train import holdout_mask
from mlops_assets_tests.projects import typed_seed

RETRAINS = 30


def spread(task: str, folder: Path, retrains: int) -> str:
    scaffold(folder, task)
    project = load_project(folder)
    spec = project.spec
    frame = typed_seed(project)
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
        f"{task:<11} {metric.name:<9} mean {found.mean():.4f}  sd {found.std():.4f}  "
        f"p95 relative difference between two retrains {np.percentile(pairs, 95):.2%}  "
        f"(init's min_improvement: {spec.evaluation.min_improvement:.0%})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 retrains: checks the script works")
    retrains = 3 if parser.parse_args().quick else RETRAINS
    with tempfile.TemporaryDirectory() as scratch:
        for task in TASKS:
            print(spread(task, Path(scratch) / task, retrains))
