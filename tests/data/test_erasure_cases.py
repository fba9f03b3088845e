"""Erasure cases an outside audit found: shared addresses, malformed lines, odd ids, a racing run;
each on both storage backends (a home with its lake and exports on a local S3 server too)."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import date

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from helpers.s3 import stored_files

from contactrank.cli import main
from contactrank.erase import erase
from contactrank.features import lake
from contactrank.ml.publish import export_dir
from contactrank.privacy import erased_hashes, keyed_hash

D = date(2026, 3, 2)
X, Y = "11122233344", "55566677788"
Y_PHONE = "+5511911112222"


def _cells(settings, value: str) -> list[str]:
    """Columns of stored tables (under the home, and on S3 committed or not) holding ``value``."""
    out = []
    for name, blob in stored_files(settings).items():
        if name.endswith(".parquet"):
            t = pq.read_table(pa.BufferReader(blob))
            for col in t.column_names:
                if pa.types.is_string(t.schema.field(col).type) and value in t.column(col).to_pylist():
                    out.append(f"{name}:{col}")
    return out


def _uris_env(settings, monkeypatch) -> None:
    """The settings' lake and exports locations, for a CLI or child process of the test."""
    for name in ("lake_uri", "exports_uri"):
        if getattr(settings, name):
            monkeypatch.setenv(f"CONTACTRANK_{name.upper()}", getattr(settings, name))


def test_a_shared_address_stays_with_its_other_person(any_settings) -> None:
    settings = any_settings
    """X made one attempt on Y's phone: erasing X removes X's row, not Y's eight."""
    attempts = pa.table(
        {
            "attempt_id": [f"y{i}" for i in range(8)] + ["x0"],
            "person_id": [Y] * 8 + [X],
            "contact_id": [Y_PHONE] * 9,
        }
    )
    lake.write_partition(settings, "attempts", D, attempts)
    lake.write_partition(settings, "features", D, attempts.select(["person_id", "contact_id"]))
    lake.write_partition(settings, "daily_agg", D, pa.table({"contact_id": [Y_PHONE], "n": [9]}))

    out = erase(settings, X)

    assert out["rows_removed"] == 2
    kept = lake.read_partition(settings, "attempts", D)
    assert kept.column("person_id").to_pylist() == [Y] * 8
    assert lake.read_partition(settings, "features", D).num_rows == 8
    assert lake.read_partition(settings, "daily_agg", D).num_rows == 1  # Y's number, still Y's


def test_a_person_with_a_malformed_landing_line_is_erased(any_settings) -> None:
    settings = any_settings
    folder = settings.landing / "attempts" / f"date={D}"
    folder.mkdir(parents=True)
    (folder / "part-0.csv").write_text(
        "attempt_id,person_id,contact_id,channel,attempted_at,outcome\n"
        f"a1,{Y},+5511900000001,voice,2026-03-02T10:00:00Z,busy\n"
        f"a2,{X},+5511900000002,voice,2026-03-02T11:00:00Z,busy,EXTRA,FIELDS\n"
        f"a3,{X},+5511900000002,voice,2026-03-02T12:00:00Z,no_answer\n"
    )
    quarantine = pa.table(
        {
            "_source_file": [str(folder / "part-0.csv")],
            "_row_number": [2],
            "_column": pa.nulls(1, pa.string()),
            "_reason": ["bad_row_shape"],
            "_error": [
                f"expected 6 fields, got 8: a2,{X},+5511900000002,voice,2026-03-02T11:00:00Z,busy,EXTRA"
            ],
        }
    )
    lake.write_partition(settings, "quarantine/attempts", D, quarantine)

    erase(settings, X)

    assert erased_hashes(settings) == {keyed_hash(settings, X)}
    text = (folder / "part-0.csv").read_text()
    assert X not in text and Y in text
    assert lake.read_partition(settings, "quarantine/attempts", D).num_rows == 0
    assert _cells(settings, X) == []


def test_ids_with_a_slash_or_a_control_character_can_be_erased(any_settings, monkeypatch, capsys) -> None:
    settings = any_settings
    odd = "ab/12\x01"
    lake.write_partition(
        settings, "attempts", D, pa.table({"person_id": [odd, Y], "contact_id": ["c1", "c2"]})
    )
    monkeypatch.setenv("CONTACTRANK_HOME", str(settings.home))
    _uris_env(settings, monkeypatch)
    assert main(["erase", "--person-id", odd]) == 0, capsys.readouterr().err
    assert lake.read_partition(settings, "attempts", D).column("person_id").to_pylist() == [Y]


RUN = """
import sys, time
from contactrank.lock import home_lock
from contactrank.settings import load_settings
with home_lock(load_settings(home=sys.argv[1]), "publish 2026-03-02"):
    print("publishing", flush=True)
    time.sleep(1.5)
    import pyarrow as pa, pyarrow.csv as pacsv
    from contactrank.features.lake import atomic_dir
    with atomic_dir(load_settings(home=sys.argv[1]).exports / "priority" / "date=2026-03-02") as out:
        pacsv.write_csv(pa.table({"person_id": [sys.argv[2], "other"]}), out / "priority.csv")
"""


def test_an_erasure_waits_for_a_running_step_and_then_reaches_its_output(any_settings, monkeypatch) -> None:
    """`run` and `erase` at the same time: the erasure takes the home after the step, so the
    person is not in what the step published."""
    settings = any_settings
    _uris_env(settings, monkeypatch)  # the child's exports where the test's are
    proc = subprocess.Popen(
        [sys.executable, "-c", RUN, str(settings.home), X], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "publishing"
    t0 = time.monotonic()
    erase(settings, X)
    assert time.monotonic() - t0 > 0.5  # it waited for the holder
    proc.wait(timeout=30)
    table = pacsv.read_csv(pa.BufferReader((export_dir(settings, D) / "priority.csv").read_bytes()))
    assert table.column("person_id").to_pylist() == ["other"]


def test_a_queued_request_is_carried_out_by_its_keyed_hash_and_then_gone(any_settings) -> None:
    settings = any_settings
    from contactrank.erase import erase_requested, request_erasure

    lake.write_partition(settings, "attempts", D, pa.table({"person_id": [X, Y], "contact_id": ["c1", "c2"]}))
    queued = request_erasure(settings, X)
    assert queued == {"person_hash": keyed_hash(settings, X)}
    out = erase_requested(settings, queued["person_hash"])
    assert out["rows_removed"] == 1
    assert not list((settings.home / "erasure-requests").iterdir())
    assert erase_requested(settings, queued["person_hash"])["status"] == "already erased"


def test_an_id_escaped_in_the_csv_export_is_erased(any_settings) -> None:
    """priority.csv writes `+5511…` as `'+5511…` (formula escaping): the erasure still finds it."""
    from contactrank.ml.publish import write_csv

    settings, odd = any_settings, "+5511999990000"
    with lake.atomic_dir(settings.exports / "priority" / f"date={D}") as staging:
        write_csv(pa.table({"person_id": [odd, Y], "contact_id": ["c1", "c2"]}), staging / "priority.csv")
    erase(settings, odd)
    text = (export_dir(settings, D) / "priority.csv").read_text()
    assert odd not in text and Y in text
