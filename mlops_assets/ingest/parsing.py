"""A landed file read as text cells, in chunks of rows, and each column typed by the rule table.

What decides whether the file is a CSV at all (its bytes, its header, its last line) is read from
the bytes as they stream past (:class:`ByteChecks`), so a file of any size is judged in the memory
of one block; its rows are then read ``chunk_rows`` at a time (:func:`read_batches`), each chunk a
:class:`ParsedBatch` whose index is the row's place in the whole file.

Written here rather than with pandera: the cells stay text until each rule has said what is wrong
with them (a pandera coercion failure loses the original cell), and the header is read raw first.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from mlops_assets.project.rules import FALSE_TOKENS, NULL_TOKENS, NUMBER_TEXT, TRUE_TOKENS, Broken
from mlops_assets.project.spec import ColumnSpec, ProjectSpec

MAX_HEADER_CHARS = 1 << 20  # a header line longer than this is not a CSV header
# What the schema check reports: a value that is not of its column's kind at all.
NOT_OF_KIND = (Broken.NOT_OF_KIND, Broken.NOT_FINITE, Broken.NOT_WHOLE)


@dataclass(frozen=True)
class ParsedBatch:
    """Rows of a landed file read as text cells (all of them, or one chunk: the index is each
    row's place in the file); ``error`` says why the file could not be read as CSV."""

    source: str
    cells: pd.DataFrame | None
    error: str | None = None
    _columns: dict = field(default_factory=dict, compare=False, repr=False)  # typed once: see typed()

    def typed(self, name: str, column: ColumnSpec) -> tuple[pd.Series, pd.Series, np.ndarray]:
        """``_typed`` of the column: read once per batch, then shared by every rule and the typed
        frame (a step that checks all the rules and types the batch reads each column once, not
        five times)."""
        key = (name, column.model_dump_json())
        if key not in self._columns:
            assert self.cells is not None
            self._columns[key] = _typed(self.cells[name], name, column)
        return self._columns[key]


class ByteChecks:
    """What a file's bytes say before any row is read, fed block by block: NUL bytes (binary
    content), UTF-8, whether there is anything but blanks, a header that repeats a column, and a
    last line without its line break."""

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self.size = 0
        self._binary = False
        self._undecodable: int | None = None
        self._blank = True
        self._header = ""
        self._header_done = False
        self._last = ""

    def feed(self, block: bytes) -> None:
        start, self.size = self.size, self.size + len(block)
        self._binary = self._binary or b"\x00" in block
        if self._binary or self._undecodable is not None or not block:
            return
        pending = len(self._decoder.getstate()[0])
        try:
            text = self._decoder.decode(block)
        except UnicodeDecodeError as exc:
            self._undecodable = start - pending + exc.start
            return
        if text:
            self._blank = self._blank and not text.strip()
            self._last = text[-1]
        if not self._header_done:
            self._header += text
            line_end = min(
                (i for i in (self._header.find("\n"), self._header.find("\r")) if i >= 0), default=-1
            )
            if line_end >= 0 or len(self._header) > MAX_HEADER_CHARS:
                self._header_done = True
                self._header = self._header[: line_end if line_end >= 0 else MAX_HEADER_CHARS]

    def error(self) -> str | None:
        """Why these bytes are not a CSV file with a header (the first reason), or None."""
        if self._binary:
            return "binary content, not a CSV file"
        if self._undecodable is not None:
            return f"not UTF-8 text at byte {self._undecodable}"
        try:
            self._decoder.decode(b"", final=True)
        except UnicodeDecodeError:
            return f"not UTF-8 text at byte {self.size - len(self._decoder.getstate()[0])}"
        if self._blank:
            return "empty file"
        repeated = repeated_columns(self._header)
        if repeated:
            return f"column names repeated in the header: {', '.join(repeated)}"
        if self._last not in ("\n", "\r"):
            # A CSV writer ends every row with a line break: without one the last value may be cut
            # (a copy or upload stopped part-way) and still read as a plausible number.
            return "the last line has no line break: the file may be cut short"
        return None


def repeated_columns(header_line: str) -> list[str]:
    """Header names given more than once, exactly or once trimmed: read from the raw header, since
    pandas would rename the second ``s6`` to ``s6.1`` and the file would pass without it."""
    header = next(csv.reader(io.StringIO(header_line)), [])
    counts = Counter(name.strip() for name in header)
    return [f"{name!r} ({count} times)" for name, count in counts.items() if count > 1]


def read_batches(
    source: str, open_file: Callable[[], IO[bytes]], chunk_rows: int | None
) -> Iterator[ParsedBatch]:
    """The file's rows, ``chunk_rows`` at a time (all at once for None), as text cells. Its bytes
    are judged first (:class:`ByteChecks`, one streamed read); a file that is not a CSV, or a row
    that breaks the format in any chunk, ends the batches with one that carries the ``error``."""
    checks = ByteChecks()
    with open_file() as handle:
        for block in iter(lambda: handle.read(4 << 20), b""):
            checks.feed(block)
    if (error := checks.error()) is not None:
        yield ParsedBatch(source, None, error)
        return
    rows = 0
    try:
        with open_file() as handle:
            reader = pd.read_csv(
                handle, dtype=str, keep_default_na=False, encoding="utf-8-sig", chunksize=chunk_rows or None
            )
            chunks = reader if chunk_rows else [reader]
            for cells in chunks:
                cells.columns = [str(c).strip() for c in cells.columns]
                if cells.empty:
                    continue
                rows += len(cells)
                yield ParsedBatch(source, cells)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        yield ParsedBatch(source, None, f"not a well-formed CSV ({str(exc).strip()})")
        return
    if rows == 0:
        yield ParsedBatch(source, None, "no data rows under the header")


def parse_batch(source: str, raw: bytes) -> ParsedBatch:
    """``raw`` read whole as a CSV with a header; every cell stays text so no value is lost yet."""
    batches = list(read_batches(source, lambda: io.BytesIO(raw), None))
    return next((b for b in batches if b.error), batches[0])


def typed_frame(batch: ParsedBatch, spec: ProjectSpec) -> pd.DataFrame:
    """The spec's columns that the batch has, typed by kind (see ``_typed``); bad cells and null
    tokens become NaN."""
    assert batch.cells is not None
    return pd.DataFrame(
        {name: batch.typed(name, column)[0] for name, column in spec.columns.items() if name in batch.cells}
    )


def _typed(cells: pd.Series, name: str, column: ColumnSpec) -> tuple[pd.Series, pd.Series, np.ndarray]:
    """Values of the column's kind, a mask of null cells, and what the rule table
    (``project/rules.py``) finds wrong with each value (a ``Broken`` code per row).

    numeric, integer and boolean become float64 (booleans 1.0/0.0; NaN where a cell is not of the
    kind); categorical stays text.
    """
    stripped = cells.str.strip()
    lowered = stripped.str.lower()
    is_null = lowered.isin(NULL_TOKENS)
    feature = column.rules(name)
    if column.kind == "categorical":
        values = stripped.where(~is_null)
        codes = feature.judge_categories(values.to_numpy(dtype=object), is_null.to_numpy())
        return values, is_null, codes
    numbers = lowered.str.fullmatch(NUMBER_TEXT).fillna(False).to_numpy(dtype=bool) & ~is_null.to_numpy()
    values = np.full(len(cells), np.nan)
    if numbers.any():
        values[numbers] = _numbers(lowered if numbers.all() else lowered[numbers])
    readable = numbers
    if column.kind == "boolean":
        true, false = lowered.isin(TRUE_TOKENS).to_numpy(), lowered.isin(FALSE_TOKENS).to_numpy()
        values[true], values[false] = 1.0, 0.0
        readable = numbers | true | false
    codes = feature.judge_numbers(values, is_null.to_numpy(), ~readable & ~is_null.to_numpy())
    typed = pd.Series(values, index=cells.index)
    return typed.where(~np.isin(codes, NOT_OF_KIND)), is_null, codes


def _numbers(text: pd.Series) -> np.ndarray:
    """Cells that all match ``NUMBER_TEXT``, as float64: cast by pyarrow (a tenth of pandas'
    to_numeric on a million cells), pandas for what pyarrow's parser does not take."""
    try:
        return pc.cast(pa.array(text), pa.float64()).to_numpy(zero_copy_only=False)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pd.to_numeric(text).to_numpy(dtype=np.float64)
