"""Landing -> lake for one business date: validate, normalise, dedupe, quarantine (issue 2 items 4-5).

For date D every file currently in ``<landing>/<kind>/date=D/`` is read (CSV: all columns as
strings; Parquet: typed), validated with vectorised pyarrow compute, normalised and written with
``features.lake.partition_batch`` (one transaction per partition, written in two threads,
``attempts`` committed last). The partitions of D are always rebuilt from all files present,
so ingesting twice is a no-op and a re-delivered (corrected) file replaces the old rows.

Rules worth knowing:
- Duplicated ``attempt_id`` within D (across files too): the last one wins, files in name order,
  rows in file order.
- ``attempted_at`` must lie within [D - tolerance, D + 1 day + tolerance) in UTC. Timestamps
  without an offset are UTC (CONTRACT.md §1); ``local_hour`` is the hour in the offset the
  provider gave, or in ``settings.local_timezone`` for UTC/naive values.
- ``updated_at`` of contacts and persons defaults to D 00:00 UTC and may not lie after the end of
  D + tolerance (a future timestamp would win every later upsert).
- Bad rows go to ``quarantine/<kind>/date=D/`` with their original values as strings,
  ``_source_file``, ``_row_number`` (1-based data row), ``_column``, ``_reason`` and ``_error``
  (file-level errors only). An unreadable file is one quarantine row; for the quarantined share it
  counts as the number of rows it seems to hold (lines, or the Parquet footer's row count).
- ``contacts_state/date=D`` chains on the latest earlier state: re-ingesting an old date means
  re-ingesting the later ones too (``contactrank backfill`` does, in order). It holds the delivered
  contacts only (the earlier state's order, then new upserts); addresses seen only in attempts are
  candidates through the features step.

Quarantine reasons: ``unreadable_file`` (corrupt Parquet, not UTF-8, empty), ``missing_column``,
``bad_row_shape`` (a CSV line with the wrong number of fields), ``empty_value`` (a required value
is blank), ``nul_byte``, ``too_long`` (> ``settings.max_string_length`` characters),
``bad_channel``, ``bad_outcome``, ``bad_timestamp``, ``outside_date`` (attempted_at outside the
window, or a future updated_at), ``bad_number`` (duration_s not a number >= 0), ``bad_bool``,
``bad_date`` (effective_from), ``no_target`` (a suppression without person_id and contact_id),
``type_changed`` (a persons attribute that does not fit the type of earlier days), ``mixed_type`` (on
its first day, a value that does not fit the type of at least 90 % of the column, e.g. "n/a" in balances).
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contactrank.errors import InputError, QuarantineThresholdExceeded
from contactrank.features import _validate as v
from contactrank.features.lake import (
    DATA_FILE,
    duckdb_connect,
    partition_batch,
    partition_dates,
    partition_dir,
    read_partition,
)
from contactrank.features.schema import (
    ATTEMPTS,
    CHANNELS,
    CONTACTS,
    CONTACTS_STATE,
    KINDS,
    OUTCOMES,
    QUARANTINE_META,
    SUPPRESSIONS,
)
from contactrank.privacy import drop_erased
from contactrank.settings import Settings

log = logging.getLogger(__name__)

REPORT_FILE = "_ingest_report.json"
_DATA_SUFFIXES = (".csv", ".parquet")
# closed-vocabulary and low-cardinality columns a Parquet landing file hands over dictionary-encoded
_DICTIONARY = {"attempts": ("channel", "outcome", "campaign_id")}


@dataclass(frozen=True)
class _Spec:
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()
    one_of: tuple[str, ...] = ()  # at least one of these columns must exist


SPECS = {
    "attempts": _Spec(
        ("attempt_id", "person_id", "contact_id", "channel", "attempted_at", "outcome"),
        ("campaign_id", "duration_s"),
    ),
    "contacts": _Spec(("person_id", "contact_id", "channel"), ("source", "consent", "active", "updated_at")),
    "suppressions": _Spec(
        ("reason",), ("person_id", "contact_id", "effective_from"), ("person_id", "contact_id")
    ),
    "persons": _Spec(("person_id",), ("updated_at",)),
}


@dataclass
class _Ctx:
    settings: Settings
    d: date
    landing: Path
    lo_us: int = 0
    hi_us: int = 0
    day_start: pa.Scalar | None = None
    person_types: dict[str, str] = field(default_factory=dict)  # attribute -> "string" | "float" | "bool"

    def __post_init__(self) -> None:
        start = datetime.combine(self.d, time(), tzinfo=UTC)
        tol = timedelta(hours=self.settings.time_tolerance_hours)
        self.lo_us = int((start - tol).timestamp() * 1_000_000)
        self.hi_us = int((start + timedelta(days=1) + tol).timestamp() * 1_000_000)
        self.day_start = pa.scalar(int(start.timestamp() * 1_000_000), pa.timestamp("us", tz="UTC"))


@dataclass
class _KindOut:
    clean: list[pa.Table] = field(default_factory=list)
    quarantine: list[pa.Table] = field(default_factory=list)
    files: int = 0
    read: int = 0
    quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)
    unreadable: list[dict[str, Any]] = field(default_factory=list)
    first_bad_file: str | None = None


# --- public entry point -------------------------------------------------------------------------------


def ingest(settings: Settings, d: date, landing: Path | None = None) -> dict[str, Any]:
    """Ingest every landing file of date ``d``; write the lake partitions of D; return the report.

    Raises InputError when the attempts folder of D is missing, and QuarantineThresholdExceeded
    (after writing the good rows and the quarantine) when too large a share was rejected.
    """
    landing = Path(landing) if landing else settings.landing
    att_dir = landing / "attempts" / f"date={d.isoformat()}"
    if not att_dir.is_dir():
        raise InputError(f"no landing folder for the attempts of {d}: {att_dir} does not exist")
    ctx = _Ctx(settings, d, landing)
    ctx.person_types = _earlier_person_types(settings, d)

    outs: dict[str, _KindOut] = {}
    for kind in KINDS:
        out = _KindOut()
        for path in _landing_files(landing, kind, d):
            _ingest_file(kind, path, ctx, out)
        outs[kind] = out

    attempts, att_deduped = _dedupe_attempts(outs["attempts"].clean)
    contacts = _concat(outs["contacts"].clean, CONTACTS)
    file_supp = _concat(outs["suppressions"].clean, SUPPRESSIONS)
    persons, persons_deduped = _dedupe_persons(outs["persons"].clean, ctx)
    # GDPR: a person erased earlier never re-enters the lake, whatever is delivered
    erased = {}
    attempts, erased["attempts"] = drop_erased(settings, attempts)
    contacts, erased["contacts"] = drop_erased(settings, contacts)
    file_supp, erased["suppressions"] = drop_erased(settings, file_supp)
    persons, erased["persons"] = drop_erased(settings, persons)
    for out in outs.values():
        out.quarantine = [drop_erased(settings, q)[0] for q in out.quarantine]
    suppressions = pa.concat_tables([file_supp, _opt_out_suppressions(attempts, d)])
    report = _report(
        ctx,
        outs,
        {
            "attempts": (attempts, att_deduped),
            "contacts": (contacts, 0),
            "suppressions": (file_supp, 0),
            "persons": (persons, persons_deduped),
        },
    )
    report["dropped_erased"] = erased

    # an empty quarantine or persons partition replaces a stale one from an earlier run of D
    quarantine = [
        k
        for k in KINDS
        if outs[k].quarantine or (partition_dir(settings, f"quarantine/{k}", d) / DATA_FILE).exists()
    ]
    with_persons = persons.num_rows or (partition_dir(settings, "persons", d) / DATA_FILE).exists()
    kinds = [f"quarantine/{k}" for k in quarantine] + ["contacts", "contacts_state", "suppressions"]
    kinds += ["persons"] if with_persons else []
    # attempts committed last: its report marks the date as ingested. Its file is encoded while
    # this thread merges the contacts state.
    with partition_batch(settings, d, [*kinds, "attempts"], threads=settings.num_threads) as batch:
        batch.write("attempts", attempts, unique=["attempt_id", "person_id", "contact_id"])
        state = _contacts_state(settings, d, contacts)
        batch.write("contacts_state", state, unique=["person_id", "contact_id"])
        for k in quarantine:
            batch.write(f"quarantine/{k}", _concat_quarantine(outs[k].quarantine))
        batch.write("suppressions", suppressions)
        batch.write("contacts", contacts)
        if with_persons:
            batch.write("persons", persons)
        report["written"] = {
            "attempts": attempts.num_rows,
            "contacts": contacts.num_rows,
            "contacts_state": state.num_rows,
            "suppressions": suppressions.num_rows,
            "persons": persons.num_rows,
        }
        batch.add_file("attempts", REPORT_FILE, json.dumps(report, indent=2, sort_keys=True).encode())
    log.info("ingest %s: %s", d, {k: (r["kept"], r["quarantined"]) for k, r in report["kinds"].items()})

    if report["quarantined_share"] > settings.quarantine_threshold:
        top = report["top_reason"]
        raise QuarantineThresholdExceeded(
            f"{report['quarantined_share']:.1%} of the rows of {d} were quarantined "
            f"(threshold {settings.quarantine_threshold:.1%}); top reason {top!r}; first file {report['first_bad_file']}"
        )
    return report


# --- files -------------------------------------------------------------------------------------------------


def _landing_files(landing: Path, kind: str, d: date) -> list[Path]:
    folder = landing / kind / f"date={d.isoformat()}"
    if not folder.is_dir():
        return []
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in _DATA_SUFFIXES and not p.name.startswith((".", "_"))
    )


def _ingest_file(kind: str, path: Path, ctx: _Ctx, out: _KindOut) -> None:
    out.files += 1
    spec = SPECS[kind]
    try:
        table, bad_lines, row_numbers = v.read_landing_file(path, _DICTIONARY.get(kind, ()))
        cols = set(table.column_names)
        missing = [c for c in spec.required if c not in cols]
        if spec.one_of and not cols.intersection(spec.one_of):
            missing.append(" or ".join(spec.one_of))
        if missing:
            raise v.UnreadableFile(
                "missing_column", f"{path}: missing required column(s) {', '.join(missing)}", table.num_rows
            )
    except v.UnreadableFile as exc:
        out.read += exc.rows
        out.quarantined += exc.rows
        out.reasons[exc.reason] += exc.rows
        out.unreadable.append(
            {"file": str(path), "reason": exc.reason, "error": exc.detail, "rows": exc.rows}
        )
        out.first_bad_file = out.first_bad_file or str(path)
        column = exc.detail.rsplit("column(s) ", 1)[-1] if exc.reason == "missing_column" else None
        out.quarantine.append(_file_quarantine_row(path, exc.reason, exc.detail, column))
        log.warning("quarantined whole file: %s", exc.detail)
        return
    out.read += table.num_rows + len(bad_lines)
    if bad_lines:
        out.quarantined += len(bad_lines)
        out.reasons["bad_row_shape"] += len(bad_lines)
        out.first_bad_file = out.first_bad_file or str(path)
        out.quarantine.append(_bad_lines_quarantine(bad_lines, path))
    validate = {
        "attempts": _validate_attempts,
        "contacts": _validate_contacts,
        "suppressions": _validate_suppressions,
        "persons": _validate_persons,
    }[kind]
    clean, rejects = (
        _validate_in_threads(validate, table, ctx)
        if kind == "attempts" and table.num_rows >= 2 * _SPLIT_ROWS and ctx.settings.num_threads > 1
        else validate(table, ctx)
    )
    if rejects.bad.any():
        bad = np.flatnonzero(rejects.bad)
        out.quarantined += bad.size
        for item in pc.value_counts(rejects.reason(bad)).to_pylist():
            out.reasons[item["values"]] += item["counts"]
        out.first_bad_file = out.first_bad_file or str(path)
        out.quarantine.append(_row_quarantine(table, rejects, bad, path, row_numbers))
    out.clean.append(clean)


_SPLIT_ROWS = 100_000  # below this per thread, threads cost more than they save


def _validate_in_threads(validate, table: pa.Table, ctx: _Ctx) -> tuple[pa.Table, v.Rejects]:
    """Validate consecutive row ranges of a large attempts file concurrently (every attempts
    rule is row-local; pyarrow and numpy release the GIL), then join the results in row order."""
    threads = min(int(ctx.settings.num_threads), table.num_rows // _SPLIT_ROWS)
    cuts = np.linspace(0, table.num_rows, threads + 1).astype(int)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        parts = list(pool.map(lambda a, b: validate(table.slice(a, b - a), ctx), cuts[:-1], cuts[1:]))
    return pa.concat_tables([c for c, _ in parts]), v.Rejects.concat([r for _, r in parts])


def _file_quarantine_row(path: Path, reason: str, error: str, column: str | None) -> pa.Table:
    return pa.table(
        {
            "_source_file": pa.array([str(path)]),
            "_row_number": pa.array([None], pa.int64()),
            "_column": pa.array([column], pa.string()),
            "_reason": pa.array([reason]),
            "_error": pa.array([error]),
        }
    )


def _bad_lines_quarantine(lines: list[v.BadLine], path: Path) -> pa.Table:
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


def _row_quarantine(
    table: pa.Table, rejects: v.Rejects, bad: np.ndarray, path: Path, row_numbers: np.ndarray | None = None
) -> pa.Table:
    rows = table.filter(pa.array(rejects.bad))  # same order as ``bad``; filter works per chunk
    cols = {name: v.as_string(rows.column(name)) for name in rows.column_names if not name.startswith("_")}
    cols["_source_file"] = pa.array([str(path)] * bad.size, pa.string())
    cols["_row_number"] = pa.array(bad + 1 if row_numbers is None else row_numbers[bad], pa.int64())
    cols["_column"] = rejects.column(bad)
    cols["_reason"] = rejects.reason(bad)
    cols["_error"] = pa.nulls(bad.size, pa.string())
    return pa.table(cols)


def _concat_quarantine(parts: list[pa.Table]) -> pa.Table:
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


def _concat(parts: list[pa.Table], schema: pa.Schema) -> pa.Table:
    if not parts:
        return schema.empty_table()
    parts = [_conform(p, schema) for p in parts]
    if len({p.schema for p in parts}) > 1:  # e.g. a CSV and a Parquet file of one day
        parts = [p.cast(schema) for p in parts]
    return pa.concat_tables(parts)


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """``table`` cast to ``schema``, except that dictionary-encoded columns of the schema's type stay
    encoded (cheaper to filter and to write; the lake stores them as plain values)."""
    cols = []
    for f in schema:
        col = table.column(f.name)
        encoded = pa.types.is_dictionary(col.type) and col.type.value_type == f.type
        cols.append(col if encoded or col.type == f.type else col.cast(f.type))
    return pa.table(cols, names=schema.names)


# --- per-kind validation ---------------------------------------------------------------------------------


def _col(table: pa.Table, name: str) -> pa.ChunkedArray | None:
    if name not in table.column_names:
        return None
    return table.column(name)


def _string_checks(table: pa.Table, names: list[str], rej: v.Rejects, max_len: int) -> None:
    for name in names:
        col = _col(table, name)
        if col is None:
            continue
        t = col.type.value_type if pa.types.is_dictionary(col.type) else col.type
        if not (pa.types.is_string(t) or pa.types.is_large_string(t)):
            continue  # numbers, bools and timestamps cannot hold a NUL or a long text
        nul, long = v.string_checks(col, max_len)
        rej.fail(nul, "nul_byte", name)
        rej.fail(long, "too_long", name)


def _keep(table: pa.Table, rej: v.Rejects) -> pa.Table:
    """The rows without a reject (no copy when every row is good)."""
    return table.filter(pa.array(rej.ok)) if rej.bad.any() else table


def _required_id(table: pa.Table, name: str, rej: v.Rejects) -> pa.Array:
    col, empty = v.trim_blank(v.as_string(_col(table, name)))
    rej.fail(empty, "empty_value", name)
    return col


def _optional_string(table: pa.Table, name: str, n: int, lower: bool = False) -> pa.Array:
    col = _col(table, name)
    if col is None:
        return pa.nulls(n, pa.string())

    def clean(s: pa.Array) -> pa.Array:
        s = v.trim(s)
        if lower:
            s = pc.utf8_lower(s)
        return pc.if_else(pc.equal(s, ""), pa.scalar(None, pa.string()), s)

    return v.map_values(col, clean)


def _timestamp(
    table: pa.Table, name: str, ctx: _Ctx, rej: v.Rejects, required: bool
) -> tuple[pa.Array, pa.Array]:
    n = table.num_rows
    col = _col(table, name)
    if col is None:
        return pa.nulls(n, pa.timestamp("us", tz="UTC")), pa.nulls(n, pa.int8())
    ts, hour, ok, present = v.parse_timestamps(col, ctx.settings.local_timezone)
    if required:
        rej.fail(~present, "empty_value", name)
    rej.fail(~ok, "bad_timestamp", name)
    return ts, hour


def _validate_attempts(table: pa.Table, ctx: _Ctx) -> tuple[pa.Table, v.Rejects]:
    n = table.num_rows
    rej = v.Rejects(n)
    _string_checks(
        table,
        ["attempt_id", "person_id", "contact_id", "channel", "outcome", "campaign_id"],
        rej,
        ctx.settings.max_string_length,
    )
    attempt_id = _required_id(table, "attempt_id", rej)
    person_id = _required_id(table, "person_id", rej)
    contact_id = _required_id(table, "contact_id", rej)
    channel, ok = v.vocab(_col(table, "channel"), CHANNELS)
    rej.fail(~ok, "bad_channel", "channel")
    outcome, ok = v.vocab(_col(table, "outcome"), OUTCOMES)
    rej.fail(~ok, "bad_outcome", "outcome")
    ts, hour = _timestamp(table, "attempted_at", ctx, rej, required=True)
    us = pc.fill_null(ts.cast(pa.int64()), 0).to_numpy(zero_copy_only=False)
    rej.fail((us < ctx.lo_us) | (us >= ctx.hi_us), "outside_date", "attempted_at")
    if "duration_s" in table.column_names:
        duration, ok, _ = v.parse_float(_col(table, "duration_s"))
        rej.fail(~ok | v.to_mask(pc.less(duration, 0.0)), "bad_number", "duration_s")
    else:
        duration = pa.nulls(n, pa.float64())
    clean = pa.table(
        {
            "attempt_id": attempt_id,
            "person_id": person_id,
            "contact_id": contact_id,
            "channel": channel,
            "attempted_at": ts,
            "local_hour": hour,
            "outcome": outcome,
            "campaign_id": _optional_string(table, "campaign_id", n),
            "duration_s": duration,
        }
    )
    clean = _keep(clean, rej)
    # normalise only the kept rows (cheaper)
    clean = clean.set_column(
        2,
        "contact_id",
        v.normalise_contact_ids(clean["contact_id"], ctx.settings.default_country_code),
    )
    return _conform(clean, ATTEMPTS), rej


def _chunk(col: pa.ChunkedArray) -> pa.Array:
    return (
        col.combine_chunks()
        if col.num_chunks != 1
        else (col.chunk(0) if col.num_chunks else pa.array([], col.type))
    )


def _future(ts: pa.Array, ctx: _Ctx) -> np.ndarray:
    return v.to_mask(pc.greater_equal(ts.cast(pa.int64()), ctx.hi_us))


def _validate_contacts(table: pa.Table, ctx: _Ctx) -> tuple[pa.Table, v.Rejects]:
    n = table.num_rows
    rej = v.Rejects(n)
    _string_checks(
        table,
        ["person_id", "contact_id", "channel", "source", "consent", "active", "updated_at"],
        rej,
        ctx.settings.max_string_length,
    )
    person_id = _required_id(table, "person_id", rej)
    contact_id = _required_id(table, "contact_id", rej)
    channel, ok = v.vocab(_col(table, "channel"), CHANNELS)
    rej.fail(~ok, "bad_channel", "channel")
    bools = {}
    for name in ("consent", "active"):
        col = _col(table, name)
        if col is None:
            bools[name] = pa.array(np.ones(n, bool))
        else:
            bools[name], ok = v.parse_bool(col, default=True)
            rej.fail(~ok, "bad_bool", name)
    ts, _ = _timestamp(table, "updated_at", ctx, rej, required=False)
    rej.fail(_future(ts, ctx), "outside_date", "updated_at")
    clean = pa.table(
        {
            "person_id": person_id,
            "contact_id": contact_id,
            "channel": channel,
            "source": _optional_string(table, "source", n, lower=True),
            "consent": bools["consent"],
            "active": bools["active"],
            "updated_at": pc.fill_null(ts, ctx.day_start),
        }
    )
    clean = _keep(clean, rej)
    clean = clean.set_column(
        1,
        "contact_id",
        v.normalise_contact_ids(clean["contact_id"], ctx.settings.default_country_code),
    )
    return clean.cast(CONTACTS), rej


def _validate_suppressions(table: pa.Table, ctx: _Ctx) -> tuple[pa.Table, v.Rejects]:
    n = table.num_rows
    rej = v.Rejects(n)
    _string_checks(
        table, ["person_id", "contact_id", "reason", "effective_from"], rej, ctx.settings.max_string_length
    )
    person_id = _optional_string(table, "person_id", n)
    contact_id = _optional_string(table, "contact_id", n)
    rej.fail(v.to_mask(pc.and_(pc.is_null(person_id), pc.is_null(contact_id))), "no_target", "person_id")
    reason = _optional_string(table, "reason", n, lower=True)
    rej.fail(v.to_mask(pc.is_null(reason)), "empty_value", "reason")
    if "effective_from" in table.column_names:
        eff, ok, _ = v.parse_date(_col(table, "effective_from"))
        rej.fail(~ok, "bad_date", "effective_from")
        eff = pc.fill_null(eff, pa.scalar(ctx.d, pa.date32()))
    else:
        eff = pa.array([ctx.d] * n, pa.date32())
    clean = pa.table(
        {
            "person_id": person_id,
            "contact_id": contact_id,
            "reason": reason,
            "effective_from": eff,
            "origin": pa.array(["file"] * n, pa.string()),
        }
    )
    clean = _keep(clean, rej)
    ids = _chunk(clean["contact_id"])
    clean = clean.set_column(1, "contact_id", v.normalise_contact_ids(ids, ctx.settings.default_country_code))
    return clean.cast(SUPPRESSIONS), rej


_MOSTLY = 0.9  # share of parseable values that fixes an attribute column's type on its first day


def _attribute(col: pa.Array, known: str | None) -> tuple[pa.Array, np.ndarray, str | None]:
    """(values, ok, type) of a persons attribute; ``known`` is the type used on earlier days."""
    t = col.type
    if pa.types.is_boolean(t):
        inferred = "bool"
    elif pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_decimal(t):
        inferred = "float"
    else:
        s = v.as_string(col)
        present = ~v.blank(s)
        if not present.any() and known is None:
            return pa.nulls(len(col), pa.null()), np.ones(len(col), bool), None  # no evidence of a type yet
        _, bool_ok = v.parse_bool(s, default=None)
        _, float_ok, _ = v.parse_float(s)
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
        vals, ok, _ = v.parse_float(col)
    elif target == "bool":
        vals, ok = v.parse_bool(col, default=None)
    else:
        vals = v.as_string(col)
        if pa.types.is_string(col.type):
            vals = pc.if_else(pc.equal(v.trim(vals), ""), pa.scalar(None, pa.string()), vals)
        ok = np.ones(len(col), bool)
    return vals, ok, target


def _validate_persons(table: pa.Table, ctx: _Ctx) -> tuple[pa.Table, v.Rejects]:
    n = table.num_rows
    rej = v.Rejects(n)
    attrs = [c for c in table.column_names if c not in ("person_id", "updated_at") and not c.startswith("_")]
    _string_checks(table, ["person_id", "updated_at", *attrs], rej, ctx.settings.max_string_length)
    person_id = _required_id(table, "person_id", rej)
    ts, _ = _timestamp(table, "updated_at", ctx, rej, required=False)
    rej.fail(_future(ts, ctx), "outside_date", "updated_at")
    cols: dict[str, pa.Array] = {"person_id": person_id, "updated_at": pc.fill_null(ts, ctx.day_start)}
    for name in attrs:
        known = ctx.person_types.get(name)
        vals, ok, typ = _attribute(_col(table, name), known)
        rej.fail(~ok, "type_changed" if known else "mixed_type", name)
        if typ:
            ctx.person_types.setdefault(name, typ)  # later files of the day follow the first
        cols[name] = vals
    return _keep(pa.table(cols), rej), rej


# --- combining ------------------------------------------------------------------------------------------


def _dedupe_attempts(parts: list[pa.Table]) -> tuple[pa.Table, int]:
    """Concatenate the files' clean rows; one row per attempt_id, the last delivered wins."""
    table = _concat(parts, ATTEMPTS)
    n = table.num_rows
    ids = table["attempt_id"]
    # cheap check first (~3 ms per 1M rows): ids in strictly increasing order cannot repeat
    if n < 2 or pc.all(pc.less(ids.slice(0, n - 1), ids.slice(1))).as_py():
        return table, 0
    last = (
        pa.table({"attempt_id": ids, "_i": pa.array(np.arange(n))})
        .group_by("attempt_id", use_threads=False)
        .aggregate([("_i", "max")])
    )
    if last.num_rows == n:
        return table, 0
    keep = np.zeros(n, bool)
    keep[_chunk(last["_i_max"]).to_numpy()] = True
    return table.filter(pa.array(keep)), n - last.num_rows


