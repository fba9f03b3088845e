"""Publish the priority files of docs/contract.md §2, atomically.

``<exports>/priority/date=D/`` holds ``priority.parquet``, ``priority.csv``, ``_manifest.json`` and
``_SUCCESS`` (written last). Everything is written into a hidden staging folder that
``features.lake.atomic_dir`` renames into place, so a reader sees the previous directory, the
new one, or none, never a partial one; a rerun replaces the date the same way.

Score and publish are separate steps (separate DAG tasks), so an erasure can complete between
them: publish drops the rows of every person erased by then, under the home lock so that no
erasure runs while the export is being written.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from contactrank import storage
from contactrank.errors import NotReady
from contactrank.features.lake import (
    DATA_FILE,
    atomic_dir,
    file_sha256,
    partition_dir,
    read_table,
    write_partition,
)
from contactrank.features.schema import PRIORITY
from contactrank.lock import home_lock
from contactrank.ml.score import CONTRACT_COLUMNS, read_report, read_scores
from contactrank.ml.timezones import export_clock
from contactrank.privacy import drop_erased, erased_hashes, export_key, pseudonymise
from contactrank.settings import Settings
from contactrank.shards import Shard, all_shards, map_shards

log = logging.getLogger(__name__)

SCHEMA_VERSION = "1.1"
EXPORT_PARTS = "export_parts"  # lake table: one shard's rows of an export, before the commit
PART_FACTS = "_part.json"
PRIORITY_SCHEMA = PRIORITY

# A spreadsheet evaluates a cell that starts with = + - @ (and tab / CR). Every such cell is
# escaped (the OWASP rule), phone numbers and negative numbers written as text included: an
# exemption for "+ or - then a digit" let "-1+cmd|..." through as a formula. The Parquet file
# keeps the raw values.
_FORMULA_PATTERN = r"^[=+\-@\t\r]"
_FORMULA = re.compile(_FORMULA_PATTERN)


def export_dir(settings: Settings, d: date) -> storage.Location:
    """``<exports>/priority/date=D``, as readers see it (on an object store: its committed version)."""
    return storage.committed(settings.exports / "priority" / f"date={d.isoformat()}")


def escape_cell(value: str | None) -> str | None:
    """Prefix ``'`` to a cell a spreadsheet would run as a formula."""
    if value is None or not _FORMULA.match(value):
        return value
    return "'" + value


def escape_formulas(table: pa.Table) -> pa.Table:
    """The table with every string column escaped against CSV formula injection."""
    cols = []
    for name in table.column_names:
        col = table.column(name)
        if pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            hit = pc.fill_null(pc.match_substring_regex(col, _FORMULA_PATTERN), False)
            col = pc.if_else(hit, pc.binary_join_element_wise("'", col, ""), col)
        cols.append(col)
    return pa.table(cols, names=table.column_names)


def _write_parquet(table: pa.Table, path: Path) -> None:
    pq.write_table(table, path, compression="zstd")


def write_csv(table: pa.Table, path: Path) -> None:
    pacsv.write_csv(escape_formulas(table), path, write_options=pacsv.WriteOptions(quoting_style="needed"))


def publish(settings: Settings, d: date) -> dict:
    """Export ``scores/date=D`` as the priority directory of D; return the manifest.

    Holds the home lock (re-entrant: a ``run`` already holds it) from reading the scores until the
    directory is in place, so an erasure either completes before (its rows are dropped here) or
    waits until after (it rewrites the export)."""
    with home_lock(settings, f"publish {d.isoformat()}"):
        return _publish(settings, d)


def _distinct_persons(table: pa.Table) -> int:
    return pc.count_distinct(table.column("person_id")).as_py() if table.num_rows else 0


def with_clock(settings: Settings, d: date, scored: pa.Table) -> pa.Table:
    """The scored rows with each person's clock (contract v1.1): ``timezone`` and ``best_hour_utc``;
    ``best_hour`` is expressed in the clock ``timezone`` names."""
    frame = scored.to_pandas()
    zone, local, utc = export_clock(settings, d, frame["person_id"], frame["best_hour"])
    frame["best_hour"], frame["timezone"], frame["best_hour_utc"] = local, zone, utc
    return pa.Table.from_pandas(frame, schema=PRIORITY_SCHEMA, preserve_index=False)


def _publish(settings: Settings, d: date) -> dict:
    if settings.shards > 1:
        map_shards(_write_part, settings, d, workers=settings.shard_workers)
        return _commit_parts(settings, d)
    scores = read_scores(settings, d)
    report = read_report(settings, d)
    table = with_clock(settings, d, scores.select(CONTRACT_COLUMNS))
    # before pseudonymising: the erasure records are keyed hashes of the raw ids
    persons_scored = _distinct_persons(table)
    seen = erased_hashes(settings)
    table, erased_rows = drop_erased(settings, table, seen)
    erased_persons = persons_scored - _distinct_persons(table) if erased_rows else 0
    return _write_export(settings, d, table, report, erased_persons, seen)


def publish_part(settings: Settings, d: date, shard: Shard) -> dict:
    """One shard's rows of the export of d, with their clock and without erased persons, staged in the
    lake (``export_parts``) for ``publish_commit``; nothing is visible to readers yet."""
    with home_lock(settings, f"publish {d.isoformat()} {shard}"):
        return _write_part(settings, d, shard)


