"""GDPR erasure: remove a person from every table, export and artifact under CONTACTRANK_HOME.

What it does, in order:
1. collects the person's addresses (they are personal data too) from the lake;
2. rewrites every Parquet/CSV file under the lake, the exports, the landing zone (when it lies under
   the home) and the MLflow artifacts without the person's rows — each lake partition and export
   directory through `atomic_dir`, so readers never see a half-erased table; export manifests are
   rewritten with the new row counts and checksums;
3. scrubs the raw id from any other text file (reports, JSON) and refuses to finish if the id is still
   found anywhere (a final byte scan);
4. adds a keyed-hash `erasure` entry that ingest uses to drop future deliveries of the person, and
   writes an audit entry (when, what was rewritten) holding only the keyed hash.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from contactrank.errors import ContactrankError
from contactrank.features.lake import atomic_dir
from contactrank.ml.publish import write_csv  # the export's formula-injection escaping
from contactrank.privacy import ERASURE_FILE, keyed_hash
from contactrank.settings import Settings

log = logging.getLogger(__name__)

_ID_COLUMNS = ("person_id", "contact_id")


@dataclass
class _Plan:
    person_id: str
    contact_ids: set[str] = field(default_factory=set)
    rewritten: list[str] = field(default_factory=list)
    rows_removed: int = 0

    def mask(self, table: pa.Table) -> pa.Array | None:
        """Boolean 'remove this row' mask, or None when no id column is present."""
        masks = []
        if "person_id" in table.column_names:
            masks.append(pc.equal(pc.cast(table.column("person_id"), pa.string()), self.person_id))
        if "contact_id" in table.column_names and self.contact_ids:
            masks.append(pc.is_in(pc.cast(table.column("contact_id"), pa.string()), pa.array(sorted(self.contact_ids))))
        if not masks:
            return None
        out = masks[0]
        for m in masks[1:]:
            out = pc.or_(out, m)
        return pc.fill_null(out, False)


def _collect_contacts(settings: Settings, person_id: str) -> set[str]:
    found: set[str] = set()
    for kind in ("contacts_state", "contacts", "attempts"):
        for path in (settings.lake / kind).glob("date=*/*.parquet"):
            t = pq.read_table(path, columns=["person_id", "contact_id"])
            hit = t.filter(pc.equal(t.column("person_id"), person_id))
            found.update(v for v in hit.column("contact_id").to_pylist() if v)
    return found


def _filter_file(path: Path, plan: _Plan) -> pa.Table | None:
    """The file's table without the person's rows, or None when nothing changes."""
    if path.suffix == ".parquet":
        table = pq.read_table(path)
    else:
        opts = pacsv.ConvertOptions(strings_can_be_null=False, column_types={c: pa.string() for c in _ID_COLUMNS})
        table = pacsv.read_csv(path, convert_options=opts)
    mask = plan.mask(table)
    if mask is None or not pc.any(mask).as_py():
        return None
    kept = table.filter(pc.invert(mask))
    plan.rows_removed += table.num_rows - kept.num_rows
    return kept


def _write_like(path: Path, table: pa.Table) -> None:
    if path.suffix == ".parquet":
        pq.write_table(table, path, compression="zstd")
    elif path.name.startswith("priority") or path.name.startswith(".priority"):
        write_csv(table, path)
    else:
        pacsv.write_csv(table, path)


def _rewrite_dir(directory: Path, plan: _Plan) -> None:
    """Rewrite one partition/export directory atomically if any of its tables holds the person."""
    changed = {p: t for p in sorted(directory.iterdir()) if p.suffix in {".parquet", ".csv"} and (t := _filter_file(p, plan)) is not None}
    if not changed:
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
    with atomic_dir(directory) as staging:
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
    plan.rewritten.append(str(directory))


def _refresh_manifest(manifest: Path, staging: Path) -> None:
    data = json.loads(manifest.read_text())
    files = data.get("files") or data.get("sha256") or {}
    for name in list(files):
        f = staging / name
        if f.is_file():
            digest = hashlib.sha256(f.read_bytes()).hexdigest()
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
    """Erase ``person_id`` everywhere under the home; idempotent (a second call finds nothing)."""
    plan = _Plan(person_id=person_id, contact_ids=_collect_contacts(settings, person_id))
    roots = [settings.lake, settings.exports, settings.home / "mlartifacts"]
    landing = settings.landing.resolve()
    if settings.home.resolve() in landing.parents:
        roots.append(landing)
    for root in roots:
        if not root.is_dir():
            continue
        dirs = sorted({p.parent for ext in ("*.parquet", "*.csv") for p in root.rglob(ext) if not p.parent.name.startswith(".")})
        for directory in dirs:
            _rewrite_dir(directory, plan)

    raw = person_id.encode()
    scrubbed = [str(p) for p in _files_with(settings.home, raw) if p.suffix not in {".parquet", ".db", ".sqlite"} and _scrub_text(p, raw)]
    left = [str(p) for p in _files_with(settings.home, raw)]
    if left:
        raise ContactrankError(f"erasure incomplete: the id is still in {left[0]} ({len(left)} file(s))")

    person_hash = keyed_hash(settings, person_id)
    _record(settings, person_hash, plan, scrubbed)
    return {
        "person_hash": person_hash,
        "addresses": len(plan.contact_ids),
        "rows_removed": plan.rows_removed,
        "directories_rewritten": len(plan.rewritten),
        "files_scrubbed": len(scrubbed),
    }


def _record(settings: Settings, person_hash: str, plan: _Plan, scrubbed: list[str]) -> None:
    """Add the erasure suppression (keyed hash) and one audit entry; both written atomically."""
    target = settings.home / "erasure"
    previous = pq.read_table(target / ERASURE_FILE) if (target / ERASURE_FILE).is_file() else None
    when = datetime.now(UTC).isoformat(timespec="seconds")  # audit timestamp only; decides nothing
    row = pa.table({"person_hash": [person_hash], "reason": ["erasure"], "erased_at": [when]})
    table = row if previous is None else pa.concat_tables([previous.filter(pc.invert(pc.equal(previous.column("person_hash"), person_hash))), row])
    audit_entry = {
        "person_hash": person_hash,
        "erased_at": when,
        "rows_removed": plan.rows_removed,
        "rewritten": [str(Path(p).relative_to(settings.home)) if settings.home in Path(p).parents else p for p in plan.rewritten],
        "scrubbed": scrubbed,
    }
    with atomic_dir(target) as staging:
        if target.is_dir():
            for f in target.iterdir():
                if f.is_file():
                    shutil.copy2(f, staging / f.name)
        pq.write_table(table, staging / ERASURE_FILE)
        (staging / f"audit-{when.replace(':', '')}-{person_hash[:12]}.json").write_text(json.dumps(audit_entry, indent=2))
    log.info("erased person %s… from %d directories", person_hash[:12], len(plan.rewritten))
