"""A model project loaded and checked as a whole: spec, model code, seed data, digests."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from mlops_assets.project.code import (
    MODEL_FILE,
    SEED_FILE,
    ProjectCodeError,
    check_source,
    file_digest,
    load_module,
    require_function,
)
from mlops_assets.project.spec import SPEC_FILE, ProjectError, ProjectSpec, read_spec

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ModelProject:
    folder: Path
    spec: ProjectSpec
    spec_digest: str  # project.toml's bytes
    code_digest: str  # model.py's bytes

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def model_file(self) -> Path:
        return self.folder / MODEL_FILE

    @property
    def seed_file(self) -> Path | None:
        path = self.folder / SEED_FILE
        return path if path.is_file() else None

    @property
    def files(self) -> dict[str, Path]:
        """The project's files the trainer needs, by name (what travels to AML and into images)."""
        return {name: self.folder / name for name in (SPEC_FILE, MODEL_FILE)}

    def model_module(self) -> ModuleType:
        return load_module(self.model_file, f"mlops_model_{self.name}")

    def seed_frame(self) -> pd.DataFrame:
        """The project's demo data (seed.py's ``seed_frame()``), exactly the spec's columns."""
        if self.seed_file is None:
            raise ProjectError(f"{self.folder}: no {SEED_FILE}: this project ships no seed data")
        module = load_module(self.seed_file, f"mlops_seed_{self.name}")
        require_function(module, self.seed_file, "seed_frame")
        frame = module.seed_frame()
        missing = [c for c in self.spec.columns if c not in frame.columns]
        if missing:
            keys = ", ".join(
                f"target.name ({c})" if c == self.spec.target.name else f"features.{c}" for c in missing
            )
            raise ProjectError(f"{self.folder / SPEC_FILE}: {keys}: not in the seed data ({self.seed_file})")
        return frame[list(self.spec.columns)]


def load_project(folder: Path, run_code: bool = True) -> ModelProject:
    """The project in ``folder``, checked whole: a mistake fails here, naming the file and the key.

    ``run_code=False`` reads model.py and seed.py without running them (allowed imports, the
    functions defined): what the CLI can check without importing scikit-learn.
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise ProjectError(f"{folder}: no such model project folder")
    spec = read_spec(folder)
    if not (folder / MODEL_FILE).is_file():
        raise ProjectError(
            f"{folder / MODEL_FILE}: missing; a model project defines build_model(params) there"
        )
    project = ModelProject(
        folder=folder,
        spec=spec,
        spec_digest=file_digest(folder / SPEC_FILE),
        code_digest=file_digest(folder / MODEL_FILE),
    )
    try:
        check_source(project.model_file, "build_model")
        if project.seed_file is not None:
            check_source(project.seed_file, "seed_frame")
        if run_code:
            require_function(project.model_module(), project.model_file, "build_model")
            if project.seed_file is not None:
                project.seed_frame()
    except ProjectCodeError as exc:
        raise ProjectError(str(exc)) from None
    return project


@lru_cache(maxsize=8)
def cached_project(folder: str, stamp: tuple) -> ModelProject:
    return load_project(Path(folder))


def current_project(folder: Path) -> ModelProject:
    """load_project, done again only when a file of the project changed (its size or mtime)."""
    folder = Path(folder).resolve()
    stamp = tuple(
        (path.name, path.stat().st_mtime_ns, path.stat().st_size)
        for path in sorted(folder.glob("*.py")) + sorted(folder.glob("*.toml"))
    )
    return cached_project(str(folder), stamp)
