"""Score one file in bulk, streamed: chunks in, predictions and refused rows out, memory bounded.

Plain functions over a file system (fsspec) and a loaded model; the asset and the AML job call
them. Every input row ends up in exactly one of two parquet files: the predictions (``row_id``,
``prediction``, for a classifier with ``predict_proba`` a ``probability_<label>`` column per
class, ``model_version``) or the refused rows (``row_id``, ``reason``, the raw values). Each
column is read by the model project's spec: numbers, booleans, categories, nulls where it allows
them, its ranges and categories refused or, where it says ``flag``, scored and counted. Both files
are written under temporary names and moved into place only when complete, so a reader never sees
half a file.
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

from mlops_assets.model.loaded import LoadedModel, classify, json_key
from mlops_assets.model.rows import ServingSpec
from mlops_assets.project.rules import (
    FALSE_TOKENS,
    MAX_ABS_VALUE,
    NULL_TOKENS,
    NUMBER_TEXT,
    TRUE_TOKENS,
    Broken,
    Feature,
)

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
    flagged: int = 0  # values outside the spec's range or categories, scored under its "flag" policy

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
            "flagged": self.flagged,
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


_NUMBER_NULLS = pa.array(sorted(NULL_TOKENS - {"nan"}))  # "nan" reads as NaN: not finite, or null if allowed


def _lowered(column: pa.Array) -> pa.Array:
    return pc.utf8_lower(pc.utf8_trim_whitespace(column.cast(pa.string())))


def _is_typed(column: pa.Array) -> bool:
    return (
        pa.types.is_floating(column.type)
        or pa.types.is_integer(column.type)
        or pa.types.is_boolean(column.type)
    )


def _as_float(column: pa.Array) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """The column as float64 (NaN where a value is missing or not a number), where it was missing
    (null, empty, "n/a"...) and where it was text that is not a number (None when nowhere)."""
    if _is_typed(column):
        values = column.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        return values, (column.is_null().to_numpy(zero_copy_only=False) if column.null_count else None), None
    return _numbers(_lowered(column))


def _numbers(text: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Lower-cased, trimmed text read as numbers by the rule table's pattern."""
    missing = pc.fill_null(pc.is_in(text, _NUMBER_NULLS), True).to_numpy(zero_copy_only=False)
    numeric = pc.match_substring_regex(text, f"^(?:{NUMBER_TEXT}|nan)$")
    numeric = pc.fill_null(numeric, False).to_numpy(zero_copy_only=False)
    values = np.full(len(text), np.nan)
    if numeric.any():
        values[numeric] = pc.cast(pc.filter(text, pa.array(numeric)), pa.float64()).to_numpy()
    return values, missing, ~numeric & ~missing


def _as_boolean(column: pa.Array) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Truth tokens as 1.0/0.0, numbers as themselves (the rule table takes only 1 and 0)."""
    if _is_typed(column):
        return _as_float(column)
    text = _lowered(column)
    values, _, wrong = _numbers(text)
    missing = pc.fill_null(pc.is_in(text, pa.array(sorted(NULL_TOKENS))), True).to_numpy(zero_copy_only=False)
    true = pc.fill_null(pc.is_in(text, pa.array(sorted(TRUE_TOKENS))), False).to_numpy(zero_copy_only=False)
    false = pc.fill_null(pc.is_in(text, pa.array(sorted(FALSE_TOKENS))), False).to_numpy(zero_copy_only=False)
    values = np.where(true, 1.0, np.where(false, 0.0, np.where(missing, np.nan, values)))
    return values, missing, wrong & ~(true | false)


def _as_text(column: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    text = pc.utf8_trim_whitespace(column.cast(pa.string()))
    lowered = pc.utf8_lower(text)
    missing = pc.fill_null(pc.is_in(lowered, pa.array(sorted(NULL_TOKENS))), True).to_numpy(
        zero_copy_only=False
    )
    return text.to_numpy(zero_copy_only=False).astype(object), missing


@dataclass
class _Broken:
    """One feature's refused rows and why, worked out only for those rows."""

    feature: Feature
    bad: np.ndarray
    reason: Callable[[int], str]


