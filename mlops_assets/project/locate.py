"""Where model projects live and which one runs: standard library only (settings reads it)."""

from __future__ import annotations

import tomllib
from pathlib import Path

# models/ sits beside the package in the repository and in the code-location image.
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
DEFAULT_FILE = "default.toml"


def default_project_dir(models_dir: Path = MODELS_DIR) -> Path:
    """The project ``models/default.toml`` names: the one that runs when MLOPS_MODEL_PROJECT is unset."""
    path = models_dir / DEFAULT_FILE
    try:
        name = tomllib.loads(path.read_text(encoding="utf-8"))["project"]
    except (OSError, tomllib.TOMLDecodeError, KeyError) as exc:
        raise ValueError(
            f"{path}: cannot tell the default model project ({exc!r}); set MLOPS_MODEL_PROJECT"
        ) from None
    return models_dir / name


def project_name(folder: Path) -> str:
    """The ``name`` in ``folder/project.toml``, read without validating the rest (cheap, for paths);
    the folder's name when the spec cannot be read: loading the project reports why."""
    try:
        name = tomllib.loads((folder / "project.toml").read_text(encoding="utf-8")).get("name")
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError):
        name = None
    return name if isinstance(name, str) and name else folder.name
