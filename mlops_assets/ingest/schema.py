"""The diabetes table: column names, their meaning and the ranges a real measurement can take."""

from __future__ import annotations

FEATURES: tuple[str, ...] = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")
TARGET = "target"
COLUMNS: tuple[str, ...] = (*FEATURES, TARGET)

# Physiologically possible values in the units of load_diabetes(scaled=False); wider than the
# data seen, so only impossible values (a typo, a unit change) fail the range check.
DEFAULT_VALUE_RANGES: dict[str, tuple[float, float]] = {
    "age": (0.0, 120.0),  # years
    "sex": (1.0, 2.0),  # coded 1 / 2
    "bmi": (10.0, 80.0),  # kg/m2
    "bp": (30.0, 250.0),  # mean blood pressure, mm Hg
    "s1": (50.0, 500.0),  # total serum cholesterol, mg/dL
    "s2": (10.0, 400.0),  # LDL, mg/dL
    "s3": (5.0, 200.0),  # HDL, mg/dL
    "s4": (0.5, 20.0),  # total cholesterol / HDL
    "s5": (2.0, 8.0),  # log of serum triglycerides
    "s6": (20.0, 600.0),  # blood sugar, mg/dL
    "target": (0.0, 500.0),  # disease progression one year after baseline
}
