"""Ingest is a transaction per date: twice is once, and a corrected re-delivery replaces the old rows."""

from __future__ import annotations

import csv
import io
import shutil
from datetime import date, timedelta
from pathlib import Path

import pytest

from contactrank.errors import QuarantineThresholdExceeded
from contactrank.features.ingest import REPORT_FILE, ingest
from contactrank.features.lake import partition_dir, read_partition
from contactrank.features.simulate import simulate

START = date(2026, 1, 1)
KINDS = ("attempts", "contacts", "contacts_state", "suppressions", "persons")


@pytest.fixture(scope="module")
def landing(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("landing")
    simulate(root, START, days=3, persons=1500, seed=11)
    return root


def _snapshot(settings, d: date) -> dict:
    out = {}
    for kind in (*KINDS, "quarantine/attempts"):
        t = read_partition(settings, kind, d)
        out[kind] = None if t is None else t.to_pylist()
    return out


def _lake_files(settings) -> list[str]:
    return sorted(str(p.relative_to(settings.lake)) for p in settings.lake.rglob("*") if p.is_file())


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_ingesting_twice_equals_once(settings, landing, tmp_path, fmt):
    src = landing
    if fmt == "parquet":
        src = tmp_path / "pq"
        simulate(src, START, days=3, persons=1500, seed=11, fmt="parquet")
    for i in range(3):
        ingest(settings, START + timedelta(days=i), landing=src)
    d = START + timedelta(days=2)
    first = _snapshot(settings, d)
    files = _lake_files(settings)
    ingest(settings, d, landing=src)
    assert _snapshot(settings, d) == first
    assert _lake_files(settings) == files  # replaced, nothing appended, no staging left behind
    assert (partition_dir(settings, "attempts", d) / REPORT_FILE).is_file()
    assert len(first["attempts"]) == len({r["attempt_id"] for r in first["attempts"]})


def test_csv_and_parquet_landings_give_the_same_lake(settings, landing, tmp_path):
    pq_landing = tmp_path / "pq"
    simulate(pq_landing, START, days=1, persons=1500, seed=11, fmt="parquet")
    other = settings.replace(home=tmp_path / "home2")
    ingest(settings, START, landing=landing)
    ingest(other, START, landing=pq_landing)
    for kind in KINDS:
        a, b = read_partition(settings, kind, START), read_partition(other, kind, START)
        assert a.equals(b), kind


def test_redelivered_corrected_file_replaces_the_partition(settings, landing, tmp_path):
    d = START + timedelta(days=1)
    work = tmp_path / "landing"
    shutil.copytree(landing, work)
    ingest(settings, START, landing=work)
    part = work / "attempts" / f"date={d}" / "part-0.csv"
    good = part.read_text(encoding="utf-8")
    rows = list(csv.DictReader(io.StringIO(good)))
    # a broken delivery: every fifth row carries an unknown outcome
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(dict(r, outcome="n/a") if i % 5 == 0 else r for i, r in enumerate(rows))
    part.write_text(buf.getvalue(), encoding="utf-8")
    with pytest.raises(QuarantineThresholdExceeded):
        ingest(settings, d, landing=work)
    assert read_partition(settings, "quarantine/attempts", d).num_rows > 0
    # the provider re-delivers the corrected file under the same name
    part.write_text(good, encoding="utf-8")
    report = ingest(settings, d, landing=work)
    assert report["quarantined"] == 0
    fresh = settings.replace(home=tmp_path / "fresh")
    ingest(fresh, START, landing=work)
    ingest(fresh, d, landing=work)
    for kind in KINDS:
        a, b = read_partition(settings, kind, d), read_partition(fresh, kind, d)
        assert (a is None and b is None) or a.equals(b), kind
    assert read_partition(settings, "quarantine/attempts", d).num_rows == 0


def test_corrected_rows_delivered_as_an_extra_file_win(settings, landing, tmp_path):
    work = tmp_path / "landing"
    shutil.copytree(landing, work)
    folder = work / "attempts" / f"date={START}"
    with (folder / "part-0.csv").open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    fixed = dict(rows[0], outcome="busy" if rows[0]["outcome"] == "right_party" else "right_party")
    with (folder / "part-1.csv").open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerow(fixed)
    report = ingest(settings, START, landing=work)
    assert report["kinds"]["attempts"]["deduped"] == 1
    got = read_partition(settings, "attempts", START).to_pandas().set_index("attempt_id")
    assert len(got) == len(rows)
    assert got.loc[fixed["attempt_id"], "outcome"] == fixed["outcome"]
