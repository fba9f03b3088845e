"""Privacy helpers at the foundation: the keyed hash, the rules for its key, erased persons.

Every layer that hides or forgets a person goes through here: ingest drops the deliveries of an
erased person, publish pseudonymises ids in the export, erasure records the keyed hash of the id
it removed. One HMAC-SHA256, two key rules:

- erasure records: the key from the variable named by ``settings.hmac_key_env``, else a key
  generated once and kept under ``<home>/.secrets`` (erasure must work on a fresh home);
- pseudonymised exports: the variable only, because readers of the export must be able to
  compute the same hash, so a key that only this home knows would be useless to them.
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

ERASURE_FILE = "erasures.parquet"


def hmac_hex(key: bytes, value: str) -> str:
    """HMAC-SHA256 of ``value`` under ``key``, hex."""
    return hmac.new(key, str(value).encode(), hashlib.sha256).hexdigest()


def erasure_key(settings: Settings) -> bytes:
    """The key of erasure records: the env var named by settings.hmac_key_env, else <home>/.secrets."""
    env = os.environ.get(settings.hmac_key_env)
    if env:
        return env.encode()
    path = settings.home / ".secrets" / "hmac.key"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(secrets.token_hex(32))
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    return path.read_text().strip().encode()


def export_key(settings: Settings) -> bytes:
    """The key of pseudonymised exports: the env var only (readers of the export share it)."""
    key = os.environ.get(settings.hmac_key_env)
    if not key:
        raise InputError(
            f"pseudonymise_exports is on but the key variable {settings.hmac_key_env} is not set"
        )
    return key.encode()


def keyed_hash(settings: Settings, value: str) -> str:
    """HMAC-SHA256 of an id: lets us recognise an erased person without keeping the id."""
    return hmac_hex(erasure_key(settings), value)


def erasure_records_path(settings: Settings):
    return settings.home / "erasure" / ERASURE_FILE


def erased_hashes(settings: Settings) -> set[str]:
    """Keyed hashes of every erased person (ingest drops their future deliveries)."""
    path = erasure_records_path(settings)
    if not path.is_file():
        return set()
    return set(pq.read_table(path, columns=["person_hash"]).column("person_hash").to_pylist())


def drop_erased(settings: Settings, table: pa.Table) -> tuple[pa.Table, int]:
    """Remove rows of erased persons from a table with a person_id column; returns (table, dropped)."""
    hashes = erased_hashes(settings)
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
