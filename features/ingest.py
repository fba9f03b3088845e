"""Landing -> lake for one business date: read, validate, normalise, dedupe, quarantine, write.

For date D every file currently in ``<landing>/<kind>/date=D/`` is read (CSV: all columns as
strings; Parquet: typed), validated with vectorised pyarrow compute, normalised and written with
``features.lake.partition_batch`` (one transaction per partition, written in two threads,
``attempts`` committed last). The partitions of D are always rebuilt from all files present,
so ingesting twice is a no-op and a re-delivered (corrected) file replaces the old rows.

Rules worth knowing:
- Duplicated ``attempt_id`` within D (across files too): the last one wins, files in name order,
  rows in file order. An ``attempt_id`` already stored for D-1 or D-2 (``landing_rules.
  redelivery_dates``) is quarantined as ``duplicate_of_earlier_date`` (not counted in the share).
- ``attempted_at`` must lie within [D - tolerance, D + 1 day + tolerance) in UTC. Timestamps
  without an offset are UTC (docs/contract.md §1); ``local_hour`` is the hour in the person's
  ``timezone`` attribute when one delivered up to D is valid (``features.person_clocks``), else in
  the offset the provider gave, or in ``settings.local_timezone`` for UTC/naive values.
- ``updated_at`` of contacts and persons defaults to D 00:00 UTC and may not lie after the end of
  D + tolerance (a future timestamp would win every later upsert).
- Bad rows go to ``quarantine/<kind>/date=D/`` (see ``features.validate``). An unreadable file is
  one quarantine row; for the quarantined share it counts as the number of rows it seems to hold
  (lines, or the Parquet footer's row count; without a footer, the mean of the kind's other files).
  The share is checked per kind (``features.ingest_report``): a kind whose only file is
  unreadable is 100 % quarantined.
- Column names are compared stripped and lower-cased; a file with a repeated name is quarantined
  whole (``duplicate_column``). A persons column whose name is not ``[a-z0-9_]{1,64}`` is dropped
  with one quarantine row (``bad_column_name``); the rest of the file is kept.
- Suppressions fail closed (``features.suppression_guard``): any quarantined suppression row or
  unreadable suppression file raises FailClosed after the lake is written, and blocks scoring
  until a corrected delivery of D is ingested.
- ``contacts_state/date=D`` chains on the latest earlier state (see ``features.contacts_state``).
  It holds the delivered contacts only (the earlier state's order, then new upserts); addresses
  seen only in attempts are candidates through the features step.

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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from contactrank.errors import FailClosed, InputError
from contactrank.features.contacts_state import contacts_state
from contactrank.features.ingest_report import KindResult, ingest_report, raise_above_threshold
from contactrank.features.lake import DATA_FILE, partition_batch, partition_dir
from contactrank.features.landing_files import (
    BadLine,
    UnreadableFile,
    checked_column_names,
    read_landing_file,
)
from contactrank.features.landing_rules import (
    DICTIONARY_COLUMNS,
    SPECS,
    IngestDay,
    concat_to_schema,
    dedupe_attempts,
    earlier_attempt_ids,
    opt_out_suppressions,
    validate_attempts,
    validate_contacts,
    validate_suppressions,
)
from contactrank.features.person_clocks import in_own_clock, person_zones
from contactrank.features.person_rules import (
    PersonsFile,
    dedupe_persons,
    earlier_person_files,
    earlier_person_types,
    validate_persons,
)
from contactrank.features.schema import CONTACTS, KINDS, SUPPRESSIONS
from contactrank.features.suppression_guard import (
    MARKER_FILE,
    failure_reason,
    failures_of,
    ids_in_file,
    ids_in_lines,
    ids_in_rows,
    marker_blob,
    unparsed_suppressions,
)
from contactrank.features.validate import (
    Rejects,
    bad_lines_quarantine,
    concat_quarantine,
    file_quarantine_row,
    row_quarantine,
)
from contactrank.privacy import drop_erased, erased_hashes
from contactrank.settings import Settings

log = logging.getLogger(__name__)

REPORT_FILE = "_ingest_report.json"
_DATA_SUFFIXES = (".csv", ".parquet")
_VALIDATORS = {
    "attempts": validate_attempts,
    "contacts": validate_contacts,
    "suppressions": validate_suppressions,
    "persons": validate_persons,
}
_SPLIT_ROWS = 100_000  # below this per thread, threads cost more than they save


@dataclass
class _DayTables:
    """The clean, deduplicated rows of D that go to the lake (erased persons dropped)."""

    attempts: pa.Table
    contacts: pa.Table
    file_suppressions: pa.Table
    persons: pa.Table
    deduped: dict[str, int]
    erased: dict[str, int]

    @property
    def kept(self) -> dict[str, tuple[pa.Table, int]]:
        """(kept rows, deduplicated count) per kind, for the report."""
        return {
            "attempts": (self.attempts, self.deduped["attempts"]),
            "contacts": (self.contacts, 0),
            "suppressions": (self.file_suppressions, 0),
            "persons": (self.persons, self.deduped["persons"]),
        }


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
    day = IngestDay(settings, d, landing)
    earlier_persons = earlier_person_files(settings, d)
    day.person_types = earlier_person_types(earlier_persons)
    day.earlier_attempt_ids = earlier_attempt_ids(settings, d)

    results: dict[str, KindResult] = {}
    for kind in KINDS:
        result = KindResult()
        for path in _landing_files(landing, kind, d):
            _ingest_file(kind, path, day, result)
        _size_unsized_files(result)
        results[kind] = result

    # taken before erased persons are dropped from the quarantine: a failed row is a failure
    suppression_failures = failures_of(results["suppressions"].quarantine)
    tables = _combine(settings, d, results, earlier_persons)
    suppressions = pa.concat_tables([tables.file_suppressions, opt_out_suppressions(tables.attempts, d)])
    report = ingest_report(day, results, tables.kept)
    report["dropped_erased"] = tables.erased
    report["suppression_failures"] = len(suppression_failures)
    marker = marker_blob(d, suppression_failures) if suppression_failures else None
    _write_lake(settings, d, tables, suppressions, results, report, marker)
    log.info("ingest %s: %s", d, {k: (r["kept"], r["quarantined"]) for k, r in report["kinds"].items()})

    if suppression_failures:
        raise FailClosed(failure_reason(d, suppression_failures))
    raise_above_threshold(report)
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


def _ingest_file(kind: str, path: Path, day: IngestDay, result: KindResult) -> None:
    """Read and validate one file into ``result``: clean rows, quarantined rows and counts."""
    result.files += 1
    try:
        table, bad_lines, row_numbers, dropped = _read_with_columns(kind, path)
    except UnreadableFile as exc:
        _unreadable(kind, path, exc, result)
        return
    result.read += table.num_rows + len(bad_lines)
    result.sizes.append(table.num_rows + len(bad_lines))
    for name in dropped:  # the rows are kept without that column: not counted as quarantined rows
        detail = f"{path}: column name {name!r} is not [a-z0-9_]{{1,64}}; the column is ignored"
        result.quarantine.append(file_quarantine_row(path, "bad_column_name", detail, name))
        result.dropped_columns.append({"file": str(path), "column": name})
        log.warning("dropped a column: %s", detail)
    if bad_lines:
        result.quarantined += len(bad_lines)
        result.reasons["bad_row_shape"] += len(bad_lines)
        result.first_bad_file = result.first_bad_file or str(path)
        result.quarantine.append(bad_lines_quarantine(bad_lines, path))
        if kind == "suppressions":
            result.found_ids.append(ids_in_lines(bad_lines))
    validate = _VALIDATORS[kind]
    clean, rejects = (
        _validate_in_threads(validate, table, day)
        if kind == "attempts" and table.num_rows >= 2 * _SPLIT_ROWS and day.settings.num_threads > 1
        else validate(table, day)
    )
    if rejects.bad.any():
        bad = np.flatnonzero(rejects.bad)
        result.quarantined += bad.size
        for item in pc.value_counts(rejects.reason(bad)).to_pylist():
            result.reasons[item["values"]] += item["counts"]
        result.first_bad_file = result.first_bad_file or str(path)
        result.quarantine.append(row_quarantine(table, rejects, bad, path, row_numbers))
        if kind == "suppressions":
            result.found_ids.append(ids_in_rows(table.filter(pa.array(rejects.bad))))
    result.clean.append(clean)


def _unreadable(kind: str, path: Path, exc: UnreadableFile, result: KindResult) -> None:
    """Count a file that could not be read as quarantined rows, with one quarantine row naming it."""
    result.read += exc.rows
    result.quarantined += exc.rows
    result.reasons[exc.reason] += exc.rows
    entry = {"file": str(path), "reason": exc.reason, "error": exc.detail, "rows": exc.rows}
    result.unreadable.append(entry)
    if exc.rows_known:
        result.sizes.append(exc.rows)
    else:
        result.unsized.append(entry)
    result.first_bad_file = result.first_bad_file or str(path)
    result.quarantine.append(file_quarantine_row(path, exc.reason, exc.detail, exc.column))
    if kind == "suppressions":
        result.found_ids.append(ids_in_file(path))
    log.warning("quarantined whole file: %s", exc.detail)


def _size_unsized_files(result: KindResult) -> None:
    """Count each unreadable file of unknown size as large as the kind's other files on average.

    A Parquet file cut before its footer would otherwise count as one row, and the day's only
    attempts file could be lost under the threshold. When no file of the kind has a known size,
    every row of the kind is in unreadable files: the kind's share is 100 % whatever the count.
    """
    if not result.unsized or not result.sizes:
        return
    estimate = max(1, round(sum(result.sizes) / len(result.sizes)))
    for entry in result.unsized:
        extra = max(estimate - entry["rows"], 0)
        entry["rows"] += extra
        entry["rows_estimated"] = True
        result.read += extra
        result.quarantined += extra
        result.reasons[entry["reason"]] += extra


def _read_with_columns(kind: str, path: Path) -> tuple[pa.Table, list[BadLine], np.ndarray | None, list[str]]:
    """``read_landing_file`` with checked column names (persons: bad names dropped and returned),
    raising UnreadableFile (``missing_column``) without a required column."""
    spec = SPECS[kind]
    table, bad_lines, row_numbers = read_landing_file(path, DICTIONARY_COLUMNS.get(kind, ()))
    table, dropped = checked_column_names(table, path, free_names=kind == "persons")
    cols = set(table.column_names)
    missing = [c for c in spec.required if c not in cols]
    if spec.one_of and not cols.intersection(spec.one_of):
        missing.append(" or ".join(spec.one_of))
    if missing:
        raise UnreadableFile(
            "missing_column",
            f"{path}: missing required column(s) {', '.join(missing)}",
            table.num_rows,
            column=", ".join(missing),
        )
    return table, bad_lines, row_numbers, dropped


def _validate_in_threads(validate, table: pa.Table, day: IngestDay) -> tuple[pa.Table, Rejects]:
    """Validate consecutive row ranges of a large attempts file concurrently (every attempts
    rule is row-local; pyarrow and numpy release the GIL), then join the results in row order."""
    threads = min(int(day.settings.num_threads), table.num_rows // _SPLIT_ROWS)
    cuts = np.linspace(0, table.num_rows, threads + 1).astype(int)
    with ThreadPoolExecutor(max_workers=threads) as pool:
        parts = list(pool.map(lambda a, b: validate(table.slice(a, b - a), day), cuts[:-1], cuts[1:]))
    return pa.concat_tables([c for c, _ in parts]), Rejects.concat([r for _, r in parts])


# --- combining and writing ----------------------------------------------------------------------------


def _combine(
    settings: Settings, d: date, results: dict[str, KindResult], earlier_persons: list[PersonsFile]
) -> _DayTables:
    """The files' clean rows as one table per kind, deduplicated, without erased persons; the ids
    named in failed suppression rows are suppressions too (``features.suppression_guard``); each
    attempt's hour in the person's own clock where a zone is known (``features.person_clocks``)."""
    attempts, attempts_deduped = dedupe_attempts(results["attempts"].clean)
    contacts = concat_to_schema(results["contacts"].clean, CONTACTS)
    unparsed = unparsed_suppressions(results["suppressions"].found_ids, d, settings.default_country_code)
    file_suppressions = concat_to_schema([*results["suppressions"].clean, unparsed], SUPPRESSIONS)
    persons, persons_deduped = dedupe_persons(results["persons"].clean)
    # GDPR: a person erased earlier never re-enters the lake, whatever is delivered
    erased = {}
    hashes = erased_hashes(settings)
    attempts, erased["attempts"] = drop_erased(settings, attempts, hashes)
    contacts, erased["contacts"] = drop_erased(settings, contacts, hashes)
    file_suppressions, erased["suppressions"] = drop_erased(settings, file_suppressions, hashes)
    persons, erased["persons"] = drop_erased(settings, persons, hashes)
    attempts = in_own_clock(attempts, person_zones(settings, earlier_persons, persons, attempts["person_id"]))
    for result in results.values():
        result.quarantine = [drop_erased(settings, q, hashes)[0] for q in result.quarantine]
    deduped = {"attempts": attempts_deduped, "persons": persons_deduped}
    return _DayTables(attempts, contacts, file_suppressions, persons, deduped, erased)


def _write_lake(
    settings: Settings,
    d: date,
    tables: _DayTables,
    suppressions: pa.Table,
    results: dict[str, KindResult],
    report: dict[str, Any],
    suppression_marker: bytes | None,
) -> None:
    """Write every partition of D in one batch; the attempts partition, with the report, last.
    ``suppression_marker`` goes beside the suppressions (see ``features.suppression_guard``)."""
    # an empty quarantine or persons partition replaces a stale one from an earlier run of D
    quarantine = [
        k
        for k in KINDS
        if results[k].quarantine or (partition_dir(settings, f"quarantine/{k}", d) / DATA_FILE).exists()
    ]
    with_persons = tables.persons.num_rows or (partition_dir(settings, "persons", d) / DATA_FILE).exists()
    kinds = [f"quarantine/{k}" for k in quarantine] + ["contacts", "contacts_state", "suppressions"]
    kinds += ["persons"] if with_persons else []
    # attempts committed last: its report marks the date as ingested. Its file is encoded while
    # this thread merges the contacts state.
    with partition_batch(settings, d, [*kinds, "attempts"], threads=settings.num_threads) as batch:
        batch.write("attempts", tables.attempts, unique=["attempt_id", "person_id", "contact_id"])
        state = contacts_state(settings, d, tables.contacts)
        batch.write("contacts_state", state, unique=["person_id", "contact_id"])
        for k in quarantine:
            batch.write(f"quarantine/{k}", concat_quarantine(results[k].quarantine))
        batch.write("suppressions", suppressions)
        if suppression_marker is not None:
            batch.add_file("suppressions", MARKER_FILE, suppression_marker)
        batch.write("contacts", tables.contacts)
        if with_persons:
            batch.write("persons", tables.persons)
        report["written"] = {
            "attempts": tables.attempts.num_rows,
            "contacts": tables.contacts.num_rows,
            "contacts_state": state.num_rows,
            "suppressions": suppressions.num_rows,
            "persons": tables.persons.num_rows,
        }
        batch.add_file("attempts", REPORT_FILE, json.dumps(report, indent=2, sort_keys=True).encode())
