"""Ingest against hostile deliveries found by the audit: header injection, duplicate columns,
fail-closed suppressions, unreadable files of a kind, attempts re-delivered on a later date,
overflowing numbers."""

from __future__ import annotations

import csv
import re
import tempfile
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers.landing import ATT_COLS, D, attempts, good_rows, quarantine, write_csv
from hypothesis import HealthCheck, assume, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from contactrank.errors import FailClosed, QuarantineThresholdExceeded
from contactrank.features.ingest import ingest
from contactrank.features.lake import read_partition
from contactrank.ml.candidates import read_suppressions
from contactrank.settings import load_settings

# the header cell of the audit, verbatim
INJECTION = (
    'age_band") AS "z", '
    "(SELECT string_agg(content,'') FROM read_text('/proc/self/environ')) AS \"leak\", --"
)
SUPPRESSION_COLS = ["person_id", "contact_id", "reason", "effective_from"]
MALFORMED = "P0000000,,do_not_call,11/10/2026"


def write_lines(landing: Path, kind: str, lines: list[str], name: str, d: date = D, encoding="utf-8") -> Path:
    folder = landing / kind / f"date={d.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_bytes(("\n".join(lines) + "\n").encode(encoding))
    return path


# --- 1. column names from a landing header ------------------------------------------------------------


def test_an_injected_attribute_header_is_quarantined_and_the_rest_of_the_file_kept(settings, tmp_path):
    write_csv(tmp_path, "attempts", good_rows(40))
    rows = [{"person_id": f"P{i}", "age_band": "30-39", INJECTION: "x"} for i in range(5)]
    path = write_csv(tmp_path, "persons", rows)
    ingest(settings, D, landing=tmp_path)
    persons = read_partition(settings, "persons", D)
    assert set(persons.column_names) == {"person_id", "updated_at", "age_band"}
    assert persons.num_rows == 5
    q = quarantine(settings, "persons")
    assert [(r["_reason"], r["_column"], r["_source_file"]) for r in q] == [
        ("bad_column_name", INJECTION.lower(), str(path))
    ]


def test_headers_differing_only_in_case_quarantine_the_file_whole(settings, tmp_path):
    write_csv(tmp_path, "attempts", good_rows(40))
    folder = tmp_path / "attempts" / f"date={D}"
    rows = good_rows(2)
    with (folder / "twice.csv").open("w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow([*ATT_COLS, "Outcome"])
        w.writerows([[r[c] for c in ATT_COLS] + ["busy"] for r in rows])
    persons = write_lines(tmp_path, "persons", ["person_id,Segment,segment", "P1,a,b"], "p.csv")
    report = ingest(settings.replace(quarantine_threshold=1.0), D, landing=tmp_path)
    q = {Path(r["_source_file"]).name: r for r in quarantine(settings, "attempts")}
    assert q["twice.csv"]["_reason"] == "duplicate_column" and "outcome" in q["twice.csv"]["_error"]
    assert len(attempts(settings)) == 40
    (qp,) = quarantine(settings, "persons")
    assert qp["_reason"] == "duplicate_column" and qp["_source_file"] == str(persons)
    assert report["kinds"]["persons"]["kept"] == 0


_VALID = re.compile(r"[a-z0-9_]{1,64}")


@hsettings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.text(
            alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=80
        ),
        min_size=1,
        max_size=5,
    )
)
def test_arbitrary_persons_headers_only_let_valid_attribute_names_through(headers):
    names = [h.strip().lower() for h in headers]
    assume(not {"person_id", "updated_at"} & set(names))
    with tempfile.TemporaryDirectory() as tmp:
        landing = Path(tmp) / "landing"
        settings = load_settings(home=Path(tmp) / "home")
        write_csv(landing, "attempts", good_rows(3))
        folder = landing / "persons" / f"date={D}"
        folder.mkdir(parents=True)
        with (folder / "p.csv").open("w", newline="", encoding="utf-8") as fh:
            w = csv.writer(fh)
            w.writerow(["person_id", *headers])
            w.writerows([[f"P{i}", *["v"] * len(headers)] for i in range(4)])
        ingest(settings.replace(quarantine_threshold=1.0), D, landing=landing)
        persons = read_partition(settings, "persons", D)
        got = set() if persons is None else set(persons.column_names) - {"person_id", "updated_at"}
        valid = {n for n in names if _VALID.fullmatch(n) and not n.startswith("_")}
        assert got <= valid
        kept = [] if persons is None else persons.column("person_id").to_pylist()
        duplicated = len(set(names)) < len(names)
        assert sorted(kept) == ([] if duplicated else ["P0", "P1", "P2", "P3"])
        if not duplicated:
            assert got == valid


# --- 2. suppressions fail closed ---------------------------------------------------------------------


def _suppressed(settings, d: date = D) -> set[tuple]:
    t = read_partition(settings, "suppressions", d)
    return {(r["person_id"], r["contact_id"], r["reason"]) for r in t.to_pylist()}


