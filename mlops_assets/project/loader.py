"""A model project read and checked as a whole without running its code: spec, modules, digests.

Running the project's code (``model_module``, ``seed_frame``) is for the project runner's process
and the project's own tests, never the code location's.
"""

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
    check_package,
    file_digest,
    load_module,
    require_defined,
    require_function,
)
from mlops_assets.project.environment import check_lock
from mlops_assets.project.package import package_files, package_sources, sources_digest
from mlops_assets.project.spec import SPEC_FILE, ProjectError, ProjectSpec, read_spec

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class ModelProject:
    folder: Path
    spec: ProjectSpec
    spec_digest: str  # project.toml's bytes
    code_digest: str  # every module of the package, by path and bytes

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
        """The project's files the trainer needs, by relative path: the spec and every module."""
        return {SPEC_FILE: self.folder / SPEC_FILE, **package_files(self.folder)}

    def sources(self) -> dict[str, str]:
        """The package's modules as text: what a registered version carries."""
        return package_sources(self.folder)

    def model_module(self) -> ModuleType:
        """model.py imported as ``model_project.model``: runs the project's code in this process."""
        return load_module(self.folder, MODEL_FILE)

    def seed_frame(self) -> pd.DataFrame:
        """The project's demo data (seed.py's ``seed_frame()``), exactly the spec's columns."""
        if self.seed_file is None:
            raise ProjectError(f"{self.folder}: no {SEED_FILE}: this project ships no seed data")
        module = load_module(self.folder, SEED_FILE)
        require_function(module, self.seed_file, "seed_frame")
        frame = module.seed_frame()
        missing = [c for c in self.spec.columns if c not in frame.columns]
        if missing:
            keys = ", ".join(
                f"target.name ({c})" if c == self.spec.target.name else f"features.{c}" for c in missing
            )
            raise ProjectError(f"{self.folder / SPEC_FILE}: {keys}: not in the seed data ({self.seed_file})")
        return frame[list(self.spec.columns)]


def load_project(folder: Path) -> ModelProject:
    """The project in ``folder``, checked whole without running it (the spec, every module's
    imports, the functions model.py and seed.py define): a mistake fails here, naming the file and
    the key. The project runner runs its code."""
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
        code_digest=sources_digest(package_sources(folder)),
    )
    try:
        check_lock(folder, spec.environment.requirements)
        check_package(folder)
        require_defined(project.model_file, "build_model", "train")
        if project.seed_file is not None:
            require_defined(project.seed_file, "seed_frame")
    except (ProjectCodeError, ValueError) as exc:
        raise ProjectError(str(exc)) from None
    return project


@lru_cache(maxsize=8)
def cached_project(folder: str, stamp: tuple) -> ModelProject:
    return load_project(Path(folder))


def current_project(folder: Path) -> ModelProject:
    """load_project, done again only when a file of the project changed (its size or mtime)."""
    folder = Path(folder).resolve()
    # The package's files (its modules and its lock) and the spec: whatever load_project reads.
    files = sorted({*package_files(folder).values(), *folder.glob("*.toml")})
    stamp = tuple((str(path), path.stat().st_mtime_ns, path.stat().st_size) for path in files)
    return cached_project(str(folder), stamp)
