"""The rules of the attempts, contacts and suppressions landing files (persons: person_rules).

Each ``validate_<kind>`` takes the table of one file and returns (clean rows in the lake's types,
rejects). Every attempts rule is row-local, so a large attempts file can be validated in
independent row ranges.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from contactrank.features.arrow_columns import to_mask, vocab
from contactrank.features.lake import read_partition
from contactrank.features.parsers import normalise_contact_ids, parse_bool, parse_date, parse_float
from contactrank.features.schema import ATTEMPTS, CHANNELS, CONTACTS, OUTCOMES, SUPPRESSIONS
from contactrank.features.validate import (
    Rejects,
    check_strings,
    checked_timestamp,
    column_if_present,
    keep_valid,
    optional_string,
    required_id,
)
from contactrank.settings import Settings

# closed-vocabulary and low-cardinality columns a Parquet landing file hands over dictionary-encoded
DICTIONARY_COLUMNS = {"attempts": ("channel", "outcome", "campaign_id")}


@dataclass(frozen=True)
class ColumnSpec:
    """The columns a landing file of one kind must or may have."""

    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    one_of: tuple[str, ...] = ()  # at least one of these columns must exist


SPECS = {
    "attempts": ColumnSpec(
        ("attempt_id", "person_id", "contact_id", "channel", "attempted_at", "outcome"),
        ("campaign_id", "duration_s"),
    ),
    "contacts": ColumnSpec(
        ("person_id", "contact_id", "channel"), ("source", "consent", "active", "updated_at")
    ),
    "suppressions": ColumnSpec(
        ("reason",), ("person_id", "contact_id", "effective_from"), ("person_id", "contact_id")
    ),
    "persons": ColumnSpec(("person_id",), ("updated_at",)),
}


@dataclass
class IngestDay:
    """The business date being ingested: its accepted time window and the persons attribute types."""

    settings: Settings
    d: date
    landing: Path
    lo_us: int = 0  # attempted_at window [lo_us, hi_us) in UTC microseconds, tolerance included
    hi_us: int = 0
    day_start: pa.Scalar | None = None  # D 00:00 UTC, the default updated_at
    person_types: dict[str, str] = field(default_factory=dict)  # attribute -> "string" | "float" | "bool"
    earlier_attempt_ids: pa.Array | None = None  # attempt ids stored for the dates just before D

    def __post_init__(self) -> None:
        start = datetime.combine(self.d, time(), tzinfo=UTC)
        tol = timedelta(hours=self.settings.time_tolerance_hours)
        self.lo_us = int((start - tol).timestamp() * 1_000_000)
        self.hi_us = int((start + timedelta(days=1) + tol).timestamp() * 1_000_000)
        self.day_start = pa.scalar(int(start.timestamp() * 1_000_000), pa.timestamp("us", tz="UTC"))

    def after_window(self, ts: pa.Array) -> np.ndarray:
        """Timestamps after the end of D + tolerance (a future updated_at would win every upsert)."""
        return to_mask(pc.greater_equal(ts.cast(pa.int64()), self.hi_us))


def redelivery_dates(settings: Settings, d: date) -> list[date]:
    """The earlier dates whose attempts an attempt of D may repeat.

    An attempt stored under date X has ``attempted_at`` in [X - tol, X + 1 day + tol); one that
    also fits D's window needs X > D - 1 day - 2 tol, i.e. D-1 for a tolerance under 12 hours.
    D-2 is always looked at too (a re-delivery after a day without files); re-deliveries from
    further back would lie outside D's window and are quarantined as ``outside_date`` anyway.
    Only these partitions' attempt_id column is read, never the whole history.
    """
    days = max(2, math.ceil(1 + 2 * settings.time_tolerance_hours / 24))
    return [d - timedelta(days=k) for k in range(days, 0, -1)]


def earlier_attempt_ids(settings: Settings, d: date) -> pa.Array:
    """The attempt ids stored for ``redelivery_dates`` (one column read per partition)."""
    parts = []
    for earlier in redelivery_dates(settings, d):
        table = read_partition(settings, "attempts", earlier, columns=["attempt_id"])
        if table is not None:
            parts.extend(table.column("attempt_id").chunks)
    return pa.concat_arrays(parts) if parts else pa.array([], pa.string())


# --- lake schemas ----------------------------------------------------------------------------------------


def concat_to_schema(parts: list[pa.Table], schema: pa.Schema) -> pa.Table:
    """The clean rows of several files as one table of ``schema``."""
    if not parts:
        return schema.empty_table()
    parts = [conform(p, schema) for p in parts]
    if len({p.schema for p in parts}) > 1:  # e.g. a CSV and a Parquet file of one day
        parts = [p.cast(schema) for p in parts]
    return pa.concat_tables(parts)


def conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` cast to ``schema``, except that dictionary-encoded columns of the schema's type stay
    encoded (cheaper to filter and to write; the lake stores them as plain values)."""
    cols = []
    for f in schema:
        col = table.column(f.name)
        encoded = pa.types.is_dictionary(col.type) and col.type.value_type == f.type
        cols.append(col if encoded or col.type == f.type else col.cast(f.type))
    return pa.table(cols, names=schema.names)


