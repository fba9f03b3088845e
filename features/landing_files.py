"""Reading one landing file: CSV (every column as a string) or Parquet (typed).

A file that cannot be read at all raises UnreadableFile, which ingest turns into one quarantine
row; a CSV line with the wrong number of fields is skipped and reported, so the good rows around
it are kept.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq


class UnreadableFile(Exception):
    """A landing file that cannot be read at all; ``rows`` estimates how many rows it held.

    ``rows_known`` is false when nothing in the file tells its size (a Parquet file cut before its
    footer): ingest then estimates it from the other files of its kind.
    """

    def __init__(
        self, reason: str, detail: str, rows: int = 1, column: str | None = None, rows_known: bool = True
    ) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.rows = max(int(rows), 1)
        self.column = column
        self.rows_known = rows_known


# A column name that can become part of a feature name and of SQL text without quoting surprises
# (compared after stripping and lower-casing, so upper-case letters pass too).
_COLUMN_NAME = re.compile(r"[a-z0-9_]{1,64}")


@dataclass(frozen=True)
class BadLine:
    """A CSV line the parser could not split into the header's columns."""

    row_number: int  # 1-based data row (physical line - 1)
    text: str
    expected: int
    actual: int


def read_landing_file(
    path: Path, dictionary: tuple[str, ...] = ()
) -> tuple[pa.Table, list[BadLine], np.ndarray | None]:
    """Read one CSV (every column as string) or Parquet file; raise UnreadableFile on failure.

    Returns (table, bad lines, row numbers of the table's rows or None for 1..n). A CSV line with
    the wrong number of fields is skipped and reported, not fatal. Column names are stripped and
    lower-cased. A UTF-8 BOM is accepted. ``dictionary`` names (lower-case) low-cardinality string
    columns that a Parquet file returns dictionary-encoded, as stored: no string is materialised
    per row, and the validators and the lake writer work on the dictionary.
    """
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        table, bad, row_numbers = _read_parquet(path, dictionary), [], None
    else:
        table, bad, row_numbers = _read_csv(path)
    names = [str(c).strip().lower() for c in table.column_names]
    return table.rename_columns(names), bad, row_numbers


def checked_column_names(table: pa.Table, path: Path, free_names: bool) -> tuple[pa.Table, list[str]]:
    """Refuse a file whose (normalised) column names repeat; with ``free_names`` (persons, whose
    every column becomes an attribute) drop the columns whose names are not ``[a-z0-9_]{1,64}``.

    Returns (table, dropped names). Raises UnreadableFile ``duplicate_column``: which of two
    columns ``outcome`` and ``Outcome`` holds the outcome is a guess ingest does not make.
    """
    names = table.column_names
    seen: set[str] = set()
    repeated = sorted({n for n in names if n in seen or seen.add(n)})
    if repeated:
        listed = ", ".join(repr(n) for n in repeated)
        raise UnreadableFile(
            "duplicate_column",
            f"{path}: column(s) {listed} appear more than once (names compare stripped and lower-cased)",
            table.num_rows,
            column=", ".join(repeated),
        )
    if not free_names:
        return table, []
    bad = [n for n in names if not _COLUMN_NAME.fullmatch(n)]
    return (table.drop_columns(bad) if bad else table), bad


def _read_parquet(path: Path, dictionary: tuple[str, ...]) -> pa.Table:
    try:
        encoded = []
        if dictionary:
            schema = pq.read_schema(path)
            encoded = [
                f.name
                for f in schema
                if str(f.name).strip().lower() in dictionary
                and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
            ]
        return pq.read_table(path, read_dictionary=encoded or None)
    except Exception as exc:  # noqa: BLE001 - any Arrow/OS error means the file is unreadable
        rows, known = 1, False
        try:
            rows, known = pq.ParquetFile(path).metadata.num_rows, True
        except Exception:  # noqa: BLE001 - no footer: the size is unknown
            pass
        raise UnreadableFile(
            "unreadable_file", f"{path}: {type(exc).__name__}: {_one_line(exc)}", rows, rows_known=known
        ) from None


def _read_csv(path: Path) -> tuple[pa.Table, list[BadLine], np.ndarray | None]:
    header = _csv_header(path)
    convert = pacsv.ConvertOptions(
        column_types={name: pa.string() for name in header},
        strings_can_be_null=True,
        null_values=[""],
        quoted_strings_can_be_null=False,
    )
    try:  # fast path: multi-threaded, no embedded newlines, every line well-formed
        return pacsv.read_csv(path, convert_options=convert), [], None
    except pa.ArrowInvalid as exc:
        if "UTF8" in str(exc) or "UTF-8" in str(exc):
            raise UnreadableFile(
                "unreadable_file", f"{path}: {type(exc).__name__}: {_one_line(exc)}", _count_lines(path)
            ) from None
        return _read_csv_skipping_bad_lines(path, convert)
    except Exception as exc:  # noqa: BLE001
        raise UnreadableFile(
            "unreadable_file", f"{path}: {type(exc).__name__}: {_one_line(exc)}", _count_lines(path)
        ) from None


def _read_csv_skipping_bad_lines(
    path: Path, convert: pacsv.ConvertOptions
) -> tuple[pa.Table, list[BadLine], np.ndarray | None]:
    """The slow path: single-threaded so that every skipped line carries its line number."""
    bad: list[BadLine] = []

    def skip(row) -> str:  # called once per malformed line only
        bad.append(BadLine(int(row.number or 0) - 1, row.text, row.expected_columns, row.actual_columns))
        return "skip"

    try:
        table = pacsv.read_csv(
            path,
            # one block as large as the file (capped): a single huge value (a 10 MB
            # string) must not make the reader give up on every good row around it
            read_options=pacsv.ReadOptions(
                use_threads=False, block_size=max(1 << 24, min(path.stat().st_size + 1, 1 << 30))
            ),
            parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=skip),
            convert_options=convert,
        )
    except Exception as exc:  # noqa: BLE001
        raise UnreadableFile(
            "unreadable_file", f"{path}: {type(exc).__name__}: {_one_line(exc)}", _count_lines(path)
        ) from None
    row_numbers = None
    if bad:
        skipped = np.array([b.row_number for b in bad])
        row_numbers = np.setdiff1d(np.arange(1, table.num_rows + len(bad) + 1), skipped)[: table.num_rows]
    return table, bad, row_numbers


def _count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            n += chunk.count(b"\n")
    return max(n - 1, 1)


def _csv_header(path: Path) -> list[str]:
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # a multi-byte character cut at the end of the chunk is fine; anything earlier is not
        if exc.start < len(head) - 4:
            raise UnreadableFile(
                "unreadable_file", f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})", _count_lines(path)
            ) from None
        text = head[: exc.start].decode("utf-8-sig")
    first = next(csv.reader(io.StringIO(text)), None)
    if not first:
        raise UnreadableFile("unreadable_file", f"{path}: empty file, no header row")
    return first


def _one_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]
