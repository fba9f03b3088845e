"""The rules of the persons landing files: one row per person, attributes typed per column.

An attribute column takes its type (bool, float or string) on the first day it shows a value; on
later days a value that does not fit that type is quarantined as ``type_changed``. On its first
day a value that does not fit the type of at least 90 % of the column is ``mixed_type``.
"""

from __future__ import annotations

import functools
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contactrank.features.arrow_columns import as_string, blank, trim
from contactrank.features.lake import DATA_FILE, partition_dates, partition_dir
from contactrank.features.landing_rules import IngestDay
from contactrank.features.parsers import parse_bool, parse_float
from contactrank.features.validate import (
    Rejects,
    check_strings,
    checked_timestamp,
    column_if_present,
    keep_valid,
    required_id,
)
from contactrank.settings import Settings
from contactrank.storage import Location

_MOSTLY = 0.9  # share of parseable values that fixes an attribute column's type on its first day


# A persons partition of an earlier day and its (attribute, type) pairs.
PersonsFile = tuple[Location, tuple[tuple[str, str], ...]]


def earlier_person_files(settings: Settings, d: date) -> list[PersonsFile]:
    """Every persons partition before D with its attribute types, oldest first."""
    files = []
    for earlier in partition_dates(settings, "persons"):
        if earlier >= d:
            break
        path = partition_dir(settings, "persons", earlier) / DATA_FILE
        files.append((path, file_types(path)))
    return files


def earlier_person_types(files: list[PersonsFile]) -> dict[str, str]:
    """The type of each persons attribute on earlier days (the first one seen wins)."""
    types: dict[str, str] = {}
    for _, pairs in files:
        for name, kind in pairs:
            types.setdefault(name, kind)
    return types


def file_types(path) -> tuple[tuple[str, str], ...]:
    """(attribute, type) of one persons partition, in column order; a local file's schema is read
    once per version (every day reads those of all earlier days: the list grows with the history)."""
    if isinstance(path, Path):
        st = path.stat()
        return _local_file_types(str(path), st.st_mtime_ns, st.st_size)
    return _schema_types(pq.read_schema(path))


@functools.lru_cache(maxsize=8192)
def _local_file_types(path: str, mtime_ns: int, size: int) -> tuple[tuple[str, str], ...]:
    return _schema_types(pq.read_schema(path))


def _schema_types(schema: pa.Schema) -> tuple[tuple[str, str], ...]:
    def kind(t: pa.DataType) -> str:
        return "bool" if pa.types.is_boolean(t) else "float" if pa.types.is_floating(t) else "string"

    keys = ("person_id", "updated_at")
    return tuple((f.name, kind(f.type)) for f in schema if not (f.name in keys or pa.types.is_null(f.type)))


def _typed_attribute(col: pa.Array, known: str | None) -> tuple[pa.Array, np.ndarray, str | None]:
    """(values, ok, type) of a persons attribute; ``known`` is the type used on earlier days."""
    t = col.type
    if pa.types.is_boolean(t):
        inferred = "bool"
    elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        inferred = "float"
    else:
        s = as_string(col)
        present = ~blank(s)
        if not present.any() and known is None:
            return pa.nulls(len(col), pa.null()), np.ones(len(col), bool), None  # no evidence of a type yet
        _, bool_ok = parse_bool(s, default=None)
        _, float_ok, _ = parse_float(s)
        if present.any() and bool_ok[present].all() and not float_ok[present].all():
            inferred = "bool"
        elif present.any() and float_ok[present].mean() >= _MOSTLY:
            # mostly numbers: a number column with a few stray words ("n/a"), whose odd rows are
            # quarantined as mixed_type, not a category column of every balance ever seen
            inferred = "float"
        else:
            inferred = "string"
    target = known or inferred
    if target == "float":
        vals, ok, _ = parse_float(col)
    elif target == "bool":
        vals, ok = parse_bool(col, default=None)
    else:
        vals = as_string(col)
        if pa.types.is_string(col.type):
            vals = pc.if_else(pc.equal(trim(vals), ""), pa.scalar(None, pa.string()), vals)
        ok = np.ones(len(col), bool)
    return vals, ok, target


def validate_persons(table: pa.Table, day: IngestDay) -> tuple[pa.Table, Rejects]:
    """person_id required, updated_at not after the window (default D 00:00 UTC), every other
    column an attribute typed as on earlier days (or inferred on its first day)."""
    n = table.num_rows
    rejects = Rejects(n)
    attrs = [c for c in table.column_names if c not in ("person_id", "updated_at") and not c.startswith("_")]
    check_strings(table, ["person_id", "updated_at", *attrs], rejects, day.settings.max_string_length)
    person_id = required_id(table, "person_id", rejects)
    ts, _ = checked_timestamp(table, "updated_at", day.settings.local_timezone, rejects, required=False)
    rejects.fail(day.after_window(ts), "outside_date", "updated_at")
    cols: dict[str, pa.Array] = {"person_id": person_id, "updated_at": pc.fill_null(ts, day.day_start)}
    for name in attrs:
        known = day.person_types.get(name)
        vals, ok, typ = _typed_attribute(column_if_present(table, name), known)
        rejects.fail(~ok, "type_changed" if known else "mixed_type", name)
        if typ:
            day.person_types.setdefault(name, typ)  # later files of the day follow the first
        cols[name] = vals
    return keep_valid(pa.table(cols), rejects), rejects


def dedupe_persons(parts: list[pa.Table]) -> tuple[pa.Table, int]:
    """One row per person: the latest updated_at wins, ties go to the later file/row."""
    if not parts:
        return pa.table(
            {"person_id": pa.array([], pa.string()), "updated_at": pa.array([], pa.timestamp("us", tz="UTC"))}
        ), 0
    table = pa.concat_tables(parts, promote_options="default")
    n = table.num_rows
    order = pa.table(
        {
            "person_id": table["person_id"],
            "updated_us": table["updated_at"].cast(pa.int64()),
            "row": pa.array(np.arange(n)),
        }
    ).to_pandas()
    order = order.sort_values(["person_id", "updated_us", "row"], kind="stable")
    last = order.drop_duplicates("person_id", keep="last")["row"].to_numpy()
    out = table.take(pa.array(np.sort(last)))
    return out, n - out.num_rows
