"""Sample parcels, generated the same way every time (fixed seed): nothing to download.

Hours grow with the service level, the distance at the carrier's own pace, the islands' ferry and a
weekend pickup; interactions a linear model misses and trees find."""

import numpy as np
import pandas as pd

ROWS = 1600
CARRIERS = {"swift": 55.0, "parcelco": 45.0, "northpost": 40.0, "localvan": 30.0}  # km per hour of transit
SERVICE_HOURS = {"economy": 60.0, "standard": 36.0, "express": 14.0}


def seed_frame() -> pd.DataFrame:
    rng = np.random.default_rng(20261207)
    carrier = rng.choice(list(CARRIERS), size=ROWS, p=[0.3, 0.3, 0.25, 0.15])
    service = rng.choice(list(SERVICE_HOURS), size=ROWS, p=[0.4, 0.4, 0.2])
    region = rng.choice(
        ["north", "south", "east", "west", "islands"], size=ROWS, p=[0.25, 0.25, 0.2, 0.2, 0.1]
    )
    distance = np.round(rng.gamma(2.0, 150.0, size=ROWS).clip(1, 2900), 1)
    weight = np.round(rng.gamma(1.5, 3.0, size=ROWS).clip(0.1, 69), 2)
    pieces = rng.integers(1, 12, size=ROWS)
    weekend = rng.random(ROWS) < 2 / 7
    pace = np.array([CARRIERS[c] for c in carrier])
    hours = (
        np.array([SERVICE_HOURS[s] for s in service])
        + distance / pace
        + 30.0 * (region == "islands") * (service != "express")
        + 24.0 * weekend
        + 0.4 * weight
        + rng.normal(0, 3.0, ROWS)
    )
    return pd.DataFrame(
        {
            "carrier": carrier,
            "service": service,
            "region": region,
            "distance_km": distance,
            "weight_kg": weight,
            "pieces": pieces,
            "weekend_pickup": weekend,
            "hours": np.round(hours.clip(1, 999), 2),
        }
    )