def test_a_malformed_suppression_row_fails_closed_until_the_file_is_fixed(settings, tmp_path):
    write_csv(tmp_path, "attempts", good_rows(40))
    good = "P0000001,,legal,2026-01-03"
    path = write_lines(tmp_path, "suppressions", [",".join(SUPPRESSION_COLS), good, MALFORMED], "s.csv")
    with pytest.raises(FailClosed) as err:
        ingest(settings, D, landing=tmp_path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and "row 2" in message
    # what could be read is written; the person of the bad row is suppressed all the same
    assert ("P0000001", None, "legal") in _suppressed(settings)
    assert ("P0000000", None, "unparsed_row") in _suppressed(settings)
    assert len(attempts(settings)) == 40
    with pytest.raises(FailClosed, match="s.csv"):
        read_suppressions(settings, D)
    with pytest.raises(FailClosed):  # the next days too, until D is fixed
        read_suppressions(settings, D + timedelta(days=3))
    write_lines(
        tmp_path, "suppressions", [",".join(SUPPRESSION_COLS), good, MALFORMED[:-10] + "2026-01-03"], "s.csv"
    )
    ingest(settings, D, landing=tmp_path)
    got = read_suppressions(settings, D)
    assert {"P0000000", "P0000001"} <= set(got.person_id)


def test_a_utf16_suppression_file_fails_closed_and_its_ids_are_suppressed(settings, tmp_path):
    write_csv(tmp_path, "attempts", good_rows(40))
    path = write_lines(
        tmp_path,
        "suppressions",
        [",".join(SUPPRESSION_COLS), "P7,,opt_out,", ",+5511999990003,legal,"],
        "s.csv",
        encoding="utf-16",
    )
    with pytest.raises(FailClosed, match=re.escape(str(path))):
        ingest(settings, D, landing=tmp_path)
    got = _suppressed(settings)
    assert ("P7", None, "unparsed_row") in got and (None, "+5511999990003", "unparsed_row") in got
    with pytest.raises(FailClosed, match="s.csv"):
        read_suppressions(settings, D)


def test_a_suppression_line_with_extra_fields_suppresses_every_id_it_names(settings, tmp_path):
    write_csv(tmp_path, "attempts", good_rows(40))
    write_lines(
        tmp_path,
        "suppressions",
        [",".join(SUPPRESSION_COLS), "P1,,legal,", "P5,,legal,2026-01-03,oops"],
        "s.csv",
    )
    with pytest.raises(FailClosed, match="bad_row_shape"):
        ingest(settings, D, landing=tmp_path)
    assert ("P5", None, "unparsed_row") in _suppressed(settings)


# --- 3. an unreadable file counts as every row its kind was expected to have --------------------------


def _cut_parquet(landing: Path, rows: list[dict], name: str = "a.parquet") -> None:
    folder = landing / "attempts" / f"date={D}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    pq.write_table(pa.Table.from_pylist(rows), path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])


def test_the_only_attempts_file_cut_in_half_fails_the_day(settings, tmp_path):
    _cut_parquet(tmp_path, good_rows(200))
    write_csv(
        tmp_path,
        "contacts",
        [{"person_id": f"P{i}", "contact_id": f"+55119000{i:05d}", "channel": "sms"} for i in range(60)],
    )
    with pytest.raises(QuarantineThresholdExceeded, match="attempts"):
        ingest(settings, D, landing=tmp_path)


def test_a_cut_file_beside_a_good_one_counts_as_the_good_ones_size(settings, tmp_path):
    _cut_parquet(tmp_path, good_rows(200))
    write_csv(tmp_path, "attempts", good_rows(100), name="b.csv")
    with pytest.raises(QuarantineThresholdExceeded, match="attempts"):
        ingest(settings, D, landing=tmp_path)
    assert len(attempts(settings)) == 100


def test_the_share_is_per_kind(settings, tmp_path):
    write_csv(tmp_path, "attempts", good_rows(400))
    contacts = [
        {"person_id": f"P{i}", "contact_id": f"+55119000{i:05d}", "channel": "sms"} for i in range(20)
    ]
    contacts[0]["channel"] = "pigeon"
    contacts[1]["channel"] = "pigeon"
    write_csv(tmp_path, "contacts", contacts)
    with pytest.raises(QuarantineThresholdExceeded, match="contacts"):
        ingest(settings, D, landing=tmp_path)


# --- 4. attempts re-delivered on a later date ----------------------------------------------------------


def test_attempts_already_stored_for_an_earlier_date_are_quarantined(settings, tmp_path):
    d1 = D - timedelta(days=1)
    evening = [dict(r, attempted_at=f"2026-01-02T2{i % 3}:30:00-03:00") for i, r in enumerate(good_rows(10))]
    write_csv(tmp_path, "attempts", evening, d=d1)
    ingest(settings, d1, landing=tmp_path)
    today = [dict(r, attempt_id=f"B{i:04d}") for i, r in enumerate(good_rows(40))]
    write_csv(tmp_path, "attempts", today + evening[:4])
    report = ingest(settings, D, landing=tmp_path)
    assert {r["attempt_id"] for r in attempts(settings)} == {f"B{i:04d}" for i in range(40)}
    q = quarantine(settings, "attempts")
    assert sorted((r["attempt_id"], r["_reason"]) for r in q) == [
        (f"A{i:04d}", "duplicate_of_earlier_date") for i in range(4)
    ]
    assert report["kinds"]["attempts"]["quarantined_by_reason"] == {"duplicate_of_earlier_date": 4}
    assert len(attempts(settings, d1)) == 10
    assert ingest(settings, D, landing=tmp_path)["kinds"] == report["kinds"]  # idempotent


# --- 5. numbers that overflow ----------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["1e400", "-1e400", "1E999"])
def test_an_overflowing_duration_is_a_bad_number(settings, tmp_path, value):
    rows = good_rows(40)
    rows[3]["duration_s"] = value
    rows[4]["duration_s"] = "12.5"
    write_csv(tmp_path, "attempts", rows)
    ingest(settings, D, landing=tmp_path)
    assert [(r["attempt_id"], r["_reason"], r["_column"]) for r in quarantine(settings, "attempts")] == [
        ("A0003", "bad_number", "duration_s")
    ]
    assert {r["attempt_id"]: r["duration_s"] for r in attempts(settings)}["A0004"] == 12.5
