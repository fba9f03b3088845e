"""Publish hardening: OWASP formula escaping of every CSV cell, erasures re-checked at publish time
under the home lock."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from test_publish import write_scores

from contactrank.errors import HomeBusy
from contactrank.features.lake import read_table
from contactrank.ml import publish as pub
from contactrank.privacy import erasure_records_path, keyed_hash

D = date(2026, 11, 20)
FOLDER = ("priority", "date=2026-11-20")

# A person id that a spreadsheet runs as a DDE command: "-1" looks like a number to the old rule.
DDE = "-1+cmd|' /C calc'!A0"

HOLD = """
import sys, time
from contactrank.lock import home_lock
from contactrank.settings import load_settings
with home_lock(load_settings(home=sys.argv[1]), "erase"):
    print("held", flush=True)
    time.sleep(60)
"""


def read_csv_strings(settings) -> list[dict]:
    path = settings.exports.joinpath(*FOLDER) / "priority.csv"
    types = {c: pa.string() for c in ("person_id", "contact_id", "reason")}
    return pacsv.read_csv(path, convert_options=pacsv.ConvertOptions(column_types=types)).to_pylist()


@pytest.mark.parametrize(
    "cell",
    [DDE, "+5511987654321", "-1.5", "-15", "+1", "=1+1", "@x", "\tx", "\rx", "+", "-"],
)
def test_every_cell_starting_with_a_trigger_is_escaped_numbers_included(cell):
    assert pub.escape_cell(cell) == "'" + cell
    assert pub.escape_formulas(pa.table({"c": [cell]})).column("c")[0].as_py() == "'" + cell


@pytest.mark.parametrize("cell", ["a=b", "", "5511", "p-1", " =x", "'=x"])
def test_cells_without_a_leading_trigger_stay(cell):
    assert pub.escape_cell(cell) == cell
    assert pub.escape_formulas(pa.table({"c": [cell]})).column("c")[0].as_py() == cell


def test_dde_person_id_never_reaches_the_csv_unescaped(settings):
    write_scores(settings, rows=[(DDE, "+5511987654321", "voice", 1, 0.5, "baseline")])
    pub.publish(settings, D)
    (row,) = read_csv_strings(settings)
    assert row["person_id"] == "'" + DDE
    assert row["contact_id"] == "'+5511987654321"  # phone numbers written as text too
    raw = pq.read_table(settings.exports.joinpath(*FOLDER) / "priority.parquet").to_pylist()
    assert raw[0]["person_id"] == DDE and raw[0]["contact_id"] == "+5511987654321"  # parquet unchanged


def erase_record(settings, *persons: str) -> None:
    path = erasure_records_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    hashes = [keyed_hash(settings, p) for p in persons]
    pq.write_table(pa.table({"person_hash": hashes, "reason": ["erasure"] * len(hashes)}), path)


def test_publish_drops_persons_erased_after_scoring_and_counts_them(settings):
    write_scores(settings)  # persons p1 (2 rows), p2 (2 rows), +p3 (1 row)
    erase_record(settings, "p2", "+p3")
    out = pub.publish(settings, D)
    folder = settings.exports.joinpath(*FOLDER)
    table = pq.read_table(folder / "priority.parquet")
    assert set(table.column("person_id").to_pylist()) == {"p1"}
    assert {r["person_id"] for r in read_csv_strings(settings)} == {"p1"}
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert manifest["persons_left_out"]["erasure"] == 2
    assert manifest["rows"] == 2 and manifest["persons"] == 1 and out["rows"] == 2
    raw = (folder / "priority.csv").read_bytes() + (folder / "priority.parquet").read_bytes()
    assert b"p2" not in raw


def test_publish_drops_erased_persons_before_pseudonymising(settings, monkeypatch):
    monkeypatch.setenv("CONTACTRANK_HMAC_KEY", "k3y")
    write_scores(settings)
    erase_record(settings, "p1")
    out = pub.publish(settings.replace(pseudonymise_exports=True), D)
    assert out["rows"] == 3 and out["persons_left_out"]["erasure"] == 1


def test_publish_waits_for_the_home_lock(settings):
    write_scores(settings)
    cmd = [sys.executable, "-c", HOLD, str(settings.home)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(HomeBusy, match="erase"):
            pub.publish(settings.replace(lock_wait_seconds=0.3), D)
        assert not settings.exports.joinpath(*FOLDER).exists()
    finally:
        proc.kill()
        proc.wait()
    assert pub.publish(settings, D)["rows"] == 5


def test_a_person_erased_elsewhere_while_the_export_commits_is_dropped_by_a_second_commit(
    any_settings, monkeypatch
):
    """Another machine's erasure is not held off by this home's lock: it records the person, then
    rewrites the exports — here its record lands after publish filtered the rows and its rewrite
    before the commit, the one order neither lock nor first filter catches."""
    import contextlib

    from contactrank.erasure_records import record_erasure

    settings = any_settings
    write_scores(settings)  # persons p1, p2, +p3
    real, commits = pub.atomic_dir, []

    @contextlib.contextmanager
    def commit_racing_an_erasure(target):
        with real(target) as staging:
            yield staging
            if not commits:
                record_erasure(settings, keyed_hash(settings, "p2"))
            commits.append(target)

    monkeypatch.setattr(pub, "atomic_dir", commit_racing_an_erasure)
    out = pub.publish(settings, D)

    assert len(commits) == 2
    table = read_table(pub.export_dir(settings, D) / "priority.parquet")
    assert set(table.column("person_id").to_pylist()) == {"p1", "+p3"}
    assert out["persons_left_out"]["erasure"] == 1 and out["persons"] == 2
