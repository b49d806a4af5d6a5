"""Delivery hours on LightGBM: categories split natively (the platform hands them over as pandas
Categorical columns over project.toml's categories), boosting stopped early on a validation split
of the training rows. train(frame, params) fits it; the holdout the gate scores is never seen."""

import lightgbm
import numpy as np
import pandas as pd
from lightgbm import LGBMRegressor

TARGET = "hours"


def train(frame: pd.DataFrame, params: dict) -> LGBMRegressor:
    features, target = frame.drop(columns=[TARGET]), frame[TARGET]
    validation = np.random.default_rng(0).random(len(frame)) < float(params["validation_fraction"])
    model = LGBMRegressor(
        n_estimators=int(params["n_estimators"]),
        learning_rate=float(params["learning_rate"]),
        num_leaves=int(params["num_leaves"]),
        min_child_samples=int(params["min_child_samples"]),
        n_jobs=1,  # one thread: the same trees on every machine, and room for the rest of the run
        random_state=0,
        verbose=-1,
    )
    model.fit(
        features[~validation],
        target[~validation],
        eval_X=features[validation],
        eval_y=target[validation],
        callbacks=[lightgbm.early_stopping(int(params["early_stopping_rounds"]), verbose=False)],
    )
    return model
