"""The diabetes model: standardised features into a Ridge regression."""

from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler


def build_model(params: dict) -> Pipeline:
    return make_pipeline(StandardScaler(), Ridge(alpha=float(params["alpha"])))
