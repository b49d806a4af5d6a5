"""One pass over a landed file: read chunk by chunk, each column of a chunk typed once, every rule
checked over the tally of all chunks, the typed rows written to parquet as they go (kept as a batch
by its content, ``batches.py``, if every blocking rule passed), the outcomes kept in storage by
what decides them (the file's sha256, the spec, the thresholds, the reference statistics).
``landed_batch`` makes the pass as the file lands; its checks and ``validated_batch`` read it
instead of reading the file again. A check or gate run under another spec, other thresholds or
another reference makes a pass of its own: what they report is always what the rules say of the
file under the configuration in force.

Memory is that of one chunk (``chunk_rows`` rows) and the tally, whatever the file's size.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from dataclasses import asdict, dataclass

import pyarrow.parquet as pq

from mlops_assets.ingest.batches import keep_batch, typed_table
from mlops_assets.ingest.parsing import ParsedBatch, read_batches, typed_frame
from mlops_assets.ingest.reference import ReferenceStats
from mlops_assets.ingest.tally import BatchTally
from mlops_assets.ingest.validation import (
    BLOCKING_RULES,
    RuleOutcome,
    ValidationThresholds,
    blocking_failures,
    check_drift,
    unnamed_columns,
)
from mlops_assets.project.spec import ProjectSpec

CHECKED_PREFIX = "checked"  # storage: <key>.json, the outcomes (the typed batch is kept in batches/)
DRIFT_RULE = "drift"
DEFAULT_CHUNK_ROWS = 100_000
PASS_FORMAT = 3  # what a kept pass holds; a pass kept in another format is made again


@dataclass
class CheckedBatch:
    """Every rule's outcome (the blocking ones and drift), the file's columns the spec does not
    name, its rows, and the typed batch as kept (``keep_batch``) if every blocking rule passed
    (else None)."""

    outcomes: dict[str, RuleOutcome]
    unnamed: str
    rows: int
    kept: dict | None

    def failed(self) -> list[RuleOutcome]:
        """The blocking rules that failed, as ``failed_rules`` says them."""
        return blocking_failures(o for name, o in self.outcomes.items() if name in BLOCKING_RULES)


def pass_key(
    sha256: str, spec: ProjectSpec, thresholds: ValidationThresholds, reference: ReferenceStats | None
) -> str:
    """What decides the pass: the file's bytes and the configuration the rules read (the chunk size
    does not: the pass is the same whatever it is)."""
    decided_by = [
        PASS_FORMAT,
        sha256,
        spec.model_dump(mode="json"),
        asdict(thresholds),
        asdict(reference) if reference is not None else None,
    ]
    return hashlib.sha256(json.dumps(decided_by, sort_keys=True, default=str).encode()).hexdigest()[:32]


def run_pass(
    source: str,
    local_path: str,
    spec: ProjectSpec,
    thresholds: ValidationThresholds,
    reference: ReferenceStats | None,
    typed_to: str,
    chunk_rows: int | None = DEFAULT_CHUNK_ROWS,
    salt: int = 0,
) -> tuple[dict[str, RuleOutcome], BatchTally]:
    """Every rule's outcome over the file at ``local_path``, its typed rows written to ``typed_to``
    (parquet) as each chunk is read; the file is never held whole. ``salt``: see ``row_keys``."""
    tally = BatchTally(source, spec, salt=salt)
    writer: pq.ParquetWriter | None = None
    try:
        for batch in read_batches(source, functools.partial(open, local_path, "rb"), chunk_rows):
            tally.add(batch)
            if tally.parsed:
                writer = _write_typed(writer, batch, spec, typed_to)
    finally:
        if writer is not None:
            writer.close()
    rules = {name: rule for name, (rule, _) in BLOCKING_RULES.items()} | {DRIFT_RULE: check_drift}
    return {name: rule(tally, spec, thresholds, reference) for name, rule in rules.items()}, tally


def _write_typed(
    writer: pq.ParquetWriter | None, batch: ParsedBatch, spec: ProjectSpec, typed_to: str
) -> pq.ParquetWriter:
    table = typed_table(typed_frame(batch, spec), spec)
    writer = writer or pq.ParquetWriter(typed_to, table.schema)
    writer.write_table(table)
    return writer


def checked_batch(
    store,
    source: str,
    landed: dict,
    spec: ProjectSpec,
    thresholds: ValidationThresholds,
    reference: ReferenceStats | None,
    chunk_rows: int | None = DEFAULT_CHUNK_ROWS,
    local_path: str | None = None,
) -> CheckedBatch:
    """The pass for the landed file (``landed``: its stored ``copy`` and ``sha256``) under this
    configuration: read if it was made, else made from the copy (or ``local_path``, a file of this
    machine with its bytes) and kept."""
    key = pass_key(landed["sha256"], spec, thresholds, reference)
    outcomes_path = f"{CHECKED_PREFIX}/{key}.json"
    if store.exists(outcomes_path):
        kept = store.read_json(outcomes_path)
        outcomes = {name: RuleOutcome(**outcome) for name, outcome in kept["outcomes"].items()}
        return CheckedBatch(outcomes, kept["unnamed"], kept["rows"], kept["kept"])
    if local_path is None:
        with store.local_file(landed["copy"]) as fetched:
            return checked_batch(store, source, landed, spec, thresholds, reference, chunk_rows, fetched)
    salt = int(landed["sha256"][:15], 16)  # two files' samples of the reference are unrelated
    with tempfile.TemporaryDirectory(prefix="mlops-pass-") as folder:
        typed_to = os.path.join(folder, "typed.parquet")
        outcomes, tally = run_pass(
            source, local_path, spec, thresholds, reference, typed_to, chunk_rows, salt
        )
        passed = all(outcomes[name].passed for name in BLOCKING_RULES)
        # Kept first: a pass whose outcomes are there has its batch too.
        batch = keep_batch(store, typed_to, tally.statistics()) if passed else None
    made = CheckedBatch(outcomes, unnamed_columns(tally), tally.rows, batch)
    kept = {
        "outcomes": {name: asdict(outcome) for name, outcome in outcomes.items()},
        "unnamed": made.unnamed,
        "rows": made.rows,
        "kept": batch,
    }
    store.write_bytes(outcomes_path, json.dumps(kept, default=_plain).encode())
    return made


def _plain(value: object) -> object:
    """numpy's numbers as Python's."""
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON")