def publish_commit(settings: Settings, d: date) -> dict:
    """The export of d from every shard's part: one priority file under one manifest, committed once."""
    with home_lock(settings, f"publish {d.isoformat()}"):
        return _commit_parts(settings, d)


def _write_part(settings: Settings, d: date, shard: Shard) -> dict:
    scores = read_scores(settings, d, shard)
    table = with_clock(settings, d, scores.select(CONTRACT_COLUMNS))
    persons_scored = _distinct_persons(table)
    hashes = erased_hashes(settings)  # a later erasure is caught at commit
    erasures = len(hashes)
    table, erased_rows = drop_erased(settings, table, hashes)
    facts = {"shard": shard.folder, "rows": table.num_rows, "erasures_seen": erasures,
             "erased_persons": persons_scored - _distinct_persons(table) if erased_rows else 0}  # fmt: skip
    write_partition(settings, shard.kind(EXPORT_PARTS), d, table, {PART_FACTS: json.dumps(facts).encode()})
    return facts


def _commit_parts(settings: Settings, d: date) -> dict:
    shards = all_shards(settings.shards)
    folders = [partition_dir(settings, shard.kind(EXPORT_PARTS), d) for shard in shards]
    missing = [str(f) for f in folders if not (f / PART_FACTS).is_file()]
    if missing:
        raise NotReady(f"no export part for {d} in {missing[0]} ({len(missing)} of {len(shards)} shards)")
    facts = [json.loads((f / PART_FACTS).read_text()) for f in folders]
    table = pa.concat_tables([read_table(f / DATA_FILE) for f in folders])
    # the order of an unsharded export: by person, then rank
    table = table.sort_by([("person_id", "ascending"), ("rank", "ascending")]).combine_chunks()
    erased_persons = sum(f["erased_persons"] for f in facts)
    seen = erased_hashes(settings)
    if len(seen) > min(f["erasures_seen"] for f in facts):  # erased since a part
        before = _distinct_persons(table)
        table, erased_rows = drop_erased(settings, table, seen)
        erased_persons += before - _distinct_persons(table) if erased_rows else 0
    return _write_export(settings, d, table, read_report(settings, d), erased_persons, seen)


def _write_export(
    settings: Settings, d: date, table: pa.Table, report: dict, erased_persons: int, seen: set[str]
) -> dict:
    """Commit the export, then read the erasure records again (``seen``: those ``table`` was filtered
    with). An erasure on another machine is not held off by this home's lock; it records first and
    rewrites the exports after, while this commits first and reads the records after, so one of the
    two always sees the other: a person erased in between is dropped by a second commit."""
    raw = table
    if settings.pseudonymise_exports:
        table = pseudonymise(table, export_key(settings))
    target = export_dir(settings, d)
    with atomic_dir(target) as staging:
        _write_parquet(table, staging / "priority.parquet")
        write_csv(table, staging / "priority.csv")
        files = {
            name: {"sha256": file_sha256(staging / name), "bytes": (staging / name).stat().st_size}
            for name in ("priority.parquet", "priority.csv")
        }
        manifest = _manifest(settings, d, table, report, files, erased_persons)
        (staging / "_manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        (staging / "_SUCCESS").write_text("")
    now = erased_hashes(settings)
    if now - seen:
        kept, late_rows = drop_erased(settings, raw, now)
        if late_rows:
            late = _distinct_persons(raw) - _distinct_persons(kept)
            log.warning("%s: %d person(s) erased while the export was committed: committed again", d, late)
            return _write_export(settings, d, kept, report, erased_persons + late, now)
    log.info(
        "%s: published %d rows for %d persons (%d erased since scoring) -> %s",
        d,
        manifest["rows"],
        manifest["persons"],
        erased_persons,
        target,
    )
    return {**manifest, "path": str(target)}


def _manifest(
    settings: Settings, d: date, table: pa.Table, report: dict, files: dict, erased_persons: int
) -> dict:
    model = report.get("model") or {}
    return {
        "schema_version": SCHEMA_VERSION,
        "date": d.isoformat(),
        "valid_from": (d + timedelta(days=1)).isoformat(),
        "model": {
            "name": model.get("name", settings.model_name),
            "version": model.get("version"),
            "run_id": model.get("run_id"),
        },
        "rows": table.num_rows,
        "persons": _distinct_persons(table),
        "persons_left_out": {
            "cap": int(report.get("persons_left_out_cap", 0)),
            "suppression": int(report.get("persons_left_out_suppression", 0)),
            "erasure": int(erased_persons),
        },
        "addresses_left_out": {
            "cap": int(report.get("addresses_capped", 0)),
            "suppression": int(report.get("addresses_suppressed", 0)),
            "invalid": int(report.get("addresses_invalid_dropped", 0)),
            "wrong_party": int(report.get("addresses_wrong_party_dropped", 0)),
        },
        "explored_persons": int(report.get("explored_persons", 0)),
        "pseudonymised": bool(settings.pseudonymise_exports),
        "files": files,
        "config_hash": settings.config_hash(),
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
