"""GDPR erasure: remove a person from every table, export and artifact under CONTACTRANK_HOME.

What it does, in order:
1. collects the person's addresses (they are personal data too) from the lake;
2. rewrites every Parquet/CSV file under the lake, the exports, the landing zone (when it lies under
   the home) and the MLflow artifacts without the person's rows — each lake partition and export
   directory through `atomic_dir`, so readers never see a half-erased table; export manifests are
   rewritten with the new row counts and checksums; a lake or exports on an object store is
   rewritten folder by folder (each committed folder downloaded, filtered, committed anew) and its
   uncommitted uploads, which may hold the person too, are deleted;
3. scrubs the raw id from any other text file (reports, JSON) and refuses to finish if the id is
   still found anywhere: in the decoded cells of a table, or in the bytes of any other file;
4. the keyed-hash `erasure` entry that ingest and publish use to drop the person is written before
   all of this (so an erasure that cannot finish still blocks re-deliveries), the audit entry (when,
   what was rewritten, holding only the keyed hash) after it (``contactrank.erasure_records``: with
   the lake on an object store, every worker's ingest and publish read them there).
Only rows of the erased person go: an address the person shared with someone else stays theirs.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from contactrank import storage
from contactrank.erasure_records import Audit, record_erasure
from contactrank.errors import ContactrankError, InputError
from contactrank.features.lake import atomic_dir, file_sha256, partition_dates, partition_dir, read_table
from contactrank.lock import home_lock
from contactrank.ml.publish import write_csv  # the export's formula-injection escaping
from contactrank.privacy import (
    erased_hashes,
    keyed_hash,
)
from contactrank.settings import Settings
from contactrank.storage import Location, ObjectPath

log = logging.getLogger(__name__)

_ID_COLUMNS = ("person_id", "contact_id")
_TABULAR = {".parquet", ".csv"}


@dataclass
class _Plan:
    """What to remove: rows whose person is the erased one, and in tables keyed by address alone
    (no person column) the addresses that only this person ever had — a number shared with
    someone else stays theirs."""

    person_id: str
    contact_ids: set[str] = field(default_factory=set)  # every address of the person
    own_contact_ids: set[str] = field(default_factory=set)  # those that nobody else has
    rewritten: list[str] = field(default_factory=list)
    rows_removed: int = 0

    def mask(self, table: pa.Table) -> pa.Array | None:
        """Boolean 'remove this row' mask, or None when the table names no person or address."""
        if "person_id" in table.column_names:
            # priority.csv writes an id that starts like a formula with a leading quote
            ids = pa.array([self.person_id, "'" + self.person_id], pa.string())
            out = pc.is_in(pc.cast(table.column("person_id"), pa.string()), ids)
            if "_error" in table.column_names:  # a quarantined line too malformed to have columns
                out = pc.or_(pc.fill_null(out, False), _lines_naming(table.column("_error"), self.person_id))
            return pc.fill_null(out, False)
        if "_error" in table.column_names:
            return _lines_naming(table.column("_error"), self.person_id)
        if "contact_id" in table.column_names and self.own_contact_ids:
            owned = pa.array(sorted(self.own_contact_ids), pa.string())
            return pc.fill_null(pc.is_in(pc.cast(table.column("contact_id"), pa.string()), owned), False)
        return None


def _lines_naming(text: pa.ChunkedArray | pa.Array, person_id: str) -> pa.Array:
    """Rows whose quarantined raw text holds ``person_id`` as one of its CSV cells (decoded)."""
    hits = []
    for value in pc.cast(text, pa.string()).to_pylist():
        cells: list[str] = []
        if value:
            raw = value.split(": ", 1)[-1]
            try:
                cells = [c.strip() for row in csv.reader(io.StringIO(raw)) for c in row]
            except csv.Error:
                cells = [c.strip().strip('"') for c in raw.split(",")]
        hits.append(person_id in cells)
    return pa.array(hits, pa.bool_())


def _collect_contacts(settings: Settings, person_id: str) -> tuple[set[str], set[str]]:
    """(the person's addresses, the addresses other persons have)."""
    mine: set[str] = set()
    others: set[str] = set()
    for kind in ("contacts_state", "contacts", "attempts"):
        paths = [
            p
            for x in partition_dates(settings, kind)
            for p in partition_dir(settings, kind, x).glob("*.parquet")
        ]
        for path in paths:
            t = read_table(path, columns=["person_id", "contact_id"])
            is_mine = pc.fill_null(pc.equal(t.column("person_id"), person_id), False)
            mine.update(v for v in t.filter(is_mine).column("contact_id").to_pylist() if v)
            others.update(v for v in t.filter(pc.invert(is_mine)).column("contact_id").to_pylist() if v)
    return mine, others


def _read_table(path: Path) -> pa.Table:
    """A Parquet or CSV file as a table of strings-for-ids; a CSV with malformed lines is read
    line by line, so that a line the ingest quarantined can still be erased."""
    if path.suffix == ".parquet":
        return pq.read_table(path)
    opts = pacsv.ConvertOptions(strings_can_be_null=False, column_types={c: pa.string() for c in _ID_COLUMNS})
    try:
        return pacsv.read_csv(path, convert_options=opts)
    except (pa.ArrowInvalid, UnicodeDecodeError):
        with path.open(newline="", encoding="utf-8", errors="surrogateescape") as fh:
            rows = list(csv.reader(fh))
        header, body = (rows[0], rows[1:]) if rows else ([], [])
        width = max([len(header), *(len(r) for r in body)])
        names = [*header, *(f"_extra_{i}" for i in range(len(header), width))]
        columns = {n: [r[i] if i < len(r) else None for r in body] for i, n in enumerate(names)}
        return pa.table({n: pa.array(v, pa.string()) for n, v in columns.items()})


def _filter_file(path: Path, plan: _Plan) -> pa.Table | None:
    """The file's table without the person's rows, or None when nothing changes."""
    table = _read_table(path)
    mask = plan.mask(table)
    if any(n.startswith("_extra_") for n in table.column_names):  # ragged CSV: any cell naming the person
        ragged = [pc.fill_null(pc.equal(table.column(n), plan.person_id), False) for n in table.column_names]
        for m in ragged:
            mask = m if mask is None else pc.or_(mask, m)
    if mask is None or not pc.any(mask).as_py():
        return None
    kept = table.filter(pc.invert(mask))
    plan.rows_removed += table.num_rows - kept.num_rows
    return kept


def _cells_naming(path: Path, person_id: str) -> bool:
    """Whether a table still holds the person in a person column (decoded cells, not bytes)."""
    try:
        table = _read_table(path)
    except (OSError, pa.ArrowInvalid):
        return False
    mask = _Plan(person_id).mask(table)
    return mask is not None and bool(pc.any(mask).as_py())


def _write_like(path: Path, table: pa.Table) -> None:
    if any(n.startswith("_extra_") for n in table.column_names):  # a ragged CSV keeps its shape
        _write_ragged_csv(table, path)
    elif path.suffix == ".parquet":
        pq.write_table(table, path, compression="zstd")
    elif path.name.startswith("priority") or path.name.startswith(".priority"):
        write_csv(table, path)
    else:
        pacsv.write_csv(table, path)


def _write_ragged_csv(table: pa.Table, path: Path) -> None:
    header = [n for n in table.column_names if not n.startswith("_extra_")]
    with path.open("w", newline="", encoding="utf-8", errors="surrogateescape") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for row in table.to_pylist():
            cells = [row[n] for n in table.column_names]
            while cells and cells[-1] is None and len(cells) > len(header):
                cells.pop()
            writer.writerow(["" if c is None else c for c in cells])


def _rewrite_dir(
    directory: Path, plan: _Plan, target: Location | None = None, scrubbed: bool = False
) -> None:
    """Rewrite one partition/export directory atomically if any of its tables holds the person.

    ``target``: where the rewrite is committed when ``directory`` is a local copy of it (an object
    store's folder); ``scrubbed``: a text file of the copy was scrubbed, so commit even if no table changed.
    """
    changed = {
        p: t
        for p in sorted(directory.iterdir())
        if p.suffix in _TABULAR and (t := _filter_file(p, plan)) is not None
    }
    if not changed and not scrubbed:
        return
    if any(p.is_dir() for p in directory.iterdir()):
        # a folder that holds other folders (e.g. the landing root with truth files) is not a
        # partition: replace its changed files one by one instead of swapping the whole tree
        for src, table in changed.items():
            tmp = src.with_name(f".{src.name}.erasing{src.suffix}")
            _write_like(tmp, table)
            os.replace(tmp, src)
        plan.rewritten.append(str(directory))
        return
    with atomic_dir(target or directory) as staging:
        for src in sorted(directory.iterdir()):
            if src.name == "_SUCCESS":
                continue
            if src in changed:
                _write_like(staging / src.name, changed[src])
            elif src.is_file():
                shutil.copy2(src, staging / src.name)
        manifest = staging / "_manifest.json"
        if manifest.is_file():
            _refresh_manifest(manifest, staging)
        if (directory / "_SUCCESS").exists():
            (staging / "_SUCCESS").write_text("")
    plan.rewritten.append(str(target or directory))


def _refresh_manifest(manifest: Path, staging: Path) -> None:
    data = json.loads(manifest.read_text())
    files = data.get("files") or data.get("sha256") or {}
    for name in list(files):
        f = staging / name
        if f.is_file():
            digest = file_sha256(f)
            if isinstance(files[name], dict):
                files[name]["sha256"] = digest
            else:
                files[name] = digest
    parquet = staging / "priority.parquet"
    if parquet.is_file():
        t = pq.read_table(parquet, columns=["person_id"])
        data["rows"] = t.num_rows
        data["persons"] = len(set(t.column("person_id").to_pylist()))
    data["erasures_applied"] = int(data.get("erasures_applied", 0)) + 1
    manifest.write_text(json.dumps(data, indent=2, sort_keys=True))


def _scrub_text(path: Path, raw: bytes) -> bool:
    blob = path.read_bytes()
    if raw not in blob:
        return False
    tmp = path.with_name(f".{path.name}.erasing")
    tmp.write_bytes(blob.replace(raw, b"[erased]"))
    os.replace(tmp, path)
    return True


def _files_with(root: Path, raw: bytes) -> list[Path]:
    out = []
    for p in root.rglob("*"):
        if p.is_file() and not p.is_symlink():
            try:
                if raw in p.read_bytes():
                    out.append(p)
            except OSError:
                continue
    return out


def erase(settings: Settings, person_id: str) -> dict[str, Any]:
    """Erase ``person_id`` everywhere under the home; idempotent (a second call finds nothing).

    Takes the home's lock, so no run reads or publishes while the person is half erased; the
    keyed-hash record is written first, so that even an erasure that cannot finish blocks every
    later delivery of the person and publish drops them.
    """
    if not person_id or len(person_id) > settings.max_string_length:
        raise InputError(f"invalid person id of {len(person_id)} characters")
    with home_lock(settings, "erase"):
        person_hash = keyed_hash(settings, person_id)
        record_erasure(settings, person_hash)
        mine, others = _collect_contacts(settings, person_id)
        plan = _Plan(person_id=person_id, contact_ids=mine, own_contact_ids=mine - others)
        raw = person_id.encode("utf-8", "surrogateescape")
        for root in _remote_roots(settings):
            _erase_remote(root, plan, raw)
        for root in _roots(settings):
            dirs = sorted(
                {
                    p.parent
                    for ext in ("*.parquet", "*.csv")
                    for p in root.rglob(ext)
                    if not p.parent.name.startswith(".")
                }
            )
            for directory in dirs:
                _rewrite_dir(directory, plan)

        _drop_request(settings, person_hash)  # the queued request holds the raw id: consumed now
        others_files = [p for p in _files_with(settings.home, raw) if p.suffix not in _TABULAR]
        scrubbed = [
            str(p) for p in others_files if p.suffix not in {".db", ".sqlite"} and _scrub_text(p, raw)
        ]
        left = [str(p) for p in _files_with(settings.home, raw) if p.suffix not in _TABULAR]
        left += [
            str(p)
            for root in _roots(settings)
            for ext in ("*.parquet", "*.csv")
            for p in root.rglob(ext)
            if _cells_naming(p, person_id)
        ]
        left += [name for root in _remote_roots(settings) for name in _remote_naming(root, person_id, raw)]
        if left:
            raise ContactrankError(f"erasure incomplete: the id is still in {left[0]} ({len(left)} file(s))")
        record_erasure(settings, person_hash, Audit(plan.rows_removed, plan.rewritten, scrubbed))
    return {
        "person_hash": person_hash,
        "addresses": len(plan.contact_ids),
        "rows_removed": plan.rows_removed,
        "directories_rewritten": len(plan.rewritten),
        "files_scrubbed": len(scrubbed),
    }


# beside erasure/, not in it: that folder is swapped whole when a record is added
REQUESTS_DIR = "erasure-requests"


def request_erasure(settings: Settings, person_id: str) -> dict[str, str]:
    """Queue the erasure of ``person_id`` for a scheduler that must not see the raw id.

    The id is kept under ``<home>/erasure-requests/<keyed hash>`` (the home is what erasure wipes);
    the returned keyed hash is what an Airflow run is triggered with, so Airflow's database, its
    run conf, XComs and task logs never hold the id.
    """
    if not person_id or len(person_id) > settings.max_string_length:
        raise InputError(f"invalid person id of {len(person_id)} characters")
    person_hash = keyed_hash(settings, person_id)
    folder = settings.home / REQUESTS_DIR
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".{person_hash}.tmp"
    tmp.write_bytes(person_id.encode("utf-8", "surrogateescape"))
    os.chmod(tmp, 0o600)
    os.replace(tmp, folder / person_hash)
    return {"person_hash": person_hash}


def erase_requested(settings: Settings, person_hash: str) -> dict[str, Any]:
    """Carry out the erasure queued under ``person_hash`` (see ``request_erasure``)."""
    if len(person_hash) != 64 or any(c not in "0123456789abcdef" for c in person_hash):
        raise InputError("person_hash must be the 64-character keyed hash printed by `erase --request`")
    request = settings.home / REQUESTS_DIR / person_hash
    if not request.is_file():
        if person_hash in erased_hashes(settings):
            return {"person_hash": person_hash, "status": "already erased"}
        raise InputError(f"no erasure request {person_hash[:12]}… under the home")
    return erase(settings, request.read_bytes().decode("utf-8", "surrogateescape"))


def _drop_request(settings: Settings, person_hash: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (settings.home / REQUESTS_DIR / person_hash).unlink()


def _roots(settings: Settings) -> list[Path]:
    roots = [r for r in (settings.lake, settings.exports) if isinstance(r, Path)] + [
        settings.home / "mlartifacts"
    ]
    landing = settings.landing.resolve()
    if settings.home.resolve() in landing.parents:
        roots.append(landing)
    return [r for r in roots if r.is_dir()]


def _remote_roots(settings: Settings) -> list[ObjectPath]:
    return [r for r in (settings.lake, settings.exports) if isinstance(r, ObjectPath)]


def _erase_remote(root: ObjectPath, plan: _Plan, raw: bytes) -> None:
    """Every committed folder under ``root`` rewritten without the person (tables filtered, other
    files scrubbed), through a local copy; then every upload no marker names is deleted."""
    storage.collect_uncommitted(root)  # a crashed writer's files may hold the person: never read, gone
    for folder in storage.committed_folders(root):
        with storage.local_copy(folder) as local:
            texts = [p for p in local.rglob("*") if p.is_file() and p.suffix not in _TABULAR]
            scrubbed = [p for p in texts if _scrub_text(p, raw)]
            _rewrite_dir(local, plan, target=folder, scrubbed=bool(scrubbed))


def _remote_naming(root: ObjectPath, person_id: str, raw: bytes) -> list[str]:
    """Files under ``root`` that still name the person (cells of tables, bytes of other files)."""
    left = [f"{root}/{key}" for key in storage.collect_uncommitted(root, dry_run=True)]
    for folder in storage.committed_folders(root):
        with storage.local_copy(folder) as local:
            for p in sorted(local.rglob("*")):
                if p.is_file() and (
                    _cells_naming(p, person_id) if p.suffix in _TABULAR else raw in p.read_bytes()
                ):
                    left.append(str(folder / p.relative_to(local).as_posix()))
    return left
