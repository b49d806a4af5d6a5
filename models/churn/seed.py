"""Demo data, generated the same way every time (fixed seed): no download, nothing to ship."""

import numpy as np
import pandas as pd

ROWS = 1200


def seed_frame() -> pd.DataFrame:
    rng = np.random.default_rng(20261129)
    plan = rng.choice(["basic", "standard", "premium"], size=ROWS, p=[0.5, 0.3, 0.2])
    region = rng.choice(["north", "south", "east", "west"], size=ROWS)
    tenure = rng.integers(0, 120, size=ROWS)
    charge = np.round(
        np.select([plan == "basic", plan == "standard"], [20.0, 45.0], 80.0) + rng.normal(0, 8, ROWS), 2
    )
    calls = rng.poisson(1.5, size=ROWS).astype(float)
    calls[rng.random(ROWS) < 0.05] = np.nan  # not recorded for some subscribers
    paperless = rng.random(ROWS) < 0.6
    logit = (
        -1.0 - 0.03 * tenure + 0.6 * np.nan_to_num(calls, nan=1.5) + 0.5 * paperless + 0.8 * (plan == "basic")
    )
    churned = rng.random(ROWS) < 1 / (1 + np.exp(-logit))
    return pd.DataFrame(
        {
            "plan": plan,
            "region": region,
            "tenure_months": tenure,
            "monthly_charge": np.clip(charge, 0, None),
            "support_calls": pd.array(calls, dtype="Int64"),
            "paperless": paperless,
            "churned": churned,
        }
    )
