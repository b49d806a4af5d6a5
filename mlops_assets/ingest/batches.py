"""Typed batches kept by their content: ``batches/<sha256>.parquet``, and beside it
``<sha256>.json``, the batch's statistics (``BatchTally.statistics``: what the reference is merged
from). Written once and never changed, so a training snapshot's manifest can name them by digest
and be read again, the same, for as long as a model version points at it.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlops_assets.project.spec import NUMBER_KINDS, ProjectSpec
from mlops_assets.storage.fsstore import sha256_of

BATCHES_PREFIX = "batches"


def file_sha256(local_path: str) -> str:
    with open(local_path, "rb") as handle:
        return sha256_of(handle)


def typed_table(frame: pd.DataFrame, spec: ProjectSpec) -> pa.Table:
    """A typed frame (``typed_frame``) as arrow, by the spec's kinds, not by what a chunk holds (a
    chunk whose category column is all empty is still text): numbers and booleans as float64,
    categories as text."""
    schema = pa.schema(
        [
            (name, pa.float64() if column.kind in NUMBER_KINDS or column.kind == "boolean" else pa.string())
            for name, column in spec.columns.items()
            if name in frame.columns
        ]
    )
    return pa.Table.from_pandas(frame, schema=schema, preserve_index=False)


def first_rows(store, path: str, rows: int) -> pd.DataFrame:
    """The first ``rows`` rows of the parquet file at ``path`` in storage, read without the rest."""
    with store.fs.open(store.fs_path(path), "rb") as handle:
        first = next(pq.ParquetFile(handle).iter_batches(batch_size=rows), None)
        return first.to_pandas() if first is not None else pd.DataFrame()


def keep_batch(store, local_parquet: str, statistics: dict) -> dict:
    """The typed batch at ``local_parquet`` kept in storage by its digest (once: the same bytes are
    the same batch), with its statistics; what a manifest names it by."""
    sha256 = file_sha256(local_parquet)
    path, statistics_path = f"{BATCHES_PREFIX}/{sha256}.parquet", f"{BATCHES_PREFIX}/{sha256}.json"
    if not store.exists(statistics_path):  # written last: a batch whose statistics are there is whole
        store.put_file(local_parquet, path)
        store.write_json(statistics_path, statistics)
    return {
        "path": path,
        "sha256": sha256,
        "rows": statistics["rows"],
        "columns": pq.read_schema(local_parquet).names,
        "statistics": statistics_path,
    }
