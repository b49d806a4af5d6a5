"""Bad and good batches made from the diabetes data, as the bytes a user would land."""

import numpy as np
import pandas as pd

from mlops_assets_tests.projects import diabetes_frame, split_seed


def held_back() -> pd.DataFrame:
    return split_seed(diabetes_frame())[1].copy()


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def missing_column() -> bytes:
    return csv_bytes(held_back().drop(columns=["s6"]))


def text_value() -> bytes:
    frame = held_back().astype(object)
    frame.loc[3, "bmi"] = "twenty-five"
    return csv_bytes(frame)


def nulls() -> bytes:
    frame = held_back()
    frame.loc[[1, 5], "bp"] = np.nan
    return csv_bytes(frame)


def out_of_range() -> bytes:
    frame = held_back()
    frame.loc[7, "age"] = 250
    return csv_bytes(frame)


def not_csv() -> bytes:
    return b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256))


def changed_units() -> bytes:
    """s1 shifted by +150 mg/dL: every value still possible, the batch as a whole impossible."""
    frame = held_back()
    frame["s1"] = frame["s1"] + 150
    return csv_bytes(frame)


def drifted() -> bytes:
    """Valid and plausible, but bmi moved by about 0.7 reference standard deviations."""
    frame = held_back()
    frame["bmi"] = frame["bmi"] + 3.0
    return csv_bytes(frame)
