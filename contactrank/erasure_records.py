"""The records an erasure leaves: the keyed hash that blocks the person from then on, and an audit entry.

``<home>/erasure/`` holds one table of keyed hashes and the audit entries, the folder swapped whole
(``atomic_dir``) on each change; when the lake is on an object store each record and audit entry is
also one object beside the lake (``privacy.shared_erasures``), which every worker reads.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contactrank.features.lake import atomic_dir
from contactrank.privacy import ERASURE_FILE, share_erasure_record, shared_erased_hashes, shared_erasures
from contactrank.settings import Settings

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Audit:
    """What a finished erasure did (no raw id: paths and counts only)."""

    rows_removed: int
    rewritten: list
    scrubbed: list[str]


def record_erasure(settings: Settings, person_hash: str, audit: Audit | None = None) -> None:
    """Add the erasure suppression (keyed hash) and, once done, one audit entry; written atomically."""
    target = settings.home / "erasure"
    previous = pq.read_table(target / ERASURE_FILE) if (target / ERASURE_FILE).is_file() else None
    when = datetime.now(UTC).isoformat(timespec="seconds")  # audit timestamp only; decides nothing
    if audit is None:
        # the shared record first: from here on every worker drops the person; hashes this home
        # recorded before its lake was shared go along, so no earlier erasure stays local
        local = set(previous.column("person_hash").to_pylist()) if previous is not None else set()
        if shared_erasures(settings) is not None:
            body = json.dumps({"reason": "erasure", "erased_at": when}).encode()
            for missing in sorted(({person_hash} | local) - shared_erased_hashes(settings)):
                share_erasure_record(settings, missing, body)
        if person_hash in local:
            return
    row = pa.table({"person_hash": [person_hash], "reason": ["erasure"], "erased_at": [when]})
    if previous is not None:
        others = previous.filter(pc.invert(pc.equal(previous.column("person_hash"), person_hash)))
        table = pa.concat_tables([others, row])
    else:
        table = row
    if audit is None:
        with atomic_dir(target) as staging:
            _carry_over(target, staging)
            pq.write_table(table, staging / ERASURE_FILE)
        return
    audit_entry = {
        "person_hash": person_hash,
        "erased_at": when,
        "rows_removed": audit.rows_removed,
        "rewritten": [
            str(Path(p).relative_to(settings.home)) if settings.home in Path(p).parents else p
            for p in audit.rewritten
        ],
        "scrubbed": audit.scrubbed,
    }
    audit_name = f"audit-{when.replace(':', '')}-{person_hash[:12]}.json"
    with atomic_dir(target) as staging:
        _carry_over(target, staging)
        pq.write_table(table, staging / ERASURE_FILE)
        (staging / audit_name).write_text(json.dumps(audit_entry, indent=2))
    share_erasure_record(settings, person_hash, json.dumps(audit_entry, indent=2).encode(), audit_name)
    log.info("erased person %s… from %d directories", person_hash[:12], len(audit.rewritten))


def _carry_over(target: Path, staging: Path) -> None:
    if target.is_dir():
        for f in target.iterdir():
            if f.is_file():
                shutil.copy2(f, staging / f.name)
