"""Erasure on both storage backends: the raw id is nowhere afterwards, in committed folders or in a
crashed writer's upload, and the other person's rows and the export manifest stay right."""

from __future__ import annotations

import hashlib
import io
import json
from datetime import date

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from helpers.s3 import stored_files

from contactrank import storage
from contactrank.erase import erase
from contactrank.errors import InputError
from contactrank.features import lake
from contactrank.ml.publish import export_dir
from contactrank.privacy import drop_erased, erased_hashes, erasure_records_path, keyed_hash
from contactrank.settings import load_settings

D = date(2026, 3, 2)
VICTIM, OTHER = "11122233344", "55566677788"
PHONE = "+5511987654321"


def _home(settings) -> None:
    attempts = pa.table(
        {
            "attempt_id": ["a1", "a2", "a3"],
            "person_id": [VICTIM, VICTIM, OTHER],
            "contact_id": [PHONE, "victim@example.com", "+5511900000000"],
            "outcome": ["right_party", "no_answer", "busy"],
        }
    )
    lake.write_partition(settings, "attempts", D, attempts, extra_files={"_ingest_report.json": b"{}"})
    lake.write_partition(settings, "contacts_state", D, attempts.select(["person_id", "contact_id"]))
    lake.write_partition(settings, "daily_agg", D, pa.table({"contact_id": [PHONE, "x"], "n": [1, 1]}))
    prio = pa.table({"person_id": [VICTIM, OTHER], "contact_id": [PHONE, "+5511900000000"], "rank": [1, 1]})
    with lake.atomic_dir(settings.exports / "priority" / f"date={D}") as staging:
        pq.write_table(prio, staging / "priority.parquet")
        pacsv.write_csv(prio, staging / "priority.csv")
        sums = {f: lake.file_sha256(staging / f) for f in ("priority.parquet", "priority.csv")}
        (staging / "_manifest.json").write_text(json.dumps({"rows": 2, "persons": 2, "files": sums}))
        (staging / "_SUCCESS").write_text("")
    with lake.atomic_dir(settings.exports / "reports" / f"date={D}") as staging:
        (staging / "report.html").write_text(f"<html>top person {VICTIM}</html>")


def _naming(settings, raw: str) -> list[str]:
    """Stored files holding ``raw`` in their bytes or, for tables, in a decoded cell."""
    hits = []
    for name, blob in stored_files(settings).items():
        cells = []
        if name.endswith(".parquet"):
            table = pq.read_table(io.BytesIO(blob))
            cells = [v for c in table.column_names for v in table.column(c).to_pylist()]
        if raw.encode() in blob or raw in cells:
            hits.append(name)
    return hits


def test_erase_on_both_backends(any_settings) -> None:
    s = any_settings
    _home(s)
    if storage.is_remote(s.lake):  # a writer that died after uploading, before its marker
        folder = s.lake / "contacts" / f"date={D}"
        pq.write_table(
            pa.table({"person_id": [VICTIM]}), f"{folder.key}/v-crashed/part-0.parquet", filesystem=folder.fs
        )
    assert _naming(s, VICTIM)

    result = erase(s, VICTIM)

    assert result["addresses"] == 2 and result["rows_removed"] >= 6
    assert _naming(s, VICTIM) == [] and _naming(s, PHONE) == []
    assert lake.read_partition(s, "attempts", D).column("person_id").to_pylist() == [OTHER]
    assert lake.read_partition(s, "daily_agg", D).column("contact_id").to_pylist() == ["x"]
    assert (lake.partition_dir(s, "attempts", D) / "_ingest_report.json").exists()
    export = export_dir(s, D)
    assert lake.read_table(export / "priority.parquet").column("person_id").to_pylist() == [OTHER]
    manifest = json.loads((export / "_manifest.json").read_text())
    assert manifest["rows"] == 1 and manifest["persons"] == 1 and (export / "_SUCCESS").exists()
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((export / name).read_bytes()).hexdigest() == digest
    again = erase(s, VICTIM)  # idempotent
    assert again["rows_removed"] == 0 and again["directories_rewritten"] == 0


def test_an_erasure_on_one_worker_is_applied_by_a_worker_with_another_home(s3_settings, tmp_path) -> None:
    here = s3_settings
    there = load_settings(
        home=tmp_path / "another-machine", lake_uri=str(here.lake), exports_uri=str(here.exports)
    )
    _home(here)
    deliveries = pa.table({"person_id": [VICTIM, OTHER], "contact_id": [PHONE, "+5511900000000"]})
    assert drop_erased(there, deliveries)[1] == 0

    erase(here, VICTIM)

    # the other worker's home holds no record, yet it drops the person's new deliveries
    assert not (there.home / "erasure").exists()
    assert erased_hashes(there) == {keyed_hash(here, VICTIM)}
    kept, dropped = drop_erased(there, deliveries)
    assert dropped == 1 and kept.column("person_id").to_pylist() == [OTHER]
    audits = [n for n in stored_files(here) if "/_erasure/audit/" in n]
    assert len(audits) == 1 and VICTIM.encode() not in stored_files(here)[audits[0]]


def test_a_shared_lake_refuses_a_per_home_erasure_key(s3_settings, monkeypatch) -> None:
    monkeypatch.delenv("CONTACTRANK_HMAC_KEY")
    with pytest.raises(InputError, match="CONTACTRANK_HMAC_KEY"):
        erase(s3_settings, VICTIM)
    assert not (s3_settings.home / ".secrets").exists()


def test_records_made_before_the_lake_was_shared_are_shared_by_the_next_erasure(
    s3_settings, tmp_path
) -> None:
    here = s3_settings
    earlier = keyed_hash(here, "an id erased when this home's lake was a local folder")
    path = erasure_records_path(here)
    path.parent.mkdir(parents=True)
    pq.write_table(pa.table({"person_hash": [earlier], "reason": ["erasure"], "erased_at": ["-"]}), path)
    there = load_settings(
        home=tmp_path / "another-machine", lake_uri=str(here.lake), exports_uri=str(here.exports)
    )
    _home(here)

    erase(here, VICTIM)

    assert erased_hashes(there) == {earlier, keyed_hash(here, VICTIM)}
