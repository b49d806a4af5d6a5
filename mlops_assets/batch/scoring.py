"""Score one file in bulk, streamed: chunks in, predictions and refused rows out, memory bounded.

Plain functions over a file system (fsspec) and a loaded model; the asset and the AML job call
them. Every input row ends up in exactly one of two parquet files: the predictions (``row_id``,
``prediction``, ``model_version``) or the refused rows (``row_id``, ``reason``, the raw values).
Both are written under temporary names and moved into place only when complete, so a reader
never sees half a file.
"""

import contextlib
import posixpath
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mlops_assets.serving.artifact import MAX_ABS_VALUE

CHUNK_ROWS = 262_144
# pyarrow's pre-buffering keeps every column chunk it has read: 25 MB more per chunk here, 1.2 GB
# peak for a 10M-row file (measured). A plain buffered stream keeps memory flat.
PARQUET_READ = {"pre_buffer": False, "buffer_size": 8 << 20}
READABLE = (".csv", ".parquet")


class BatchInputError(ValueError):
    """A file that cannot be scored at all (format, missing columns); the message names it."""


@dataclass(frozen=True)
class BatchResult:
    rows: int
    scored: int
    refused: int
    output_path: str
    refused_path: str | None
    seconds: float
    reasons: dict[str, int]

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds else float("inf")

    def figures(self) -> dict[str, Any]:
        """What a scorer reports back, wherever it ran."""
        return {
            "rows": self.rows,
            "scored": self.scored,
            "refused": self.refused,
            "seconds": self.seconds,
            "reasons": self.reasons,
        }


def output_paths(input_path: str, input_prefix: str, output_prefix: str) -> tuple[str, str]:
    relative = posixpath.relpath(input_path, input_prefix)
    stem = relative.rsplit(".", 1)[0]
    return (
        posixpath.join(output_prefix, f"{stem}.parquet"),
        posixpath.join(output_prefix, f"{stem}.refused.parquet"),
    )


def read_chunks(fs: Any, path: str, chunk_rows: int = CHUNK_ROWS) -> Iterator[pa.RecordBatch]:
    if path.endswith(".parquet"):
        if _is_local(fs):  # pyarrow's own file reader: no Python file object in the loop
            yield from pq.ParquetFile(path, **PARQUET_READ).iter_batches(batch_size=chunk_rows)
            return
        with fs.open(path, "rb") as handle:
            yield from pq.ParquetFile(handle, **PARQUET_READ).iter_batches(batch_size=chunk_rows)
    elif path.endswith(".csv"):
        from pyarrow import csv

        with fs.open(path, "rb") as handle:
            # Every column as text: a stray word must refuse one row, not the whole file's type.
            columns = handle.readline().decode().strip().split(",")
            handle.seek(0)
            reader = csv.open_csv(
                handle,
                read_options=csv.ReadOptions(block_size=16 << 20),
                convert_options=csv.ConvertOptions(column_types=dict.fromkeys(columns, pa.string())),
            )
            yield from reader
    else:
        raise BatchInputError(f"{path}: only {' and '.join(READABLE)} files are scored")


def _is_local(fs: Any) -> bool:
    from fsspec.implementations.local import LocalFileSystem

    return isinstance(fs, LocalFileSystem)


