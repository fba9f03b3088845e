"""Suppressions fail closed: a suppression that could not be read stops scoring until it is fixed.

For every other kind a bad row is quarantined and the day goes on; a suppression row that is lost
that way is a person who asked not to be called and is called. So when a suppression row is
quarantined, or a suppression file cannot be read at all, ingest

- still writes what it could read, plus every id it can find in the failed rows and files as a
  suppression of its own (reason ``unparsed_row``): over-suppressing a stranger who shares a token
  with a broken line costs one call, under-suppressing costs a complaint;
- leaves ``MARKER_FILE`` (file, row and reason of each failure) in ``suppressions/date=D``, which
  makes ``ml.candidates.read_suppressions`` refuse every date >= D (``check_markers``) until a
  corrected delivery of D is ingested (the rewritten partition has no marker);
- raises FailClosed with a one-line reason naming the first failed file and row.
"""

from __future__ import annotations

import codecs
import csv
import json
from datetime import date
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from contactrank.errors import FailClosed
from contactrank.features.arrow_columns import as_string
from contactrank.features.landing_files import BadLine
from contactrank.features.parsers import normalise_contact_ids
from contactrank.features.schema import SUPPRESSIONS

MARKER_FILE = "_FAILED_SUPPRESSIONS.json"
UNPARSED_REASON = "unparsed_row"
_MAX_LISTED = 1000  # failures listed in the marker; the count is always whole
_MAX_SALVAGE_BYTES = 1 << 28  # ids are searched in the first 256 MiB of an unreadable file
_ID_COLUMNS = ("person_id", "contact_id")


# --- ids of the failed rows ---------------------------------------------------------------------------


def ids_in_rows(rows: pa.Table) -> pa.Table:
    """(person_id, contact_id) candidates of rejected rows: their own id columns, trimmed."""
    n = rows.num_rows
    return pa.table(
        {
            name: _ids(rows.column(name)) if name in rows.column_names else pa.nulls(n, pa.string())
            for name in _ID_COLUMNS
        }
    )


def ids_in_lines(lines: list[BadLine]) -> pa.Table:
    """Every field of a line that did not split into the header's columns, as a person id and as an
    address: with a field too many or too few, no position can be trusted."""
    tokens = [f for line in lines for row in _csv_rows(line.text) for f in row]
    return _as_both(tokens)


def ids_in_file(path: Path) -> pa.Table:
    """Best-effort ids of a CSV file the reader refused (wrong encoding, missing column, ...):
    decoded by its BOM (else UTF-8, else Latin-1, which never fails); rows that fit the header give
    their id columns, other rows every field. A Parquet file that cannot be read gives none."""
    if path.suffix.lower() == ".parquet":
        return _as_both([])
    with open(path, "rb") as fh:
        blob = fh.read(_MAX_SALVAGE_BYTES)
    rows = _csv_rows(_decode(blob).replace("\x00", ""))
    header = [h.strip().lower() for h in (rows[0] if rows else [])]
    at = {c: header.index(c) for c in _ID_COLUMNS if c in header}
    fitted: dict[str, list[str | None]] = {c: [] for c in _ID_COLUMNS}
    tokens: list[str] = []
    for row in rows[1:]:  # a failure path only: the file is refused, this salvages what it names
        if at and len(row) == len(header):
            for c in _ID_COLUMNS:
                fitted[c].append(row[at[c]] if c in at else None)
        else:
            tokens.extend(row)
    return pa.concat_tables(
        [ids_in_rows(pa.table({c: pa.array(v, pa.string()) for c, v in fitted.items()})), _as_both(tokens)]
    )


def _csv_rows(text: str) -> list[list[str]]:
    """The rows of ``text``; a line the csv module refuses (e.g. a huge field) gives its comma-split
    fields instead, so no token is lost."""
    out = []
    for line in text.splitlines():
        try:
            out.extend(csv.reader([line]))
        except csv.Error:
            out.append(line.split(","))
    return out


