"""The UCI Bank Marketing importer on the real files (PROVENANCE.md §1 and §5)."""

from __future__ import annotations

import csv
import hashlib
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest
from helpers.datasets import datasets_dir

from contactrank.cli import main
from contactrank.errors import InputError
from contactrank.features.importers import import_dataset
from contactrank.features.importers.bank_marketing import import_bank_marketing

DATA = datasets_dir() / "bank_marketing"  # CONTACTRANK_DATASETS, else ../shared/datasets
FULL = DATA / "bank-full.csv"
ADDITIONAL = DATA / "bank-additional-full.csv"

pytestmark = pytest.mark.skipif(
    not FULL.is_file(), reason=f"{FULL} is absent (set CONTACTRANK_DATASETS; README: the public data sets)"
)


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def _all(landing: Path, kind: str) -> dict[str, list[dict[str, str]]]:
    return {p.parent.name[5:]: _rows(p) for p in sorted((landing / kind).glob("date=*/part-0.csv"))}


def _digest(landing: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(landing.rglob("*")):
        if p.is_file():
            h.update(str(p.relative_to(landing)).encode() + p.read_bytes())
    return h.hexdigest()


def _head(n: int, src: Path, dst: Path) -> Path:
    with src.open() as fh:
        dst.write_text("".join(next(fh) for _ in range(n + 1)))
    return dst


def test_slice_maps_rows_to_attempts_contacts_persons(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    out = import_bank_marketing(FULL, landing, limit=1200)
    assert out["variant"] == "bank-full" and out["rows"] == 1200 and out["persons"] == 1200
    assert out["first_date"] == "2008-05-05"
    attempts = _all(landing, "attempts")
    persons = _all(landing, "persons")
    contacts = _all(landing, "contacts")
    src = _rows_semicolon(FULL, 1200)

    # the day before the first call has a (header-only) attempts folder and the first deliveries
    assert attempts["2008-05-04"] == []
    assert min(persons) == min(contacts) == "2008-05-04"
    flat = [r for day in attempts.values() for r in day]
    assert len(flat) == 1200 and len({r["person_id"] for r in flat}) == 1200
    assert {r["channel"] for r in flat} == {"voice"}

    by_person = {r["person_id"]: r for r in flat}
    for i, row in enumerate(src, start=1):
        a = by_person[f"bm{i:06d}"]
        ts = datetime.fromisoformat(a["attempted_at"])
        assert ts.utcoffset() == timedelta(hours=1)  # Lisbon summer time in May 2008
        assert ts.hour == 12 and ts.date() == date(2008, 5, int(row["day"]))
        expected = (
            "converted" if row["y"] == "yes" else ("no_answer" if row["duration"] == "0" else "right_party")
        )
        assert a["outcome"] == expected
        assert float(a["duration_s"]) == float(row["duration"])

    # attributes and contacts arrive the day before the call, duration never among them
    for day, rows in persons.items():
        assert "duration" not in rows[0] and "y" not in rows[0] and "campaign" not in rows[0]
        for r in rows:
            call_day = date.fromisoformat(by_person[r["person_id"]]["attempted_at"][:10])
            assert date.fromisoformat(day) == call_day - timedelta(days=1)
    p1 = persons["2008-05-04"][0]
    assert p1["person_id"] == "bm000001" and p1["age"] == "58" and p1["balance"] == "2143"
    assert p1["campaign_prior_calls"] == str(int(src[0]["campaign"]) - 1) and p1["pdays"] == "-1"
    assert p1["poutcome"] == "unknown" and p1["updated_at"] == "2008-05-04T18:00:00+01:00"
    c = {r["person_id"]: r for day in contacts.values() for r in day}
    assert c["bm000001"]["source"] == "unknown" and c["bm000001"]["contact_id"] == "bm000001-c"


def _rows_semicolon(path: Path, n: int) -> list[dict[str, str]]:
    with path.open(newline="") as fh:
        reader = csv.DictReader(fh, delimiter=";")
        return [next(reader) for _ in range(n)]


def test_whole_bank_full_matches_provenance(tmp_path: Path) -> None:
    """Year inferred from the month wraps: rows 27,730 and 42,592 start 2009 and 2010 (PROVENANCE §5)."""
    landing = tmp_path / "landing"
    out = import_bank_marketing(FULL, landing)
    assert (out["rows"], out["positives"], out["no_answer"]) == (45211, 5289, 3)
    assert (out["first_date"], out["last_date"], out["call_days"]) == ("2008-05-05", "2010-11-17", 561)
    assert out["days"] == (date(2010, 11, 17) - date(2008, 5, 4)).days + 1
    assert len(list((landing / "attempts").iterdir())) == out["days"]  # every calendar day has a folder
    year = {}
    for day, rows in _all(landing, "attempts").items():
        for r in rows:
            year[int(r["person_id"][2:])] = int(day[:4])
    assert (year[27729], year[27730], year[42591], year[42592]) == (2008, 2009, 2009, 2010)
    winter = _rows(landing / "attempts" / "date=2009-01-28" / "part-0.csv")[0]
    assert winter["attempted_at"] == "2009-01-28T12:00:00+00:00"


def test_import_is_deterministic_and_idempotent(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    import_bank_marketing(FULL, a, limit=800)
    import_bank_marketing(FULL, b, limit=800)
    first = _digest(a)
    assert first == _digest(b)
    import_bank_marketing(FULL, a, limit=800)  # re-import over itself: same bytes, no temp files left
    assert _digest(a) == first
    assert not [p for p in a.rglob("*") if p.name.startswith(".")]


def test_bank_additional_dates_follow_the_weekday(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    out = import_bank_marketing(ADDITIONAL, landing, limit=5000)
    assert out["variant"] == "bank-additional" and out["first_date"] == "2008-05-05"
    src = _rows_semicolon(ADDITIONAL, 5000)
    attempts = {r["person_id"]: r for day in _all(landing, "attempts").values() for r in day}
    days = [date.fromisoformat(attempts[f"bm{i:06d}"]["attempted_at"][:10]) for i in range(1, 5001)]
    assert days == sorted(days)  # row order is time order
    weekdays = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
    for d, row in zip(days, src, strict=True):
        assert weekdays[d.weekday()] == row["day_of_week"]
        assert d.strftime("%b").lower() == row["month"]
    persons = _rows(next((landing / "persons").glob("date=*/part-0.csv")))
    assert {"emp_var_rate", "euribor3m", "nr_employed", "campaign_prior_calls"} <= set(persons[0])
    assert "duration" not in persons[0]


def test_shuffled_subset_and_foreign_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="not in time order"):
        import_bank_marketing(DATA / "bank.csv", tmp_path / "l1")
    other = tmp_path / "other.csv"
    other.write_text("a;b\n1;2\n")
    with pytest.raises(InputError, match="neither bank-full nor bank-additional"):
        import_bank_marketing(other, tmp_path / "l2")
    with pytest.raises(InputError, match="no such file"):
        import_bank_marketing(tmp_path / "missing.csv", tmp_path / "l3")
    with pytest.raises(InputError, match="unknown dataset"):
        import_dataset("hillstrom", FULL, tmp_path / "l4")
    bad = _head(20, FULL, tmp_path / "bad.csv")
    lines = bad.read_text().splitlines(keepends=True)
    lines[5] = lines[5].replace('"may"', '"mai"')
    bad.write_text("".join(lines))
    with pytest.raises(InputError, match=r"data row 5, column 'month'"):
        import_bank_marketing(bad, tmp_path / "l5")


def test_cli_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = _head(300, FULL, tmp_path / "bank-head.csv")
    landing = tmp_path / "landing"
    assert main(["import", "bank-marketing", str(src), "--landing", str(landing)]) == 0
    assert '"rows": 300' in capsys.readouterr().out
    assert (landing / "attempts" / "date=2008-05-05" / "part-0.csv").is_file()
    assert main(["import", "bank-marketing", str(tmp_path / "nope.csv"), "--landing", str(landing)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("contactrank import:") and "no such file" in err and "\n" not in err