def _check_column(
    feature: Feature, column: pa.Array
) -> tuple[Any, np.ndarray, np.ndarray, Callable[[int], str]]:
    """The column's values as the model takes them, its refused rows, its flagged rows, and the
    reason for a refused row: the rule table (``project/rules.py``) judges each value."""
    name = feature.name
    if feature.kind == "categorical":
        values, missing = _as_text(column)
        codes = feature.judge_categories(values, missing)
        values = np.where(missing, None, values)
    else:
        values, missing, wrong = (_as_boolean if feature.kind == "boolean" else _as_float)(column)
        missing = np.zeros(len(values), bool) if missing is None else missing
        wrong = np.zeros(len(values), bool) if wrong is None else wrong
        codes = feature.judge_numbers(values, missing, wrong)
    refused = feature.refuses(codes)
    flagged = (codes == Broken.OUTSIDE) & feature.flag

    def reason(row: int) -> str:
        broken = codes[row]
        if feature.kind == "categorical":
            if broken == Broken.NULL:
                return f"{name}: missing"
            return f"{name}: {values[row]!r} not one of {', '.join(feature.categories)}"
        if feature.kind == "boolean" and broken in (Broken.NULL, Broken.NOT_OF_KIND):
            return f"{name}: {'missing' if missing[row] else 'not true or false'}"
        if broken in (Broken.NULL, Broken.NOT_OF_KIND):
            return f"{name}: missing or not a number"
        if broken == Broken.NOT_FINITE:
            return f"{name}: not a finite number"
        if broken == Broken.BEYOND:
            return f"{name}: beyond ±{MAX_ABS_VALUE:g}"
        if broken == Broken.NOT_WHOLE:
            return f"{name}: {values[row]:g} not a whole number"
        return f"{name}: {values[row]:g} outside [{feature.low:g}, {feature.high:g}]"

    return values, refused, flagged, reason


def check_chunk(batch: pa.RecordBatch, spec: ServingSpec) -> tuple[Any, np.ndarray, np.ndarray, int]:
    """The rows as the model takes them (a float matrix when every feature is a number, else a
    named frame), which rows pass, each refused row's reason (the first rule broken, in feature
    order) and how many values were flagged. One vectorised pass per column."""
    missing_columns = [f for f in spec.names if f not in batch.schema.names]
    if missing_columns:
        raise BatchInputError(
            f"column(s) {', '.join(missing_columns)} missing (the model needs {', '.join(spec.names)})"
        )
    rows = batch.num_rows
    matrix = np.empty((len(spec.features), rows)).T if spec.all_numbers else None
    columns: dict[str, Any] = {}
    refused = np.zeros(rows, dtype=bool)
    flagged = 0
    broken: list[_Broken] = []
    for index, feature in enumerate(spec.features):
        values, bad, flags, reason = _check_column(feature, batch.column(feature.name))
        if matrix is not None:
            matrix[:, index] = values
        else:
            columns[feature.name] = values
        flagged += int((flags & ~bad).sum())
        if bad.any():
            refused |= bad
            broken.append(_Broken(feature, bad, reason))
    reasons = np.full(rows, None, dtype=object)
    for found in broken:  # in feature order: the first rule broken wins
        for row in np.flatnonzero(found.bad):
            if reasons[row] is None:
                reasons[row] = found.reason(row)
    if matrix is not None:
        return matrix, ~refused, reasons, flagged
    return spec.frame([columns[f.name] for f in spec.features]), ~refused, reasons, flagged


def output_schema(model: LoadedModel) -> pa.Schema:
    """row_id, the prediction (a regressor's number, a classifier's label as the target's kind),
    a classifier's probability per class, the model version."""
    spec = model.serving_spec
    label = {"boolean": pa.bool_(), "integer": pa.int64(), "categorical": pa.string()}
    fields = [
        ("row_id", pa.int64()),
        (
            "prediction",
            pa.float64() if spec.task == "regression" else label.get(spec.target_kind, pa.float64()),
        ),
    ]
    fields += [(f"probability_{key}", pa.float64()) for key in class_keys(model)]
    return pa.schema([*fields, ("model_version", pa.dictionary(pa.int8(), pa.string()))])


