"""``mlops-assets seed``: the scikit-learn diabetes data as a first landed file and a held-back one."""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
from sklearn.datasets import load_diabetes

from mlops_assets.core.storage import Storage
from mlops_assets.ingest.reference import REFERENCE_PATH, compute_reference, write_reference
from mlops_assets.ingest.schema import COLUMNS

FIRST_FILE = "landing/diabetes-part-1.csv"
HELD_BACK_FILE = "seed/diabetes-part-2.csv"  # outside landing/: the demo lands it later
HELD_BACK_LANDING = "landing/diabetes-part-2.csv"
FIRST_SHARE = 0.75


@dataclass(frozen=True)
class SeedReport:
    first_rows: int
    held_back_rows: int
    written: list[str]
    unchanged: list[str]


def diabetes_frame() -> pd.DataFrame:
    data = load_diabetes(scaled=False, as_frame=True).frame
    return data.rename(columns=str.lower)[list(COLUMNS)]


def split_seed(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    cut = int(len(frame) * FIRST_SHARE)
    return frame.iloc[:cut].reset_index(drop=True), frame.iloc[cut:].reset_index(drop=True)


def _csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False, float_format="%.10g").encode()


def seed(storage: Storage) -> SeedReport:
    """Write the two files and the first reference statistics; rewrite nothing that is already there."""
    first, held_back = split_seed(diabetes_frame())
    written, unchanged = [], []
    for path, frame in ((FIRST_FILE, first), (HELD_BACK_FILE, held_back)):
        data = _csv(frame)
        if storage.exists(path) and storage.read_bytes(path) == data:
            unchanged.append(path)
        else:
            storage.write_bytes(path, data)
            written.append(path)
    if not storage.exists(REFERENCE_PATH):
        write_reference(storage, compute_reference(first, source=FIRST_FILE))
        written.append(REFERENCE_PATH)
    else:
        unchanged.append(REFERENCE_PATH)
    return SeedReport(len(first), len(held_back), written, unchanged)


def land_held_back(storage: Storage) -> bool:
    """Copy the held-back file into landing/; False if it had landed already."""
    if storage.exists(HELD_BACK_LANDING):
        return False
    storage.write_bytes(HELD_BACK_LANDING, storage.read_bytes(HELD_BACK_FILE))
    return True