def _dedupe_persons(parts: list[pa.Table], ctx: _Ctx) -> tuple[pa.Table, int]:
    """One row per person: the latest updated_at wins, ties go to the later file/row."""
    if not parts:
        return pa.table(
            {"person_id": pa.array([], pa.string()), "updated_at": pa.array([], pa.timestamp("us", tz="UTC"))}
        ), 0
    table = pa.concat_tables(parts, promote_options="default")
    n = table.num_rows
    df = pa.table(
        {"p": table["person_id"], "t": table["updated_at"].cast(pa.int64()), "i": pa.array(np.arange(n))}
    ).to_pandas()
    df = df.sort_values(["p", "t", "i"], kind="stable")
    last = df.drop_duplicates("p", keep="last")["i"].to_numpy()
    out = table.take(pa.array(np.sort(last)))
    return out, n - out.num_rows


def _opt_out_suppressions(attempts: pa.Table, d: date) -> pa.Table:
    """One contact-level suppression per opt_out outcome (person_id kept for erasure and audit)."""
    oo = attempts.filter(pc.equal(attempts["outcome"], "opt_out"))
    k = oo.num_rows
    return pa.table(
        {
            "person_id": oo["person_id"],
            "contact_id": oo["contact_id"],
            "reason": pa.array(["opt_out"] * k, pa.string()),
            "effective_from": pa.array([d] * k, pa.date32()),
            "origin": pa.array(["opt_out_outcome"] * k, pa.string()),
        }
    ).cast(SUPPRESSIONS)


