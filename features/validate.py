"""Row-level rejects, the quarantine tables, and the column checks every kind's rules share.

A row is rejected with its first failing (reason, column); rejected rows go to
``quarantine/<kind>/date=D/`` with their original values as strings, ``_source_file``,
``_row_number`` (1-based data row), ``_column``, ``_reason`` and ``_error`` (file-level errors only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from contactrank.features.arrow_columns import as_string, map_values, string_checks, to_mask, trim, trim_blank
from contactrank.features.landing_files import BadLine
from contactrank.features.parsers import parse_timestamps
from contactrank.features.schema import QUARANTINE_META

# --- row-level bookkeeping -------------------------------------------------------------------------


@dataclass
class Rejects:
    """The first failing (reason, column) of every row; rows without one are kept.

    Reasons are stored as small integer codes so a clean million-row file costs one bool array.
    """

    n: int

    def __post_init__(self) -> None:
        self.bad = np.zeros(self.n, bool)
        self._code = np.zeros(self.n, np.int16)  # index into self._labels; 0 = none
        self._labels: list[tuple[str | None, str | None]] = [(None, None)]

    def fail(self, mask: np.ndarray | pa.Array | pa.ChunkedArray, reason: str, column: str | None) -> None:
        m = to_mask(mask) & ~self.bad
        if m.any():
            self.bad |= m
            self._labels.append((reason, column))
            self._code[m] = len(self._labels) - 1

    @property
    def ok(self) -> np.ndarray:
        return ~self.bad

    def reason(self, rows: np.ndarray) -> pa.Array:
        """The reasons of the given row indices."""
        return pa.array([r for r, _ in self._labels], pa.string()).take(pa.array(self._code[rows]))

    def column(self, rows: np.ndarray) -> pa.Array:
        """The failing columns of the given row indices."""
        return pa.array([c for _, c in self._labels], pa.string()).take(pa.array(self._code[rows]))

    @classmethod
    def concat(cls, parts: list[Rejects]) -> Rejects:
        """The rejects of consecutive row ranges, as one (row indices shift, labels merge)."""
        out = cls(sum(p.n for p in parts))
        out.bad = np.concatenate([p.bad for p in parts]) if parts else out.bad
        index = {label: i for i, label in enumerate(out._labels)}
        codes = []
        for p in parts:
            remap = np.array([index.setdefault(label, len(index)) for label in p._labels], np.int16)
            codes.append(remap[p._code])
        out._labels = list(index)
        if codes:
            out._code = np.concatenate(codes)
        return out


# --- quarantine tables -------------------------------------------------------------------------------


def file_quarantine_row(path: Path, reason: str, error: str, column: str | None) -> pa.Table:
    """The one quarantine row of a file that could not be read (or lacks a required column)."""
    return pa.table(
        {
            "_source_file": pa.array([str(path)]),
            "_row_number": pa.array([None], pa.int64()),
            "_column": pa.array([column], pa.string()),
            "_reason": pa.array([reason]),
            "_error": pa.array([error]),
        }
    )


def bad_lines_quarantine(lines: list[BadLine], path: Path) -> pa.Table:
    """One quarantine row per CSV line with the wrong number of fields."""
    return pa.table(
        {
            "_source_file": pa.array([str(path)] * len(lines), pa.string()),
            "_row_number": pa.array([b.row_number for b in lines], pa.int64()),
            "_column": pa.nulls(len(lines), pa.string()),
            "_reason": pa.array(["bad_row_shape"] * len(lines), pa.string()),
            "_error": pa.array(
                [f"expected {b.expected} fields, got {b.actual}: {b.text[:200]}" for b in lines]
            ),
        }
    )


def row_quarantine(
    table: pa.Table, rejects: Rejects, bad: np.ndarray, path: Path, row_numbers: np.ndarray | None = None
) -> pa.Table:
    """The rejected rows of one file with their original values as strings and their reasons."""
    rows = table.filter(pa.array(rejects.bad))  # same order as ``bad``; filter works per chunk
    cols = {name: as_string(rows.column(name)) for name in rows.column_names if not name.startswith("_")}
    cols["_source_file"] = pa.array([str(path)] * bad.size, pa.string())
    cols["_row_number"] = pa.array(bad + 1 if row_numbers is None else row_numbers[bad], pa.int64())
    cols["_column"] = rejects.column(bad)
    cols["_reason"] = rejects.reason(bad)
    cols["_error"] = pa.nulls(bad.size, pa.string())
    return pa.table(cols)


def concat_quarantine(parts: list[pa.Table]) -> pa.Table:
    """The quarantine of one kind and date: the data columns of every file, then the metadata."""
    if not parts:
        return pa.table(
            {
                "_source_file": pa.array([], pa.string()),
                "_row_number": pa.array([], pa.int64()),
                "_column": pa.array([], pa.string()),
                "_reason": pa.array([], pa.string()),
                "_error": pa.array([], pa.string()),
            }
        )
    table = pa.concat_tables(parts, promote_options="default")
    meta = [*QUARANTINE_META, "_error"]
    return table.select([c for c in table.column_names if c not in meta] + meta)


# --- column checks shared by the kinds' rules -------------------------------------------------------


def column_if_present(table: pa.Table, name: str) -> pa.ChunkedArray | None:
    """The column ``name``, or None when the file does not have it (optional columns)."""
    if name not in table.column_names:
        return None
    return table.column(name)


def check_strings(table: pa.Table, names: list[str], rejects: Rejects, max_len: int) -> None:
    """Reject values with a NUL byte (``nul_byte``) or longer than ``max_len`` (``too_long``)."""
    for name in names:
        col = column_if_present(table, name)
        if col is None:
            continue
        t = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
        if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
            continue  # numbers, bools and timestamps cannot hold a NUL or a long text
        nul, long = string_checks(col, max_len)
        rejects.fail(nul, "nul_byte", name)
        rejects.fail(long, "too_long", name)


def keep_valid(table: pa.Table, rejects: Rejects) -> pa.Table:
    """The rows without a reject (no copy when every row is good)."""
    return table.filter(pa.array(rejects.ok)) if rejects.bad.any() else table


def required_id(table: pa.Table, name: str, rejects: Rejects) -> pa.Array:
    """The trimmed ids of column ``name``; a blank one is rejected as ``empty_value``."""
    col, empty = trim_blank(as_string(column_if_present(table, name)))
    rejects.fail(empty, "empty_value", name)
    return col


def optional_string(table: pa.Table, name: str, n: int, lower: bool = False) -> pa.Array:
    """The trimmed (optionally lower-cased) values of column ``name``; blanks and a missing column
    are null."""
    col = column_if_present(table, name)
    if col is None:
        return pa.nulls(n, pa.string())

    def clean(s: pa.Array) -> pa.Array:
        s = trim(s)
        if lower:
            s = pc.utf8_lower(s)
        return pc.if_else(pc.equal(s, ""), pa.scalar(None, pa.string()), s)

    return map_values(col, clean)


def checked_timestamp(
    table: pa.Table, name: str, local_tz: str, rejects: Rejects, required: bool
) -> tuple[pa.Array, pa.Array]:
    """(UTC timestamps, local hours) of column ``name``; unparseable values are ``bad_timestamp``,
    and blanks ``empty_value`` when ``required``."""
    n = table.num_rows
    col = column_if_present(table, name)
    if col is None:
        return pa.nulls(n, pa.timestamp("us", tz="UTC")), pa.nulls(n, pa.int8())
    ts, hour, ok, present = parse_timestamps(col, local_tz)
    if required:
        rejects.fail(~present, "empty_value", name)
    rejects.fail(~ok, "bad_timestamp", name)
    return ts, hour
