"""Churn: one-hot plans and regions, scaled usage, missing support calls filled, into a logistic
regression."""

from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

CATEGORIES = ["plan", "region"]
NUMBERS = ["tenure_months", "monthly_charge", "support_calls", "paperless"]


def build_model(params: dict) -> Pipeline:
    columns = ColumnTransformer(
        [
            ("categories", OneHotEncoder(handle_unknown="ignore"), CATEGORIES),
            ("numbers", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMBERS),
        ]
    )
    classifier = LogisticRegression(C=float(params["C"]), max_iter=int(params["max_iter"]))
    return make_pipeline(columns, classifier)