def _read_ahead(chunks: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """The next chunk is read on a thread while this one is checked, scored and written (pyarrow
    decodes and numpy computes without the GIL): two chunks in memory at most."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="batch-read") as reader:
        ahead = reader.submit(next, chunks, None)
        while True:
            batch = ahead.result()
            if batch is None:
                return
            ahead = reader.submit(next, chunks, None)
            yield batch


def _sink(fs: Any, path: str) -> Any:
    """A writable stream: pyarrow's own file locally (no Python file object per page), else fsspec's."""
    if _is_local(fs):
        return pa.OSFile(path, "wb")
    return fs.open(path, "wb")


def _as_float(column: pa.Array) -> tuple[np.ndarray, np.ndarray | None]:
    """The column as float64 (NaN where a value is missing or not a number), and where that was
    so (None when nothing was)."""
    if pa.types.is_floating(column.type) or pa.types.is_integer(column.type):
        values = column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        return values, (column.is_null().to_numpy(zero_copy_only=False) if column.null_count else None)
    text = pc.utf8_trim_whitespace(column.cast(pa.string()))
    missing = pc.or_kleene(pc.is_null(text), pc.equal(text, "")).to_numpy(zero_copy_only=False)
    numeric = pc.match_substring_regex(text, r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$|^(?i:nan|[-+]?inf)$")
    numeric = pc.fill_null(numeric, False).to_numpy(zero_copy_only=False)
    values = np.full(len(column), np.nan)
    if numeric.any():
        values[numeric] = pc.cast(pc.filter(text, pa.array(numeric)), pa.float64()).to_numpy()
    return values, missing | ~numeric


def check_chunk(
    batch: pa.RecordBatch, features: tuple[str, ...]
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows as a float matrix, which rows pass, and each refused row's reason (the first rule broken).

    One vectorised pass per column; reasons are worked out only for the (rare) refused rows.
    """
    missing_columns = [f for f in features if f not in batch.schema.names]
    if missing_columns:
        raise BatchInputError(
            f"column(s) {', '.join(missing_columns)} missing (the model needs {', '.join(features)})"
        )
    rows = batch.num_rows
    matrix = np.empty((len(features), rows)).T  # column-major: each feature is written contiguously
    refused = np.zeros(rows, dtype=bool)
    broken: list[tuple[str, np.ndarray, np.ndarray | None, np.ndarray]] = []
    for index, name in enumerate(features):
        values, not_a_number = _as_float(batch.column(name))
        matrix[:, index] = values
        bad = ~(np.abs(values) <= MAX_ABS_VALUE)  # NaN fails the comparison: NaN and inf too
        if not_a_number is not None:
            bad |= not_a_number
        if bad.any():
            refused |= bad
            broken.append((name, bad, not_a_number, values))
    reasons = np.full(rows, None, dtype=object)
    for name, bad, not_a_number, values in broken:  # in feature order: the first rule broken wins
        for row in np.flatnonzero(bad):
            if reasons[row] is not None:
                continue
            if not_a_number is not None and not_a_number[row]:
                reasons[row] = f"{name}: missing or not a number"
            elif not np.isfinite(values[row]):
                reasons[row] = f"{name}: not a finite number"
            else:
                reasons[row] = f"{name}: beyond ±{MAX_ABS_VALUE:g}"
    return matrix, ~refused, reasons


OUTPUT_SCHEMA = pa.schema(
    [
        ("row_id", pa.int64()),
        ("prediction", pa.float64()),
        ("model_version", pa.dictionary(pa.int8(), pa.string())),
    ]
)


def score_file(
    fs: Any,
    input_path: str,
    output_path: str,
    refused_path: str,
    predict: Callable[[np.ndarray], np.ndarray],
    features: tuple[str, ...],
    model_version: str,
    chunk_rows: int = CHUNK_ROWS,
    progress: Callable[[int], None] | None = None,
) -> BatchResult:
    started = time.perf_counter()
    tag = uuid.uuid4().hex[:8]
    tmp_output = f"{output_path}.{tag}.tmp"
    tmp_refused = f"{refused_path}.{tag}.tmp"
    fs.makedirs(posixpath.dirname(output_path), exist_ok=True)
    versions = pa.array([model_version])  # the one dictionary entry every output row points at
    rows = scored = refused = 0
    reasons: Counter[str] = Counter()
    try:
        # Closed in reverse order of opening, each writer before its file, on every way out.
        with contextlib.ExitStack() as files:
            writer = files.enter_context(
                pq.ParquetWriter(files.enter_context(_sink(fs, tmp_output)), OUTPUT_SCHEMA)
            )
            refused_writer = None  # opened at the first refused row
            for batch in _read_ahead(read_chunks(fs, input_path, chunk_rows)):
                matrix, passed, why = check_chunk(batch, features)
                ids = np.arange(rows, rows + batch.num_rows, dtype=np.int64)
                if passed.all():
                    good_ids, good = ids, matrix
                else:
                    good_ids, good = ids[passed], matrix[passed]
                predictions = np.asarray(predict(good), dtype=np.float64) if len(good) else np.empty(0)
                finite = np.isfinite(predictions)
                if not finite.all():  # extreme (if finite) inputs can overflow a linear model
                    overflow = np.flatnonzero(passed)[~finite]
                    why[overflow] = "the values are too extreme to score (the prediction overflows)"
                    passed[overflow] = False
                    good_ids, predictions = good_ids[finite], predictions[finite]
                writer.write_batch(
                    pa.record_batch(
                        [
                            pa.array(good_ids),
                            pa.array(predictions),
                            pa.DictionaryArray.from_arrays(
                                pa.array(np.zeros(len(good_ids), np.int8)), versions
                            ),
                        ],
                        schema=OUTPUT_SCHEMA,
                    )
                )
                if not passed.all():
                    bad = ~passed
                    if refused_writer is None:
                        refused_writer = files.enter_context(
                            pq.ParquetWriter(
                                files.enter_context(_sink(fs, tmp_refused)), _refused_schema(features)
                            )
                        )
                    refused_writer.write_batch(
                        _refused_batch(batch, features, np.flatnonzero(bad), ids[bad], why[bad])
                    )
                    reasons.update(why[bad])
                    refused += int(bad.sum())
                rows += batch.num_rows
                scored += len(good_ids)
                if progress:
                    progress(rows)
        fs.mv(tmp_output, output_path)
        if refused:
            fs.mv(tmp_refused, refused_path)
        elif fs.exists(refused_path):  # a rescored file that is clean now: no stale refusals
            fs.rm(refused_path)
    except BaseException:
        for leftover in (tmp_output, tmp_refused):
            if fs.exists(leftover):
                fs.rm(leftover)
        raise
    return BatchResult(
        rows=rows,
        scored=scored,
        refused=refused,
        output_path=output_path,
        refused_path=refused_path if refused else None,
        seconds=time.perf_counter() - started,
        reasons=dict(reasons),
    )


def _refused_schema(features: tuple[str, ...]) -> pa.Schema:
    return pa.schema([("row_id", pa.int64()), ("reason", pa.string())] + [(f, pa.string()) for f in features])


def _refused_batch(
    batch: pa.RecordBatch, features: tuple[str, ...], positions: np.ndarray, ids: np.ndarray, why: np.ndarray
) -> pa.RecordBatch:
    """The refused rows as they came (values as text), each with its row id and reason."""
    take = pa.array(positions, pa.int64())
    columns = [pa.array(ids, pa.int64()), pa.array(why.tolist(), pa.string())]
    columns += [batch.column(name).take(take).cast(pa.string()) for name in features]
    return pa.record_batch(columns, schema=_refused_schema(features))
