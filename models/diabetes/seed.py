"""Demo data: scikit-learn's diabetes table in its original units (it ships inside scikit-learn)."""

import pandas as pd
from sklearn.datasets import load_diabetes


def seed_frame() -> pd.DataFrame:
    frame = load_diabetes(scaled=False, as_frame=True).frame.rename(columns=str.lower)
    return frame.rename(columns={"target": "progression"})
