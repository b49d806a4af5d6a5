"""The promotion gate: the candidate against the bar, both scored on the same current holdout."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from mlops_assets.project.metrics import Metric
from mlops_assets.registry.protocol import IN_RELEASE_STATES, ModelVersion


@dataclass(frozen=True)
class Scored:
    label: str  # "candidate" or "version N"
    version: int | None
    metrics: dict[str, float]
    # Why this version cannot be compared on the current holdout (the spec's columns changed).
    incomparable: str | None = None


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    candidate: Scored
    bar: Scored | None
    compared: list[Scored] = field(default_factory=list)
    already_registered_version: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def bar_versions(versions: list[ModelVersion], production: ModelVersion | None) -> list[ModelVersion]:
    """Production plus every newer version still being released; if none, the latest; if none, []."""
    floor = production.version if production else 0
    in_release = [v for v in versions if v.version > floor and v.release_state in IN_RELEASE_STATES]
    bar = ([production] if production else []) + in_release
    if not bar and versions:
        bar = [max(versions, key=lambda v: v.version)]
    return bar


def decide(candidate: Scored, bar: list[Scored], metric: Metric, min_improvement: float) -> Decision:
    """Promote only if ``metric`` beats the best of the bar by at least ``min_improvement``
    (relative, strict). Versions that cannot score the current holdout are no bar: if none can,
    the candidate is promoted with that reason, never compared on a broken bar."""
    if not 0 <= min_improvement < 1:
        raise ValueError(f"min_improvement must be in [0, 1), got {min_improvement}")
    if not bar:
        return Decision(True, "no registered model yet: the first candidate is registered", candidate, None)
    comparable = [s for s in bar if s.incomparable is None]
    if not comparable:
        why = "; ".join(f"{s.label} {s.incomparable}" for s in bar)
        return Decision(True, f"promoted without comparison: {why}", candidate, None, list(bar))
    name = metric.name
    value = metric.best([s.metrics[name] for s in comparable])
    best = next(s for s in comparable if s.metrics[name] == value)
    gain = metric.improvement(candidate.metrics[name], value)
    versus = f"candidate {name} {candidate.metrics[name]:.4g} vs {best.label} {name} {value:.4g}"
    if gain > min_improvement:
        reason = f"promoted: {versus}, {gain:+.2%} (required > {min_improvement:.2%})"
        return Decision(True, reason, candidate, best, list(bar))
    reason = f"not promoted: {versus}, {gain:+.2%} (required > {min_improvement:.2%})"
    return Decision(False, reason, candidate, best, list(bar))


def already_registered(candidate: Scored, version: ModelVersion) -> Decision:
    reason = (
        f"not promoted: identical to version {version.version} "
        "(same data, holdout, code and config): nothing new to register"
    )
    return Decision(False, reason, candidate, None, already_registered_version=version.version)
