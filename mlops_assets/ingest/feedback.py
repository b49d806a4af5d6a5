"""Labels that arrive later, joined with the scored rows they belong to (no Dagster here).

A labels file (CSV: ``request_id``, ``row_index`` and the project's target column) names scored rows by the request id
the service returned and the row's position in that request. Each label is:
- matched: the row is in the compacted scoring logs; it becomes a training row (features + target);
- pending: its request is not in the compacted logs yet and the file is younger than the wait
  (a request from today is compacted tomorrow); the file is joined again later;
- unknown: the request was found but has no such row, or it is still not found after the wait:
  reported with the reason, never guessed.
"""

import io
from dataclasses import dataclass, field

import pandas as pd

from mlops_assets.project.spec import NUMBER_KINDS, ProjectSpec

KEY_COLUMNS = ("request_id", "row_index")


class LabelsError(ValueError):
    """A labels file that cannot be read; the message names the file and the problem."""


@dataclass
class FeedbackJoin:
    frame: pd.DataFrame  # the spec's columns (features + target) of the matched labels
    matched: int = 0
    predictions: list = field(default_factory=list)  # production's prediction for each matched row
    pending: list[str] = field(default_factory=list)  # "request_id#row"
    unknown: list[str] = field(default_factory=list)  # "request_id#row: why"


def read_labels(source: str, raw: bytes, spec: ProjectSpec) -> pd.DataFrame:
    target = spec.target.name
    wanted = (*KEY_COLUMNS, target)
    try:
        labels = pd.read_csv(io.BytesIO(raw), dtype={"request_id": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise LabelsError(f"{source}: not a CSV file ({exc})") from None
    missing = [c for c in wanted if c not in labels.columns]
    if missing:
        raise LabelsError(
            f"{source}: column(s) {', '.join(missing)} missing (labels need {', '.join(wanted)})"
        )
    labels = labels[list(wanted)]
    numbers = ["row_index", target] if spec.target.kind in NUMBER_KINDS else ["row_index"]
    for column in numbers:
        numbers = pd.to_numeric(labels[column], errors="coerce")
        bad = labels.index[numbers.isna()]
        if len(bad):
            rows = ", ".join(str(i + 2) for i in bad[:3])  # +2: the header line and 1-based lines
            raise LabelsError(f"{source}: column {column} is not a number on line(s) {rows}")
        labels[column] = numbers
    if (labels["row_index"] < 0).any() or (labels["row_index"] % 1 != 0).any():
        raise LabelsError(f"{source}: row_index must be a whole number >= 0")
    labels["row_index"] = labels["row_index"].astype("int64")
    if labels["request_id"].isna().any():
        raise LabelsError(f"{source}: empty request_id")
    return labels.drop_duplicates(["request_id", "row_index"], keep="last")


def join_labels(
    labels: pd.DataFrame, logs: pd.DataFrame, still_waiting: bool, spec: ProjectSpec
) -> FeedbackJoin:
    """``logs``: compacted scoring_logs rows; ``still_waiting``: the file is younger than the wait."""
    scored = logs.drop_duplicates(["request_id", "row_index"]).set_index(["request_id", "row_index"])
    known_requests = set(logs["request_id"]) if len(logs) else set()
    rows, pending, unknown, predictions = [], [], [], []
    for request_id, row_index, target in labels.itertuples(index=False):
        key = (request_id, int(row_index))
        if key in scored.index:
            features = scored.loc[key, list(spec.feature_names)]
            rows.append([*features.tolist(), target])
            predictions.append(scored.loc[key, "prediction"] if "prediction" in scored.columns else None)
        elif request_id in known_requests:
            count = int((logs["request_id"] == request_id).sum())
            unknown.append(f"{request_id}#{row_index}: the request had {count} row(s)")
        elif still_waiting:
            pending.append(f"{request_id}#{row_index}")
        else:
            unknown.append(f"{request_id}#{row_index}: no such request in the compacted scoring logs")
    frame = pd.DataFrame(rows, columns=list(spec.columns))
    return FeedbackJoin(frame, len(rows), predictions, pending, unknown)
