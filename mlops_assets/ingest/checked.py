"""One pass over a landed file: parsed once, each column typed once, every rule checked and the
batch typed, kept in storage beside the landed files by what decides it (the file's sha256, the
spec, the thresholds, the reference statistics). ``landed_batch`` makes the pass as the file lands;
its checks and ``validated_batch`` read it instead of parsing the file again. A check or gate run
under another spec, other thresholds or another reference makes a pass of its own: what they
report is always what the rules say of the file under the configuration in force.
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import asdict, dataclass

import pandas as pd

from mlops_assets.ingest.reference import ReferenceStats
from mlops_assets.ingest.validation import (
    BLOCKING_RULES,
    RuleOutcome,
    ValidationThresholds,
    blocking_failures,
    check_drift,
    parse_batch,
    typed_frame,
    unnamed_columns,
)
from mlops_assets.project.spec import ProjectSpec

CHECKED_PREFIX = "checked"  # storage: <key>.json (the outcomes) and <key>.parquet (the typed batch)
DRIFT_RULE = "drift"


@dataclass
class CheckedBatch:
    """Every rule's outcome (the blocking ones and drift), the file's columns the spec does not
    name, and the typed batch where every blocking rule passed (else None)."""

    outcomes: dict[str, RuleOutcome]
    unnamed: str
    typed: pd.DataFrame | None

    def failed(self) -> list[RuleOutcome]:
        """The blocking rules that failed, as ``failed_rules`` says them."""
        return blocking_failures(o for name, o in self.outcomes.items() if name in BLOCKING_RULES)


def pass_key(
    sha256: str, spec: ProjectSpec, thresholds: ValidationThresholds, reference: ReferenceStats | None
) -> str:
    """What decides the pass: the file's bytes and the configuration the rules read."""
    decided_by = [
        sha256,
        spec.model_dump(mode="json"),
        asdict(thresholds),
        asdict(reference) if reference is not None else None,
    ]
    return hashlib.sha256(json.dumps(decided_by, sort_keys=True, default=str).encode()).hexdigest()[:32]


def run_pass(
    source: str,
    raw: bytes,
    spec: ProjectSpec,
    thresholds: ValidationThresholds,
    reference: ReferenceStats | None,
) -> CheckedBatch:
    batch = parse_batch(source, raw)
    rules = {name: rule for name, (rule, _) in BLOCKING_RULES.items()} | {DRIFT_RULE: check_drift}
    outcomes = {name: rule(batch, spec, thresholds, reference) for name, rule in rules.items()}
    passed = all(outcomes[name].passed for name in BLOCKING_RULES)
    return CheckedBatch(outcomes, unnamed_columns(batch, spec), typed_frame(batch, spec) if passed else None)


def checked_batch(
    store,
    source: str,
    raw: bytes,
    spec: ProjectSpec,
    thresholds: ValidationThresholds,
    reference: ReferenceStats | None,
) -> CheckedBatch:
    """The pass for this file under this configuration: read if it was made, else made and kept."""
    key = pass_key(hashlib.sha256(raw).hexdigest(), spec, thresholds, reference)
    outcomes_path, typed_path = f"{CHECKED_PREFIX}/{key}.json", f"{CHECKED_PREFIX}/{key}.parquet"
    if store.exists(outcomes_path):
        kept = json.loads(store.read_bytes(outcomes_path))
        typed = pd.read_parquet(io.BytesIO(store.read_bytes(typed_path))) if kept["typed"] else None
        outcomes = {name: RuleOutcome(**outcome) for name, outcome in kept["outcomes"].items()}
        return CheckedBatch(outcomes, kept["unnamed"], typed)
    made = run_pass(source, raw, spec, thresholds, reference)
    if made.typed is not None:  # written first: a pass whose outcomes are there has its batch too
        buffer = io.BytesIO()
        made.typed.to_parquet(buffer, index=False)
        store.write_bytes(typed_path, buffer.getvalue())
    kept = {
        "outcomes": {name: asdict(outcome) for name, outcome in made.outcomes.items()},
        "unnamed": made.unnamed,
        "typed": made.typed is not None,
    }
    store.write_bytes(outcomes_path, json.dumps(kept, default=_plain).encode())
    return made


def _plain(value: object) -> object:
    """numpy's numbers as Python's."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")