def _one_array(col: pa.ChunkedArray) -> pa.Array:
    return (
        col.combine_chunks()
        if col.num_chunks != 1
        else (col.chunk(0) if col.num_chunks else pa.array([], col.type))
    )


# --- per-kind rules ----------------------------------------------------------------------------------------


def validate_attempts(table: pa.Table, day: IngestDay) -> tuple[pa.Table, Rejects]:
    """Ids required, channel and outcome from the vocabularies, attempted_at within the window of D,
    duration_s a number >= 0; contact ids normalised."""
    n = table.num_rows
    rejects = Rejects(n)
    check_strings(
        table,
        ["attempt_id", "person_id", "contact_id", "channel", "outcome", "campaign_id"],
        rejects,
        day.settings.max_string_length,
    )
    attempt_id = required_id(table, "attempt_id", rejects)
    person_id = required_id(table, "person_id", rejects)
    contact_id = required_id(table, "contact_id", rejects)
    channel, ok = vocab(column_if_present(table, "channel"), CHANNELS)
    rejects.fail(~ok, "bad_channel", "channel")
    outcome, ok = vocab(column_if_present(table, "outcome"), OUTCOMES)
    rejects.fail(~ok, "bad_outcome", "outcome")
    ts, hour = checked_timestamp(table, "attempted_at", day.settings.local_timezone, rejects, required=True)
    us = pc.fill_null(ts.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    rejects.fail((us < day.lo_us) | (us >= day.hi_us), "outside_date", "attempted_at")
    if "duration_s" in table.column_names:
        duration, ok, _ = parse_float(column_if_present(table, "duration_s"))
        rejects.fail(~ok | to_mask(pc.less(duration, 0.0)), "bad_number", "duration_s")
    else:
        duration = pa.nulls(n, pa.float64())
    if day.earlier_attempt_ids is not None and len(day.earlier_attempt_ids):
        # last: a row that is bad anyway keeps its own reason
        seen = pc.is_in(attempt_id, value_set=day.earlier_attempt_ids)
        rejects.fail(seen, "duplicate_of_earlier_date", "attempt_id")
    clean = pa.table(
        {
            "attempt_id": attempt_id,
            "person_id": person_id,
            "contact_id": contact_id,
            "channel": channel,
            "attempted_at": ts,
            "local_hour": hour,
            "outcome": outcome,
            "campaign_id": optional_string(table, "campaign_id", n),
            "duration_s": duration,
        }
    )
    clean = keep_valid(clean, rejects)
    # normalise only the kept rows (cheaper)
    clean = clean.set_column(
        2,
        "contact_id",
        normalise_contact_ids(clean["contact_id"], day.settings.default_country_code),
    )
    return conform(clean, ATTEMPTS), rejects


def validate_contacts(table: pa.Table, day: IngestDay) -> tuple[pa.Table, Rejects]:
    """Ids required, a known channel, consent/active booleans (default true), updated_at not after
    the window (default D 00:00 UTC); contact ids normalised."""
    n = table.num_rows
    rejects = Rejects(n)
    check_strings(
        table,
        ["person_id", "contact_id", "channel", "source", "consent", "active", "updated_at"],
        rejects,
        day.settings.max_string_length,
    )
    person_id = required_id(table, "person_id", rejects)
    contact_id = required_id(table, "contact_id", rejects)
    channel, ok = vocab(column_if_present(table, "channel"), CHANNELS)
    rejects.fail(~ok, "bad_channel", "channel")
    bools = {}
    for name in ("consent", "active"):
        col = column_if_present(table, name)
        if col is None:
            bools[name] = pa.array(np.ones(n, bool))
        else:
            bools[name], ok = parse_bool(col, default=True)
            rejects.fail(~ok, "bad_bool", name)
    ts, _ = checked_timestamp(table, "updated_at", day.settings.local_timezone, rejects, required=False)
    rejects.fail(day.after_window(ts), "outside_date", "updated_at")
    clean = pa.table(
        {
            "person_id": person_id,
            "contact_id": contact_id,
            "channel": channel,
            "source": optional_string(table, "source", n, lower=True),
            "consent": bools["consent"],
            "active": bools["active"],
            "updated_at": pc.fill_null(ts, day.day_start),
        }
    )
    clean = keep_valid(clean, rejects)
    clean = clean.set_column(
        1,
        "contact_id",
        normalise_contact_ids(clean["contact_id"], day.settings.default_country_code),
    )
    return clean.cast(CONTACTS), rejects


def validate_suppressions(table: pa.Table, day: IngestDay) -> tuple[pa.Table, Rejects]:
    """A person_id or a contact_id (or both), a reason, effective_from a date (default D)."""
    n = table.num_rows
    rejects = Rejects(n)
    check_strings(
        table,
        ["person_id", "contact_id", "reason", "effective_from"],
        rejects,
        day.settings.max_string_length,
    )
    person_id = optional_string(table, "person_id", n)
    contact_id = optional_string(table, "contact_id", n)
    rejects.fail(to_mask(pc.and_(pc.is_null(person_id), pc.is_null(contact_id))), "no_target", "person_id")
    reason = optional_string(table, "reason", n, lower=True)
    rejects.fail(to_mask(pc.is_null(reason)), "empty_value", "reason")
    if "effective_from" in table.column_names:
        eff, ok, _ = parse_date(column_if_present(table, "effective_from"))
        rejects.fail(~ok, "bad_date", "effective_from")
        eff = pc.fill_null(eff, pa.scalar(day.d, pa.date32()))
    else:
        eff = pa.array([day.d] * n, pa.date32())
    clean = pa.table(
        {
            "person_id": person_id,
            "contact_id": contact_id,
            "reason": reason,
            "effective_from": eff,
            "origin": pa.array(["file"] * n, pa.string()),
        }
    )
    clean = keep_valid(clean, rejects)
    ids = _one_array(clean["contact_id"])
    clean = clean.set_column(1, "contact_id", normalise_contact_ids(ids, day.settings.default_country_code))
    return clean.cast(SUPPRESSIONS), rejects


def dedupe_attempts(parts: list[pa.Table]) -> tuple[pa.Table, int]:
    """Concatenate the files' clean rows; one row per attempt_id, the last delivered wins."""
    table = concat_to_schema(parts, ATTEMPTS)
    n = table.num_rows
    ids = table["attempt_id"]
    # cheap check first: ids in strictly increasing order cannot repeat
    if n < 2 or pc.all(pc.less(ids.slice(0, n - 1), ids.slice(1))).as_py():
        return table, 0
    last = (
        pa.table({"attempt_id": ids, "row": pa.array(np.arange(n))})
        .group_by("attempt_id", use_threads=False)
        .aggregate([("row", "max")])
    )
    if last.num_rows == n:
        return table, 0
    keep = np.zeros(n, bool)
    keep[_one_array(last["row_max"]).to_numpy()] = True
    return table.filter(pa.array(keep)), n - last.num_rows


def opt_out_suppressions(attempts: pa.Table, d: date) -> pa.Table:
    """One contact-level suppression per opt_out outcome (person_id kept for erasure and audit)."""
    opt_outs = attempts.filter(pc.equal(attempts["outcome"], "opt_out"))
    k = opt_outs.num_rows
    return pa.table(
        {
            "person_id": opt_outs["person_id"],
            "contact_id": opt_outs["contact_id"],
            "reason": pa.array(["opt_out"] * k, pa.string()),
            "effective_from": pa.array([d] * k, pa.date32()),
            "origin": pa.array(["opt_out_outcome"] * k, pa.string()),
        }
    ).cast(SUPPRESSIONS)
