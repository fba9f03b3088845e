"""Where the erasure key comes from: the variable, a container secret file, or the home."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contactrank.errors import InputError
from contactrank.privacy import erasure_key, erasure_records_path, export_key


def test_the_key_may_come_from_a_secret_file(settings, monkeypatch, tmp_path) -> None:
    secret = tmp_path / "contactrank_hmac_key"
    secret.write_text("a key from a file\n")
    monkeypatch.setenv("CONTACTRANK_HMAC_KEY_FILE", str(secret))
    assert erasure_key(settings) == export_key(settings) == b"a key from a file"
    assert not (settings.home / ".secrets").exists()


def test_an_unreadable_or_empty_secret_file_names_itself(settings, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("CONTACTRANK_HMAC_KEY_FILE", str(tmp_path / "absent"))
    with pytest.raises(InputError, match="absent, which cannot be read"):
        erasure_key(settings)
    (tmp_path / "empty").write_text("\n")
    monkeypatch.setenv("CONTACTRANK_HMAC_KEY_FILE", str(tmp_path / "empty"))
    with pytest.raises(InputError, match="empty, which is empty"):
        export_key(settings)


def test_a_key_that_would_orphan_this_homes_records_is_refused(settings, monkeypatch) -> None:
    home_key = erasure_key(settings)  # made by the home, as on a deployment without the variable
    path = erasure_records_path(settings)
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"person_hash": ["0" * 64]}), path)

    monkeypatch.setenv("CONTACTRANK_HMAC_KEY", "a new key")
    with pytest.raises(InputError, match="keyed with"):
        erasure_key(settings)
    monkeypatch.setenv("CONTACTRANK_HMAC_KEY", home_key.decode())  # the migration: the same key
    assert erasure_key(settings) == home_key
