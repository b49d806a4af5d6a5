"""A training snapshot's rows, read from the files its manifest names: by whoever trains (train.py
in a local process or an Azure ML job, with fsspec) and the orchestrator's evaluation alike, so the
rows, their order and the holdout drawn from them are the same everywhere. Standalone (pandas and
the caller's opener): it travels with train.py.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Iterator
from typing import IO

import pandas as pd

MANIFEST_NAME = "manifest.json"
BATCH_COLUMN = "batch"  # each row's batch: the partition key it was validated under


class SnapshotError(ValueError):
    """A file of the snapshot is not the one its manifest recorded."""


def snapshot_frame(manifest: dict, open_file: Callable[[str], IO[bytes]]) -> pd.DataFrame:
    """The manifest's ``columns`` of each batch file in its order, each row tagged with its batch;
    every file checked against the digest the manifest recorded (a snapshot is immutable: a
    changed file is an error, not other training data)."""
    return pd.concat(snapshot_batches(manifest, open_file), ignore_index=True)


def snapshot_batches(manifest: dict, open_file: Callable[[str], IO[bytes]]) -> Iterator[pd.DataFrame]:
    """``snapshot_frame``'s batches one at a time (a reader that keeps a sample of each holds one)."""
    for entry in manifest["batches"]:
        with open_file(entry["uri"]) as handle:
            data = handle.read()
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise SnapshotError(
                f"{entry['uri']}: its bytes are not those training data {manifest.get('data_version', '')} "
                f"recorded (sha256 {entry['sha256'][:16]}…): the snapshot cannot be read as it was"
            )
        frame = pd.read_parquet(io.BytesIO(data), columns=manifest["columns"])
        yield frame.assign(**{BATCH_COLUMN: entry["batch"]})