def _contacts_state(settings: Settings, d: date, contacts: pa.Table) -> pa.Table:
    """The state of every delivered address at the end of D: the latest earlier state with D's
    contact upserts applied (latest updated_at wins, ties go to the later delivery; first_seen is
    the earliest date). Rows keep the earlier state's order, then new addresses in delivery order.

    Addresses only seen in attempts are not in it: the features step, which aggregates every
    (person, contact) pair of the attempts anyway, makes them candidates
    (``features.features._candidate_sql``). Finding them here cost a second hash aggregation of
    the day's attempts and a larger snapshot to write every day.
    """
    prev_dates = [x for x in partition_dates(settings, "contacts_state") if x < d]
    prev = read_partition(settings, "contacts_state", prev_dates[-1]) if prev_dates else None
    if prev is None:
        prev = CONTACTS_STATE.empty_table()
    prev = prev.select(CONTACTS_STATE.names).cast(CONTACTS_STATE)
    return _merge_upserts(settings, d, prev, contacts) if contacts.num_rows else prev


def _merge_upserts(settings: Settings, d: date, prev: pa.Table, contacts: pa.Table) -> pa.Table:
    """The earlier state with D's contact upserts applied (DuckDB full join), in state order."""
    con = duckdb_connect(settings)  # bounded memory: the state can hold millions of addresses
    try:
        n_prev, n_ups = prev.num_rows, contacts.num_rows
        con.register("prev", prev.append_column("_i", pa.array(np.arange(n_prev))))
        con.register("ups", contacts.append_column("_seq", pa.array(np.arange(n_ups))))
        day = d.isoformat()
        known = con.sql(f"""
            WITH ups_last AS (
              SELECT * FROM ups
              QUALIFY row_number() OVER (PARTITION BY person_id, contact_id
                                         ORDER BY updated_at DESC, _seq DESC) = 1
            ),
            j AS (
              SELECT p.person_id AS p_person_id, p.contact_id AS p_contact_id, p.channel AS p_channel,
                     p.source AS p_source, p.consent AS p_consent, p.active AS p_active,
                     p.first_seen AS p_first_seen, p.updated_at AS p_updated_at, p._i AS p_i,
                     u.person_id AS u_person_id, u.contact_id AS u_contact_id, u.channel AS u_channel,
                     u.source AS u_source, u.consent AS u_consent, u.active AS u_active,
                     u.updated_at AS u_updated_at, u._seq AS u_seq
              FROM prev p FULL JOIN ups_last u ON p.person_id = u.person_id AND p.contact_id = u.contact_id
            ),
            jn AS (
              SELECT *, (u_person_id IS NOT NULL AND (p_person_id IS NULL OR p_updated_at IS NULL
                         OR u_updated_at >= p_updated_at)) AS _new FROM j
            )
            SELECT coalesce(u_person_id, p_person_id) AS person_id,
                   coalesce(u_contact_id, p_contact_id) AS contact_id,
                   CASE WHEN _new THEN u_channel ELSE p_channel END AS channel,
                   CASE WHEN _new THEN u_source ELSE p_source END AS source,
                   CASE WHEN _new THEN u_consent ELSE p_consent END AS consent,
                   CASE WHEN _new THEN u_active ELSE p_active END AS active,
                   coalesce(p_first_seen, DATE '{day}') AS first_seen,
                   CASE WHEN _new THEN u_updated_at ELSE p_updated_at END AS updated_at
            FROM jn
            ORDER BY coalesce(p_i, {n_prev} + u_seq)
        """).to_arrow_table()
    finally:
        con.close()
    return known.cast(CONTACTS_STATE)


