"""Privacy helpers at the foundation: the keyed hash, the rules for its key, erased persons.

Every layer that hides or forgets a person goes through here: ingest drops the deliveries of an
erased person, publish pseudonymises ids in the export, erasure records the keyed hash of the id
it removed. One HMAC-SHA256, two key rules:

- erasure records: the key from the variable named by ``settings.hmac_key_env``, else a key
  generated once and kept under ``<home>/.secrets`` (erasure must work on a fresh home) — but not
  when the lake is on an object store: workers on other machines must compute the same hash, so
  there the variable is required;
- pseudonymised exports: the variable only, because readers of the export must be able to
  compute the same hash, so a key that only this home knows would be useless to them.

Where the records are: ``<home>/erasure/`` (one table, with the audit entries), and, when the lake
is on an object store, also one object per erased person under ``<lake>/_erasure/persons/`` named
by the keyed hash, so that a worker on another machine (its own home) drops the person as well.
One object per person because an object store has no lock: two workers erasing at once each add
their own object, where a shared table rewritten by both would lose one of the two.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contactrank.errors import InputError
from contactrank.settings import Settings
from contactrank.storage import ObjectPath, is_remote

ERASURE_FILE = "erasures.parquet"
SHARED_ERASURES = "_erasure"  # under the lake; no commit marker, so no reader of partitions sees it


def hmac_hex(key: bytes, value: str) -> str:
    """HMAC-SHA256 of ``value`` under ``key``, hex."""
    return hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()


def key_from_environment(settings: Settings) -> bytes | None:
    """The key in the variable named by ``settings.hmac_key_env``, else in the file named by the same
    variable with ``_FILE`` appended (a container secret: the value never sits in the environment)."""
    name = settings.hmac_key_env
    value = os.environ.get(name)
    if value:
        return value.encode()
    path = os.environ.get(f"{name}_FILE")
    if not path:
        return None
    try:
        key = open(path, "rb").read().strip()
    except OSError as exc:
        raise InputError(f"{name}_FILE names {path}, which cannot be read: {exc.strerror}") from exc
    if not key:
        raise InputError(f"{name}_FILE names {path}, which is empty")
    return key


def erasure_key(settings: Settings) -> bytes:
    """The key of erasure records: the env var named by settings.hmac_key_env, else <home>/.secrets."""
    env = key_from_environment(settings)
    home_key = settings.home / ".secrets" / "hmac.key"
    if env:
        if (
            home_key.is_file()
            and erasure_records_path(settings).is_file()
            and home_key.read_bytes().strip() != env
        ):
            # records keyed with the home's own key would silently stop matching: fail closed
            raise InputError(
                f"this home's erasure records were keyed with {home_key}, not with the key in"
                f" {settings.hmac_key_env}: give the variable that key (its file's contents)"
            )
        return env
    if is_remote(settings.lake):
        raise InputError(
            f"the lake is on an object store ({settings.lake}), so erasure records are shared by"
            f" every worker and must be keyed alike on each: set {settings.hmac_key_env}"
            f" (or {settings.hmac_key_env}_FILE)"
            " (a key made by one home would not match another's)"
        )
    path = home_key
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(secrets.token_hex(32))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    return path.read_text().strip().encode()


def export_key(settings: Settings) -> bytes:
    """The key of pseudonymised exports: the env var only (readers of the export share it)."""
    key = key_from_environment(settings)
    if not key:
        raise InputError(
            f"pseudonymise_exports is on but the key variable {settings.hmac_key_env}"
            f" (or {settings.hmac_key_env}_FILE) is not set"
        )
    return key


def keyed_hash(settings: Settings, value: str) -> str:
    """HMAC-SHA256 of an id: lets us recognise an erased person without keeping the id."""
    return hmac_hex(erasure_key(settings), value)


def erasure_records_path(settings: Settings):
    return settings.home / "erasure" / ERASURE_FILE


def shared_erasures(settings: Settings) -> ObjectPath | None:
    """The folder of the per-person erasure objects every worker reads, when the lake is remote."""
    return settings.lake / SHARED_ERASURES if is_remote(settings.lake) else None


def shared_erased_hashes(settings: Settings) -> set[str]:
    """Keyed hashes recorded on the object store (one listing; a failing store raises: fail closed)."""
    root = shared_erasures(settings)
    return set() if root is None else {p.name for p in (root / "persons").iterdir()}


def share_erasure_record(
    settings: Settings, person_hash: str, body: bytes, audit_name: str | None = None
) -> None:
    """Put the person's record (or, with ``audit_name``, an audit entry) on the object store: one
    object, so a concurrent erasure elsewhere cannot overwrite it."""
    root = shared_erasures(settings)
    if root is None:
        return
    target = root / ("audit" if audit_name else "persons") / (audit_name or person_hash)
    with target.fs.open_output_stream(target.key) as fh:
        fh.write(body)


def erased_hashes(settings: Settings) -> set[str]:
    """Keyed hashes of every erased person (ingest drops their future deliveries)."""
    path = erasure_records_path(settings)
    local = set()
    if path.is_file():
        local = set(pq.read_table(path, columns=["person_hash"]).column("person_hash").to_pylist())
    return local | shared_erased_hashes(settings)


def drop_erased(settings: Settings, table: pa.Table, hashes: set[str] | None = None) -> tuple[pa.Table, int]:
    """Remove rows of erased persons from a table with a person_id column; returns (table, dropped).

    ``hashes``: the records already read (``erased_hashes``), so a caller filtering several tables
    reads them, and lists the shared store, once."""
    hashes = erased_hashes(settings) if hashes is None else hashes
    if not hashes or "person_id" not in table.column_names or table.num_rows == 0:
        return table, 0
    # one HMAC per distinct person, with the key read once (not per row: a 1M-row day took seconds)
    ids = pc.cast(table.column("person_id"), pa.string())
    key = erasure_key(settings)
    erased = [p for p in pc.unique(ids).drop_null().to_pylist() if hmac_hex(key, p) in hashes]
    if not erased:
        return table, 0
    kept = table.filter(pc.invert(pc.fill_null(pc.is_in(ids, pa.array(erased, pa.string())), False)))
    return kept, table.num_rows - kept.num_rows


def pseudonymise(
    table: pa.Table, key: bytes, columns: tuple[str, ...] = ("person_id", "contact_id")
) -> pa.Table:
    """Replace the id columns by their HMAC-SHA256 (hex) under ``key``."""
    for name in columns:
        i = table.column_names.index(name)
        values = [None if v is None else hmac_hex(key, v) for v in table.column(name).to_pylist()]
        table = table.set_column(i, name, pa.array(values, type=pa.string()))
    return table