def class_keys(model: LoadedModel) -> list[str]:
    if model.serving_spec.task == "regression" or not model.classes:
        return []
    return [
        json_key(_typed_labels(model, np.asarray(model.classes)).tolist()[i])
        for i in range(len(model.classes))
    ]


def _typed_labels(model: LoadedModel, labels: np.ndarray) -> np.ndarray:
    kind = model.serving_spec.target_kind
    if kind == "boolean":
        return labels.astype(bool)
    if kind == "integer":
        return labels.astype(np.int64)
    if kind == "categorical":
        return labels.astype(str).astype(object)
    return labels.astype(np.float64)


def _predict(model: LoadedModel, rows: Any) -> tuple[np.ndarray, np.ndarray | None]:
    """Predictions (a classifier's as its labels) and, for a classifier that has them, the class
    probabilities; a regressor's overflowing prediction is NaN here (its row is then refused)."""
    if model.serving_spec.task == "regression":
        with np.errstate(over="ignore", invalid="ignore"):
            return np.asarray(model.predict(rows), dtype=np.float64), None
    labels, probabilities = classify(model, rows)
    return _typed_labels(model, labels), probabilities


def score_file(
    fs: Any,
    input_path: str,
    output_path: str,
    refused_path: str,
    model: LoadedModel,
    chunk_rows: int = CHUNK_ROWS,
    progress: Callable[[int], None] | None = None,
) -> BatchResult:
    started = time.perf_counter()
    tag = uuid.uuid4().hex[:8]
    tmp_output = f"{output_path}.{tag}.tmp"
    tmp_refused = f"{refused_path}.{tag}.tmp"
    fs.makedirs(posixpath.dirname(output_path), exist_ok=True)
    spec, features, schema = model.serving_spec, model.features, output_schema(model)
    n_classes = len(class_keys(model))
    versions = pa.array([model.version])  # the one dictionary entry every output row points at
    rows = scored = refused = flagged = 0
    reasons: Counter[str] = Counter()
    try:
        # Closed in reverse order of opening, each writer before its file, on every way out.
        with contextlib.ExitStack() as files:
            writer = files.enter_context(pq.ParquetWriter(files.enter_context(_sink(fs, tmp_output)), schema))
            refused_writer = None  # opened at the first refused row
            for batch in _read_ahead(read_chunks(fs, input_path, chunk_rows)):
                values, passed, why, flags = check_chunk(batch, spec)
                flagged += flags
                ids = np.arange(rows, rows + batch.num_rows, dtype=np.int64)
                if passed.all():
                    good_ids, good = ids, values
                else:
                    good_ids = ids[passed]
                    good = values[passed] if isinstance(values, np.ndarray) else values.loc[passed]
                predictions, probabilities = _predict(model, good) if len(good_ids) else (np.empty(0), None)
                if spec.task == "regression":
                    finite = np.isfinite(predictions)
                    if not finite.all():  # extreme (if finite) inputs can overflow a linear model
                        overflow = np.flatnonzero(passed)[~finite]
                        why[overflow] = "the values are too extreme to score (the prediction overflows)"
                        passed[overflow] = False
                        good_ids, predictions = good_ids[finite], predictions[finite]
                columns = [pa.array(good_ids), pa.array(predictions, type=schema.field("prediction").type)]
                for index in range(n_classes):
                    columns.append(
                        pa.array(probabilities[:, index] if probabilities is not None else np.empty(0))
                    )
                columns.append(
                    pa.DictionaryArray.from_arrays(pa.array(np.zeros(len(good_ids), np.int8)), versions)
                )
                writer.write_batch(pa.record_batch(columns, schema=schema))
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
        flagged=flagged,
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
