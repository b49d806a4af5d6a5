"""The Azure ML code folder ``score.py`` runs from (the inference server, managed endpoints).

``score.py`` at its root, the model library (and the rule table it applies) at their places in the
package, so the same imports work there and in the scoring image; the model project's
``serving-spec.json`` and project package beside ``model/rows.py``, where the service reads them too.
"""

import json
import shutil
from pathlib import Path

from mlops_assets.model.rows import SPEC_NAME
from mlops_assets.project.package import PACKAGED_DIR, write_package

PACKAGE = Path(__file__).resolve().parents[1]
ENTRY_SCRIPT = PACKAGE / "serving" / "score.py"
MODEL_LIBRARY = (
    "__init__.py",
    "project/__init__.py",
    "project/rules.py",
    "project/package.py",
    "model/__init__.py",
    "model/rows.py",
    "model/manifest.py",
    "model/artifact.py",
    "model/compiled.py",
    "model/predictors.py",
    "model/loaded.py",
)


def write_code_folder(
    folder: Path, serving_spec: dict | None = None, package: dict[str, str] | None = None
) -> Path:
    """``folder`` (created) holding score.py, the model library and, given, the version's spec and
    project package (where the scoring image has them)."""
    folder.mkdir(parents=True)
    shutil.copy(ENTRY_SCRIPT, folder / ENTRY_SCRIPT.name)
    for relative in MODEL_LIBRARY:
        target = folder / PACKAGE.name / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(PACKAGE / relative, target)
    if serving_spec is not None:
        (folder / PACKAGE.name / "model" / SPEC_NAME).write_text(json.dumps(serving_spec, indent=2))
    if package is not None:
        write_package(package, folder / PACKAGE.name / "model" / PACKAGED_DIR)
    return folder