def _ids(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Trimmed strings, blanks as null."""
    s = pc.utf8_trim_whitespace(as_string(col))
    s = s.combine_chunks() if isinstance(s, pa.ChunkedArray) else s
    return pc.if_else(pc.equal(s, ""), pa.scalar(None, pa.string()), s)


def _decode(blob: bytes) -> str:
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32"),
        (codecs.BOM_UTF32_BE, "utf-32"),
        (codecs.BOM_UTF16_LE, "utf-16"),
        (codecs.BOM_UTF16_BE, "utf-16"),
    ):
        if blob.startswith(bom):
            return blob.decode(encoding, errors="replace")
    try:
        return blob.decode("utf-8-sig")
    except UnicodeDecodeError:
        return blob.decode("latin-1")


def _as_both(tokens: list[str]) -> pa.Table:
    """Each token once as a person id (contact null) and once as an address (person null)."""
    col = _ids(pa.array(tokens, pa.string()))
    n = len(tokens)
    nulls = pa.nulls(n, pa.string())
    return pa.table(
        {"person_id": pa.concat_arrays([col, nulls]), "contact_id": pa.concat_arrays([nulls, col])}
    )


def unparsed_suppressions(found: list[pa.Table], d: date, country_code: str) -> pa.Table:
    """The ids found in failed rows as suppressions of D (reason ``unparsed_row``), once each."""
    if not found:
        return SUPPRESSIONS.empty_table()
    ids = pa.concat_tables(found)
    ids = ids.filter(pc.or_(pc.is_valid(ids["person_id"]), pc.is_valid(ids["contact_id"])))
    ids = ids.set_column(1, "contact_id", normalise_contact_ids(ids["contact_id"], country_code))
    ids = ids.group_by(["person_id", "contact_id"], use_threads=False).aggregate([])
    ids = ids.sort_by([("person_id", "ascending"), ("contact_id", "ascending")])
    n = ids.num_rows
    return pa.table(
        {
            "person_id": ids["person_id"],
            "contact_id": ids["contact_id"],
            "reason": pa.array([UNPARSED_REASON] * n, pa.string()),
            "effective_from": pa.array([d] * n, pa.date32()),
            "origin": pa.array(["file"] * n, pa.string()),
        }
    ).cast(SUPPRESSIONS)


# --- the marker -----------------------------------------------------------------------------------------


def failures_of(quarantine: list[pa.Table]) -> list[dict[str, Any]]:
    """(file, row, column, reason) of every quarantined suppression row and unreadable file."""
    out = []
    for part in quarantine:
        meta = part.select(["_source_file", "_row_number", "_column", "_reason"]).to_pylist()
        out += [
            {
                "file": m["_source_file"],
                "row": m["_row_number"],
                "column": m["_column"],
                "reason": m["_reason"],
            }
            for m in meta
            if m["_reason"] != "bad_column_name"  # an extra column dropped: every row was still read
        ]
    return out


def failure_reason(d: date, failures: list[dict[str, Any]]) -> str:
    """The one-line reason: how many failed, and where the first one is."""
    first = failures[0]
    row = "(whole file)" if first["row"] is None else f"row {first['row']}"
    where = f"{first['file']} {row}"
    more = f" and {len(failures) - 1} more" if len(failures) > 1 else ""
    return (
        f"suppressions of {d} could not all be read: {where}: {first['reason']}"
        f"{'' if first['column'] is None else ' in ' + str(first['column'])}{more}; "
        f"nothing is scored from {d} on until a corrected file for {d} is ingested"
    )


def marker_blob(d: date, failures: list[dict[str, Any]]) -> bytes:
    body = {
        "date": d.isoformat(),
        "reason": failure_reason(d, failures),
        "count": len(failures),
        "failures": failures[:_MAX_LISTED],
    }
    return json.dumps(body, indent=2, sort_keys=True).encode()


def check_marker(folder: Path) -> None:
    """Raise FailClosed when the suppressions partition ``folder`` records unread suppressions."""
    marker = folder / MARKER_FILE
    if not marker.exists():
        return
    try:
        reason = str(json.loads(marker.read_text(encoding="utf-8"))["reason"])
    except Exception:  # noqa: BLE001 - a damaged marker still means "do not score"
        reason = f"{marker} records suppressions that could not be read"
    raise FailClosed(" ".join(reason.split()))
