"""Hostile deliveries (reliability suite): quarantined with a reason, good rows kept, nothing lost.

Complements tests/unit/test_ingest.py (one test per rejection reason, corrupt Parquet, wrong
encoding, BOM, missing columns) with the remaining injections of the reliability issue.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import date

import pytest
from helpers.landing import ATT_COLS, D, good_rows, write_csv

from contactrank.features.ingest import ingest
from contactrank.features.lake import read_partition


def _quarantine(settings, d: date = D) -> list[dict]:
    t = read_partition(settings, "quarantine/attempts", d)
    return [] if t is None else t.to_pylist()


def _kept(settings) -> set[str]:
    return set(read_partition(settings, "attempts", D).column("attempt_id").to_pylist())


def test_ten_megabyte_string_is_quarantined_not_stored(settings, tmp_path) -> None:
    rows = good_rows(50)
    rows[7]["campaign_id"] = "X" * (10 * 1024 * 1024)
    write_csv(tmp_path, "attempts", rows)
    ingest(settings, D, landing=tmp_path)
    q = _quarantine(settings)
    assert [(r["_reason"], r["_column"], r["_row_number"]) for r in q] == [("too_long", "campaign_id", 8)]
    assert _kept(settings) == {r["attempt_id"] for i, r in enumerate(rows) if i != 7}


@pytest.mark.parametrize("stamp", ["2999-01-03T10:00:00Z", "1969-12-31T23:00:00Z", "0001-01-03T10:00:00Z"])
def test_far_future_and_pre_1970_timestamps(settings, tmp_path, stamp: str) -> None:
    rows = good_rows(50)
    rows[3]["attempted_at"] = stamp
    write_csv(tmp_path, "attempts", rows)
    ingest(settings, D, landing=tmp_path)
    q = _quarantine(settings)
    assert (
        len(q) == 1
        and q[0]["_column"] == "attempted_at"
        and q[0]["_reason"] in {"outside_date", "bad_timestamp"}
    )
    assert len(_kept(settings)) == 49


def test_truncated_csv_keeps_the_complete_rows(settings, tmp_path) -> None:
    path = write_csv(tmp_path, "attempts", good_rows(60))
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) - 40])  # the transfer stopped in the middle of the last line
    ingest(settings, D, landing=tmp_path)
    kept, q = _kept(settings), _quarantine(settings)
    assert len(kept) + len(q) == 60  # nothing lost: every row is kept or quarantined
    assert len(kept) >= 58 and all(r["_reason"] for r in q)


def test_extra_columns_are_ignored_not_fatal(settings, tmp_path) -> None:
    rows = [{**r, "agent_notes": "called twice", "zzz": "1"} for r in good_rows(30)]
    write_csv(tmp_path, "attempts", rows, columns=[*ATT_COLS, "agent_notes", "zzz"])
    ingest(settings, D, landing=tmp_path)
    table = read_partition(settings, "attempts", D)
    assert table.num_rows == 30 and "agent_notes" not in table.column_names


def test_nul_bytes_inside_a_file(settings, tmp_path) -> None:
    path = write_csv(tmp_path, "attempts", good_rows(40))
    lines = path.read_bytes().split(b"\n")
    lines[4] = lines[4].replace(b"voice", b"vo\x00ice")
    path.write_bytes(b"\n".join(lines))
    ingest(settings, D, landing=tmp_path)
    q = _quarantine(settings)
    assert len(q) == 1 and q[0]["_row_number"] == 4
    assert len(_kept(settings)) == 39


def test_above_threshold_the_cli_fails_with_one_line_after_keeping_good_rows(settings, tmp_path) -> None:
    rows = good_rows(40)
    for i in range(0, 40, 4):  # 25% bad
        rows[i]["channel"] = "pigeon"
    write_csv(tmp_path, "attempts", rows)
    env = {
        "CONTACTRANK_HOME": str(settings.home),
        "PATH": "/usr/bin:/bin",
        "CONTACTRANK_CONFIG": str(tmp_path / "none.toml"),
    }
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "contactrank.cli",
            "ingest",
            "--date",
            D.isoformat(),
            "--landing",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env=env,
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert "25.0%" in last and "bad_channel" in last
    assert len(_kept(settings)) == 30 and len(_quarantine(settings)) == 10


def test_mixed_type_attribute_quarantines_the_odd_values(settings, tmp_path) -> None:
    write_csv(tmp_path, "attempts", good_rows(20))
    persons = [{"person_id": f"P{i}", "balance": str(100 * i), "segment": "gold"} for i in range(30)]
    persons[4]["balance"] = "n/a"
    write_csv(tmp_path, "persons", persons)
    ingest(settings, D, landing=tmp_path)
    kept = read_partition(settings, "persons", D)
    assert kept.schema.field("balance").type == "double" and kept.num_rows == 29
    q = read_partition(settings, "quarantine/persons", D).to_pylist()
    assert [(r["_reason"], r["_column"], r["balance"]) for r in q] == [("mixed_type", "balance", "n/a")]
