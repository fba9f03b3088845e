"""GDPR erasure on a small hand-made home: the raw id is nowhere afterwards, others are intact."""

from __future__ import annotations

import hashlib
import json
from datetime import date
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from contactrank.erase import erase
from contactrank.errors import ContactrankError
from contactrank.features import lake
from contactrank.privacy import drop_erased, erased_hashes, keyed_hash

D = date(2026, 3, 2)
VICTIM, OTHER = "11122233344", "55566677788"
PHONE = "+5511987654321"


def _home_with_two_persons(settings) -> Path:
    attempts = pa.table(
        {
            "attempt_id": ["a1", "a2", "a3"],
            "person_id": [VICTIM, VICTIM, OTHER],
            "contact_id": [PHONE, "victim@example.com", "+5511900000000"],
            "outcome": ["right_party", "no_answer", "busy"],
        }
    )
    lake.write_partition(
        settings, "attempts", D, attempts, extra_files={"_ingest_report.json": b'{"rows": 3}'}
    )
    lake.write_partition(settings, "contacts_state", D, attempts.select(["person_id", "contact_id"]))
    # an aggregate keyed by contact only: the victim's address must go too
    lake.write_partition(
        settings, "daily_agg", D, pa.table({"contact_id": [PHONE, "+5511900000000"], "n": [1, 1]})
    )
    lake.write_partition(
        settings, "quarantine/attempts", D, pa.table({"person_id": [VICTIM], "_reason": ["bad channel"]})
    )
    export = settings.exports / "priority" / f"date={D}"
    export.mkdir(parents=True)
    prio = pa.table({"person_id": [VICTIM, OTHER], "contact_id": [PHONE, "+5511900000000"], "rank": [1, 1]})
    pq.write_table(prio, export / "priority.parquet")
    pacsv.write_csv(prio, export / "priority.csv")
    sums = {
        f: hashlib.sha256((export / f).read_bytes()).hexdigest() for f in ("priority.parquet", "priority.csv")
    }
    (export / "_manifest.json").write_text(json.dumps({"rows": 2, "persons": 2, "files": sums}))
    (export / "_SUCCESS").write_text("")
    report = settings.exports / "reports" / f"date={D}"
    report.mkdir(parents=True)
    (report / "report.html").write_text(f"<html>top person {VICTIM}</html>")
    landing = settings.landing / "attempts" / f"date={D}"
    landing.mkdir(parents=True)
    pacsv.write_csv(attempts, landing / "part-0.csv")
    return export


def _raw_id_files(root: Path, raw: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and raw.encode() in p.read_bytes()]


def test_erase_removes_every_trace_and_keeps_others(settings) -> None:
    export = _home_with_two_persons(settings)
    assert _raw_id_files(settings.home, VICTIM)  # the id is there before

    result = erase(settings, VICTIM)

    assert result["rows_removed"] >= 8 and result["addresses"] == 2
    assert _raw_id_files(settings.home, VICTIM) == []
    assert _raw_id_files(settings.home, PHONE) == []
    # decoded tables too, not only the bytes (compressed pages could hide an id)
    for path in settings.home.rglob("*.parquet"):
        table = pq.read_table(path)
        for col in ("person_id", "contact_id"):
            if col in table.column_names:
                assert (
                    VICTIM not in table.column(col).to_pylist() and PHONE not in table.column(col).to_pylist()
                )
    # the other person survives everywhere
    assert pq.read_table(export / "priority.parquet").column("person_id").to_pylist() == [OTHER]
    assert lake.read_partition(settings, "attempts", D).num_rows == 1
    # the manifest describes the rewritten files
    manifest = json.loads((export / "_manifest.json").read_text())
    assert manifest["rows"] == 1 and manifest["persons"] == 1
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((export / name).read_bytes()).hexdigest() == digest
    assert (export / "_SUCCESS").exists()
    # other files of a partition are carried over
    assert (lake.partition_dir(settings, "attempts", D) / "_ingest_report.json").exists()


def test_audit_and_suppression_hold_only_the_keyed_hash(settings) -> None:
    _home_with_two_persons(settings)
    erase(settings, VICTIM)
    h = keyed_hash(settings, VICTIM)
    assert erased_hashes(settings) == {h}
    audits = list((settings.home / "erasure").glob("audit-*.json"))
    assert len(audits) == 1 and json.loads(audits[0].read_text())["person_hash"] == h
    # future deliveries of the person are dropped
    table, dropped = drop_erased(settings, pa.table({"person_id": [VICTIM, OTHER, None]}))
    assert dropped == 1 and table.column("person_id").to_pylist() == [OTHER, None]


def test_erase_is_idempotent(settings) -> None:
    _home_with_two_persons(settings)
    erase(settings, VICTIM)
    again = erase(settings, VICTIM)
    assert again["rows_removed"] == 0 and again["directories_rewritten"] == 0
    assert len(erased_hashes(settings)) == 1


def test_key_from_env_changes_the_hash(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(settings.hmac_key_env, "k1")
    h1 = keyed_hash(settings, VICTIM)
    monkeypatch.setenv(settings.hmac_key_env, "k2")
    assert keyed_hash(settings, VICTIM) != h1 and len(h1) == 64


def test_erasure_refuses_to_report_success_when_the_id_survives(settings) -> None:
    _home_with_two_persons(settings)
    # a binary file the eraser cannot rewrite
    (settings.home / "opaque.db").write_bytes(b"\x00\x01" + VICTIM.encode())
    with pytest.raises(ContactrankError, match="opaque.db"):
        erase(settings, VICTIM)


def test_future_deliveries_of_an_erased_person_are_dropped_at_ingest(any_settings) -> None:
    """Erase after ingesting a simulated day; the same landing files re-ingested bring nothing back
    (on both backends: the lake in the home, or on a local S3 server)."""
    from helpers.s3 import stored_files

    from contactrank.features.ingest import ingest
    from contactrank.features.simulate import simulate

    settings = any_settings
    landing = settings.landing
    simulate(landing, D, 2, persons=300, seed=3)
    ingest(settings, D)
    victim = lake.read_partition(settings, "attempts", D).column("person_id")[0].as_py()
    erase(settings, victim)
    assert [name for name, blob in stored_files(settings).items() if victim.encode() in blob] == []

    simulate(landing, D, 2, persons=300, seed=3)  # the provider delivers the same files again
    report = ingest(settings, D)
    assert report["dropped_erased"]["attempts"] >= 1
    for kind in ("attempts", "contacts_state", "suppressions"):
        table = lake.read_partition(settings, kind, D)
        assert victim not in table.column("person_id").to_pylist()
