"""``mlops-assets seed``: the model project's seed data as a first landed file and a held-back one."""

from __future__ import annotations

import sys
from dataclasses import dataclass

import pandas as pd

from mlops_assets.ingest.parsing import parse_batch, typed_frame
from mlops_assets.ingest.reference import REFERENCE_PATH, compute_reference, write_reference
from mlops_assets.project.loader import ModelProject
from mlops_assets.runner.client import runner_for
from mlops_assets.storage.fsstore import Storage

FIRST_SHARE = 0.75


@dataclass(frozen=True)
class SeedFiles:
    first: str  # landed at once
    held_back: str  # outside landing/: the demo lands it later
    held_back_landing: str

    @classmethod
    def of(cls, project: ModelProject) -> SeedFiles:
        return cls(
            first=f"landing/{project.name}-part-1.csv",
            held_back=f"seed/{project.name}-part-2.csv",
            held_back_landing=f"landing/{project.name}-part-2.csv",
        )


@dataclass(frozen=True)
class SeedReport:
    first_rows: int
    held_back_rows: int
    written: list[str]
    unchanged: list[str]


def split_seed(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    cut = int(len(frame) * FIRST_SHARE)
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


def seed_parts(project: ModelProject, python: str = sys.executable) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first file's rows and the held-back file's rows (seed.py runs in the project runner,
    by ``python``: the project's environment)."""
    return split_seed(runner_for(project.folder, python).seed_frame(project.folder))


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, float_format="%.10g").encode()


def seed(storage: Storage, project: ModelProject, python: str = sys.executable) -> SeedReport:
    """Write the two files and the first reference statistics; rewrite nothing that is already there."""
    first, held_back = seed_parts(project, python)
    files = SeedFiles.of(project)
    written, unchanged = [], []
    for path, frame in ((files.first, first), (files.held_back, held_back)):
        data = _csv(frame)
        if storage.exists(path) and storage.read_bytes(path) == data:
            unchanged.append(path)
        else:
            storage.write_bytes(path, data)
            written.append(path)
    if not storage.exists(REFERENCE_PATH):
        # Typed as a landed file is (booleans 1.0/0.0, categories as text): the drift check
        # compares each batch's shares with these, key by key.
        typed = typed_frame(parse_batch(files.first, _csv(first)), project.spec)
        write_reference(storage, compute_reference(typed, project.spec, source=files.first))
        written.append(REFERENCE_PATH)
    else:
        unchanged.append(REFERENCE_PATH)
    return SeedReport(len(first), len(held_back), written, unchanged)


def land_held_back(storage: Storage, project: ModelProject) -> bool:
    """Copy the held-back file into landing/; False if it had landed already."""
    files = SeedFiles.of(project)
    if storage.exists(files.held_back_landing):
        return False
    storage.write_bytes(files.held_back_landing, storage.read_bytes(files.held_back))
    return True