# --- report ------------------------------------------------------------------------------------------------


def _earlier_person_types(settings: Settings, d: date) -> dict[str, str]:
    """The type of each persons attribute on earlier days (the first one seen wins)."""
    types: dict[str, str] = {}
    for x in partition_dates(settings, "persons"):
        if x >= d:
            break
        schema = pq.read_schema(partition_dir(settings, "persons", x) / DATA_FILE)
        for f in schema:
            if f.name in ("person_id", "updated_at") or f.name in types or pa.types.is_null(f.type):
                continue
            types[f.name] = (
                "bool"
                if pa.types.is_boolean(f.type)
                else "float"
                if pa.types.is_floating(f.type)
                else "string"
            )
    return types


def _report(ctx: _Ctx, outs: dict[str, _KindOut], results: dict[str, tuple[pa.Table, int]]) -> dict[str, Any]:
    kinds = {}
    read = quarantined = 0
    reasons: Counter = Counter()
    first_bad = None
    for kind in KINDS:
        o = outs[kind]
        table, deduped = results[kind]
        kinds[kind] = {
            "files": o.files,
            "read": o.read,
            "kept": table.num_rows,
            "deduped": deduped,
            "quarantined": o.quarantined,
            "quarantined_by_reason": dict(sorted(o.reasons.items())),
            "unreadable_files": o.unreadable,
        }
        read += o.read
        quarantined += o.quarantined
        reasons.update(o.reasons)
        first_bad = first_bad or o.first_bad_file
    return {
        "date": ctx.d.isoformat(),
        "landing": str(ctx.landing),
        "kinds": kinds,
        "read": read,
        "quarantined": quarantined,
        "quarantined_share": round(quarantined / read, 6) if read else 0.0,
        "threshold": ctx.settings.quarantine_threshold,
        "top_reason": reasons.most_common(1)[0][0] if reasons else None,
        "first_bad_file": first_bad,
    }
