"""Outside models/, the code names no project's columns, estimators or data set, and metric names
only in the task -> metric catalogue: a team's own project must never need an edit of the platform."""

import ast
import re
from pathlib import Path

from mlops_assets.project.loader import load_project
from mlops_assets.project.locate import MODELS_DIR
from mlops_assets.project.metrics import CATALOGUE

PACKAGE = Path(__file__).resolve().parents[1] / "mlops_assets"
CATALOGUE_MODULE = PACKAGE / "project" / "metrics.py"
PROJECTS = [load_project(p) for p in sorted(MODELS_DIR.iterdir()) if (p / "project.toml").is_file()]


def _estimator_classes() -> set[str]:
    """Every name a shipped model.py imports from scikit-learn."""
    names = set()
    for project in PROJECTS:
        for node in ast.walk(ast.parse(project.model_file.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("sklearn"):
                names |= {alias.name for alias in node.names}
    return names


def _strings(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            yield node.lineno, node.value


def _violations() -> list[str]:
    columns = {name for p in PROJECTS for name in p.spec.columns}
    words = _estimator_classes() | {p.name for p in PROJECTS}
    metrics = {name for task in CATALOGUE.values() for name in task}
    found_word = re.compile(r"\b(" + "|".join(sorted(map(re.escape, words))) + r")\b")
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        where = path.relative_to(PACKAGE.parent)
        for line, text in _strings(path):
            if text in columns:
                problems.append(f"{where}:{line}: column name {text!r}")
            if path != CATALOGUE_MODULE and text in metrics:
                problems.append(f"{where}:{line}: metric name {text!r} outside the catalogue")
            if match := found_word.search(text):
                problems.append(f"{where}:{line}: {match.group(1)!r} in {text[:60]!r}")
    return problems


def test_the_package_names_no_project_s_columns_estimators_data_or_metrics():
    assert _violations() == []


def test_the_check_finds_a_planted_name(tmp_path, monkeypatch):
    planted = PACKAGE / "project" / "_planted_for_test.py"
    planted.write_text('COLUMN = "bmi"\nMETRIC = "roc_auc"\n"""A StandardScaler then a regression."""\n')
    try:
        found = _violations()
    finally:
        planted.unlink()
    assert [p.split(": ", 1)[1] for p in found if "_planted_for_test" in p] == [
        "column name 'bmi'",
        "metric name 'roc_auc' outside the catalogue",
        "'StandardScaler' in 'A StandardScaler then a regression.'",
    ]
