"""Ingest: every rejection reason, whole-file quarantine, normalisation, dedupe, state merge, threshold."""

from __future__ import annotations

import json
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from helpers.landing import ATT_COLS, D, attempts, good_rows, quarantine, write_csv  # noqa: F401

from contactrank.errors import FailClosed, InputError, QuarantineThresholdExceeded
from contactrank.features.ingest import REPORT_FILE, ingest
from contactrank.features.lake import partition_dir, read_partition
from contactrank.features.schema import ATTEMPTS, CONTACTS_STATE


def test_missing_landing_folder_is_an_input_error(settings, tmp_path):
    with pytest.raises(InputError, match=r"attempts/date=2026-01-03"):
        ingest(settings, D, landing=tmp_path / "nowhere")


def test_good_rows_are_normalised_and_reported(settings, tmp_path):
    rows = good_rows(4)
    rows[0]["contact_id"] = " (11) 98765-4321 "  # national format
    rows[1].update(contact_id="Someone@Example.COM", channel="EMAIL ")
    rows[2].update(attempted_at="2026-01-03T15:00:00Z", duration_s="12.5", outcome=" Right_Party")
    rows[3].update(attempted_at="2026-01-03 10:30:00.250+05:30", contact_id="0055 11 98765 0000")
    write_csv(tmp_path, "attempts", rows)
    report = ingest(settings, D, landing=tmp_path)
    got = {r["attempt_id"]: r for r in attempts(settings)}
    assert got["A0000"]["contact_id"] == "+5511987654321"
    assert got["A0001"]["contact_id"] == "someone@example.com" and got["A0001"]["channel"] == "email"
    assert got["A0002"]["outcome"] == "right_party" and got["A0002"]["duration_s"] == 12.5
    # Z is UTC: the local hour comes from settings.local_timezone (America/Sao_Paulo, -03:00)
    assert got["A0002"]["attempted_at"] == datetime.fromisoformat("2026-01-03T15:00:00+00:00")
    assert got["A0002"]["local_hour"] == 12
    assert got["A0003"]["attempted_at"] == datetime.fromisoformat("2026-01-03T05:00:00.250+00:00")
    assert got["A0003"]["local_hour"] == 10 and got["A0003"]["contact_id"] == "+551198765000" + "0"
    assert got["A0000"]["local_hour"] == 8 and got["A0000"]["duration_s"] is None
    assert report["kinds"]["attempts"] == {
        "files": 1,
        "read": 4,
        "kept": 4,
        "deduped": 0,
        "quarantined": 0,
        "quarantined_by_reason": {},
        "unreadable_files": [],
    }
    saved = json.loads((partition_dir(settings, "attempts", D) / REPORT_FILE).read_text())
    assert saved["kinds"]["attempts"]["kept"] == 4
    assert read_partition(settings, "attempts", D).schema.field("attempted_at").type == pa.timestamp(
        "us", tz="UTC"
    )


@pytest.mark.parametrize(
    ("column", "value", "reason"),
    [
        ("attempt_id", "", "empty_value"),
        ("person_id", "   ", "empty_value"),
        ("contact_id", "", "empty_value"),
        ("channel", "fax", "bad_channel"),
        ("outcome", "maybe", "bad_outcome"),
        ("attempted_at", "", "empty_value"),
        ("attempted_at", "2026-02-30T10:00:00-03:00", "bad_timestamp"),
        ("attempted_at", "2026-01-03T24:00:00-03:00", "bad_timestamp"),
        ("attempted_at", "yesterday at noon", "bad_timestamp"),
        ("attempted_at", "2026-01-03T10:00:00+25:00", "bad_timestamp"),
        ("attempted_at", "2026-01-01T10:00:00Z", "outside_date"),
        ("attempted_at", "2026-01-04T10:00:00Z", "outside_date"),
        ("duration_s", "abc", "bad_number"),
        ("duration_s", "-3", "bad_number"),
        ("campaign_id", "C\x001", "nul_byte"),
        ("person_id", "P" * 600, "too_long"),
    ],
)
def test_each_rejection_reason_quarantines_only_that_row(settings, tmp_path, column, value, reason):
    rows = good_rows(40)
    rows[5][column] = value
    write_csv(tmp_path, "attempts", rows)
    report = ingest(settings, D, landing=tmp_path)
    q = quarantine(settings, "attempts")
    assert len(q) == 1, q
    assert q[0]["_reason"] == reason and q[0]["_column"] == column and q[0]["_row_number"] == 6
    assert q[0][column] == (value or None)  # the original value (an unquoted empty CSV field is null)
    assert q[0]["_source_file"].endswith("attempts/date=2026-01-03/part-0.csv")
    kept = {r["attempt_id"] for r in attempts(settings)}
    assert kept == {r["attempt_id"] for i, r in enumerate(rows) if i != 5}
    assert report["kinds"]["attempts"]["quarantined_by_reason"] == {reason: 1}


def test_tolerance_window_edges(settings, tmp_path):
    rows = good_rows(40)
    rows[0]["attempted_at"] = "2026-01-04T05:59:59Z"  # D+1 00:00 + 6h tolerance, exclusive
    rows[1]["attempted_at"] = "2026-01-04T06:00:00Z"
    rows[2]["attempted_at"] = "2026-01-02T18:00:00Z"  # D 00:00 - 6h, inclusive
    rows[3]["attempted_at"] = "2026-01-02T17:59:59Z"
    write_csv(tmp_path, "attempts", rows)
    ingest(settings, D, landing=tmp_path)
    assert {r["_row_number"] for r in quarantine(settings, "attempts")} == {2, 4}


def test_threshold_raises_after_writing_good_rows_and_quarantine(settings, tmp_path):
    rows = good_rows(10)
    rows[3]["channel"] = "pigeon"
    write_csv(tmp_path, "attempts", rows)
    with pytest.raises(QuarantineThresholdExceeded) as err:
        ingest(settings, D, landing=tmp_path)
    msg = str(err.value)
    assert (
        "\n" not in msg and "10.0%" in msg and "5.0%" in msg and "bad_channel" in msg and "part-0.csv" in msg
    )
    assert len(attempts(settings)) == 9
    assert len(quarantine(settings, "attempts")) == 1
    assert ingest(settings.replace(quarantine_threshold=0.2), D, landing=tmp_path)["quarantined_share"] == 0.1


def test_unreadable_files_are_quarantined_whole(settings, tmp_path):
    write_csv(tmp_path, "attempts", good_rows(100))
    folder = tmp_path / "attempts" / f"date={D}"
    (folder / "broken.parquet").write_bytes(b"PAR1 this is not parquet at all")
    (folder / "latin1.csv").write_bytes(
        ",".join(ATT_COLS).encode() + "\nA9,P9,+5511,voice,x,no_answer,Cé,\n".encode("latin-1")
    )
    write_csv(
        tmp_path,
        "attempts",
        good_rows(3),
        name="nocolumn.csv",
        columns=[c for c in ATT_COLS if c != "outcome"],
    )
    report = ingest(settings.replace(quarantine_threshold=0.5), D, landing=tmp_path)
    q = {Path(r["_source_file"]).name: r for r in quarantine(settings, "attempts")}
    assert (
        q["broken.parquet"]["_reason"] == "unreadable_file"
        and "broken.parquet" in q["broken.parquet"]["_error"]
    )
    assert q["latin1.csv"]["_reason"] == "unreadable_file"
    assert q["nocolumn.csv"]["_reason"] == "missing_column" and q["nocolumn.csv"]["_column"] == "outcome"
    assert all(r["_row_number"] is None for r in q.values())
    assert len(attempts(settings)) == 100
    r = report["kinds"]["attempts"]
    assert r["files"] == 4 and len(r["unreadable_files"]) == 3
    # the missing-column file held 3 rows: the share counts them
    assert r["quarantined_by_reason"]["missing_column"] == 3


def test_utf8_bom_and_upper_case_headers_are_accepted(settings, tmp_path):
    path = write_csv(tmp_path, "attempts", good_rows(3))
    text = path.read_text(encoding="utf-8")
    header, rest = text.split("\n", 1)
    path.write_bytes("\ufeff".encode() + header.upper().encode() + b"\n" + rest.encode())
    report = ingest(settings, D, landing=tmp_path)
    assert report["kinds"]["attempts"]["kept"] == 3


def test_quoted_newlines_in_values(settings, tmp_path):
    rows = good_rows(30)
    rows[1]["campaign_id"] = "line one\nline two"
    write_csv(tmp_path, "attempts", rows)
    ingest(settings, D, landing=tmp_path)
    got = {r["attempt_id"]: r for r in attempts(settings)}
    assert len(got) == 30 and got["A0001"]["campaign_id"] == "line one\nline two"


def test_dedupe_within_and_across_files_last_wins(settings, tmp_path):
    rows = good_rows(30)
    dup = dict(rows[0], outcome="busy")
    write_csv(tmp_path, "attempts", [*rows, dup], name="a.csv")
    write_csv(tmp_path, "attempts", [dict(rows[1], outcome="right_party")], name="b.csv")
    report = ingest(settings, D, landing=tmp_path)
    got = {r["attempt_id"]: r for r in attempts(settings)}
    assert len(got) == 30
    assert got["A0000"]["outcome"] == "busy" and got["A0001"]["outcome"] == "right_party"
    assert report["kinds"]["attempts"]["deduped"] == 2 and report["kinds"]["attempts"]["read"] == 32


def test_parquet_input_with_typed_columns(settings, tmp_path):
    folder = tmp_path / "attempts" / f"date={D}"
    folder.mkdir(parents=True)
    ts = pa.array([datetime.fromisoformat("2026-01-03T12:00:00+00:00")] * 2, pa.timestamp("ms", tz="UTC"))
    pq.write_table(
        pa.table(
            {
                "attempt_id": ["x1", "x2"],
                "person_id": ["p", "p"],
                "contact_id": ["11987654321", "a@B.c"],
                "channel": ["sms", "email"],
                "attempted_at": ts,
                "outcome": ["converted", "opt_out"],
                "duration_s": pa.array([1, None], pa.int32()),
            }
        ),
        folder / "p.parquet",
    )
    ingest(settings, D, landing=tmp_path)
    got = {r["attempt_id"]: r for r in attempts(settings)}
    assert got["x1"]["contact_id"] == "+5511987654321" and got["x1"]["local_hour"] == 9
    assert got["x1"]["duration_s"] == 1.0 and got["x1"]["campaign_id"] is None
    supp = read_partition(settings, "suppressions", D).to_pylist()
    assert supp == [
        {
            "person_id": "p",
            "contact_id": "a@b.c",
            "reason": "opt_out",
            "effective_from": D,
            "origin": "opt_out_outcome",
        }
    ]


def test_contacts_state_merges_upserts_with_history(settings, tmp_path):
    d1, d2 = date(2026, 1, 2), D
    write_csv(
        tmp_path,
        "attempts",
        [
            dict(
                good_rows(1)[0],
                attempted_at="2026-01-02T12:00:00Z",
                contact_id="+5511900000001",
                attempt_id="x",
            )
        ],
        d=d1,
    )
    write_csv(
        tmp_path,
        "contacts",
        [
            {
                "person_id": "P1",
                "contact_id": "+5511900000002",
                "channel": "voice",
                "source": "Customer",
                "consent": "true",
                "active": "true",
                "updated_at": "2026-01-02T10:00:00Z",
            },
            {
                "person_id": "P1",
                "contact_id": "x@y.z",
                "channel": "email",
                "source": "bureau",
                "consent": "no",
                "active": "",
                "updated_at": "",
            },
        ],
        d=d1,
    )
    ingest(settings, d1, landing=tmp_path)
    write_csv(
        tmp_path, "attempts", [dict(good_rows(1)[0], contact_id="+5511900000003", person_id="P2")], d=d2
    )
    write_csv(
        tmp_path,
        "contacts",
        [
            # older than the known row: ignored
            {
                "person_id": "P1",
                "contact_id": "+5511900000002",
                "channel": "voice",
                "source": "late",
                "consent": "true",
                "active": "false",
                "updated_at": "2026-01-01T10:00:00Z",
            },
            {
                "person_id": "P1",
                "contact_id": "X@Y.Z",
                "channel": "email",
                "source": "bureau",
                "consent": "1",
                "active": "false",
                "updated_at": "2026-01-03T10:00:00Z",
            },
            {
                "person_id": "P0",
                "contact_id": "+5511900000001",
                "channel": "voice",
                "source": "enrichment",
                "consent": "true",
                "active": "true",
                "updated_at": "2026-01-03T09:00:00Z",
            },
        ],
        d=d2,
    )
    ingest(settings, d2, landing=tmp_path)
    s1 = {
        (r["person_id"], r["contact_id"]): r
        for r in read_partition(settings, "contacts_state", d1).to_pylist()
    }
    s2 = {
        (r["person_id"], r["contact_id"]): r
        for r in read_partition(settings, "contacts_state", d2).to_pylist()
    }
    # addresses only seen in attempts are not delivered contacts: the features step makes them candidates
    assert ("P0", "+5511900000001") not in s1 and ("P2", "+5511900000003") not in s2
    assert s1[("P1", "x@y.z")]["consent"] is False and s1[("P1", "x@y.z")]["active"] is True
    assert s1[("P1", "+5511900000002")]["source"] == "customer"
    assert set(s2) == set(s1) | {("P0", "+5511900000001")}
    assert (
        s2[("P1", "+5511900000002")]["source"] == "customer"
        and s2[("P1", "+5511900000002")]["active"] is True
    )
    assert s2[("P1", "x@y.z")]["active"] is False and s2[("P1", "x@y.z")]["first_seen"] == d1
    assert (
        s2[("P0", "+5511900000001")]["source"] == "enrichment"
        and s2[("P0", "+5511900000001")]["first_seen"]
        == d2  # first delivered; features take the first attempt
    )


def test_contacts_rejections(settings, tmp_path):
    write_csv(tmp_path, "attempts", good_rows(40))
    base = {
        "person_id": "P1",
        "contact_id": "+5511900000002",
        "channel": "voice",
        "source": "customer",
        "consent": "true",
        "active": "true",
        "updated_at": "2026-01-03T10:00:00Z",
    }
    rows = [dict(base) for _ in range(30)]
    rows[1]["consent"] = "perhaps"
    rows[2]["updated_at"] = "2026-01-09T10:00:00Z"
    rows[3]["channel"] = "telex"
    write_csv(tmp_path, "contacts", rows)
    ingest(settings.replace(quarantine_threshold=0.2), D, landing=tmp_path)  # 10 % of the contacts
    q = {r["_row_number"]: (r["_reason"], r["_column"]) for r in quarantine(settings, "contacts")}
    assert q == {2: ("bad_bool", "consent"), 3: ("outside_date", "updated_at"), 4: ("bad_channel", "channel")}
    assert read_partition(settings, "contacts", D).num_rows == 27


def test_suppressions_rows_and_rejections(settings, tmp_path):
    write_csv(
        tmp_path,
        "attempts",
        [dict(r, outcome="opt_out") if i == 0 else r for i, r in enumerate(good_rows(40))],
    )
    rows = [
        {"person_id": "P1", "contact_id": "", "reason": "Deceased", "effective_from": ""},
        {
            "person_id": "",
            "contact_id": "(11) 90000-0000",
            "reason": "do_not_call",
            "effective_from": "2026-01-05",
        },
        {"person_id": "", "contact_id": "", "reason": "legal", "effective_from": ""},
        {"person_id": "P2", "contact_id": "", "reason": "", "effective_from": ""},
        {"person_id": "P3", "contact_id": "", "reason": "legal", "effective_from": "2026-02-31"},
    ]
    write_csv(tmp_path, "suppressions", rows)
    with pytest.raises(FailClosed, match="row 3: no_target"):  # suppressions fail closed
        ingest(settings.replace(quarantine_threshold=0.2), D, landing=tmp_path)
    q = {r["_row_number"]: r["_reason"] for r in quarantine(settings, "suppressions")}
    assert q == {3: "no_target", 4: "empty_value", 5: "bad_date"}
    got = read_partition(settings, "suppressions", D).to_pylist()
    assert got == [
        {"person_id": "P1", "contact_id": None, "reason": "deceased", "effective_from": D, "origin": "file"},
        {
            "person_id": None,
            "contact_id": "+551190000000" + "0",
            "reason": "do_not_call",
            "effective_from": date(2026, 1, 5),
            "origin": "file",
        },
        # the persons named in the rows that failed are suppressed all the same
        {
            "person_id": "P2",
            "contact_id": None,
            "reason": "unparsed_row",
            "effective_from": D,
            "origin": "file",
        },
        {
            "person_id": "P3",
            "contact_id": None,
            "reason": "unparsed_row",
            "effective_from": D,
            "origin": "file",
        },
        {
            "person_id": "P0",
            "contact_id": "+5511999990000",
            "reason": "opt_out",
            "effective_from": D,
            "origin": "opt_out_outcome",
        },
    ]


def test_persons_types_and_type_change_quarantine(settings, tmp_path):
    d1 = date(2026, 1, 2)
    write_csv(tmp_path, "attempts", [dict(good_rows(1)[0], attempted_at="2026-01-02T12:00:00Z")], d=d1)
    write_csv(
        tmp_path,
        "persons",
        [
            {"person_id": "P1", "updated_at": "", "segment": "retail", "balance": "10.5", "vip": "true"},
            {"person_id": "P2", "updated_at": "", "segment": "sme", "balance": "", "vip": "false"},
            {
                "person_id": "P1",
                "updated_at": "2026-01-02T01:00:00Z",
                "segment": "premium",
                "balance": "3",
                "vip": "no",
            },
        ],
        d=d1,
    )
    report = ingest(settings, d1, landing=tmp_path)
    p1 = read_partition(settings, "persons", d1)
    assert p1.schema.field("balance").type == pa.float64() and p1.schema.field("vip").type == pa.bool_()
    assert p1.schema.field("segment").type == pa.string()
    got = {r["person_id"]: r for r in p1.to_pylist()}
    assert got["P1"] == {
        "person_id": "P1",
        "updated_at": datetime.fromisoformat("2026-01-02T01:00:00+00:00"),
        "segment": "premium",
        "balance": 3.0,
        "vip": False,
    }
    assert got["P2"]["balance"] is None
    assert report["kinds"]["persons"]["deduped"] == 1
    write_csv(tmp_path, "attempts", good_rows(40))
    write_csv(
        tmp_path,
        "persons",
        [{"person_id": "P3", "segment": "7", "balance": "lots", "vip": "true"}]
        + [{"person_id": f"Q{i}", "segment": "x", "balance": "1", "vip": "0"} for i in range(30)],
    )
    ingest(settings, D, landing=tmp_path)
    q = quarantine(settings, "persons")
    assert [(r["person_id"], r["_reason"], r["_column"], r["balance"]) for r in q] == [
        ("P3", "type_changed", "balance", "lots")
    ]
    p2 = read_partition(settings, "persons", D)
    assert p2.schema.field("segment").type == pa.string() and p2.num_rows == 30


def test_an_all_blank_attribute_does_not_fix_its_type(settings, tmp_path):
    d1 = date(2026, 1, 2)
    write_csv(tmp_path, "attempts", [dict(good_rows(1)[0], attempted_at="2026-01-02T12:00:00Z")], d=d1)
    write_csv(tmp_path, "persons", [{"person_id": "P1", "score": ""}, {"person_id": "P2", "score": ""}], d=d1)
    ingest(settings, d1, landing=tmp_path)
    write_csv(tmp_path, "attempts", good_rows(3))
    write_csv(tmp_path, "persons", [{"person_id": "P1", "score": "0.7"}])
    ingest(settings, D, landing=tmp_path)
    assert read_partition(settings, "persons", D).schema.field("score").type == pa.float64()


def test_malformed_csv_lines_are_quarantined_and_later_row_numbers_stay_true(settings, tmp_path):
    rows = good_rows(40)
    rows[20]["channel"] = "fax"
    path = write_csv(tmp_path, "attempts", rows)
    lines = path.read_text(encoding="utf-8").splitlines(keepends=True)
    lines[3] = lines[3].rstrip("\n") + ",extra\n"  # data row 3: one field too many
    lines[7] = "A9999,P1\n"  # data row 7: too few
    path.write_text("".join(lines), encoding="utf-8")
    report = ingest(settings.replace(quarantine_threshold=0.1), D, landing=tmp_path)
    q = sorted(quarantine(settings, "attempts"), key=lambda r: r["_row_number"])
    assert [(r["_row_number"], r["_reason"]) for r in q] == [
        (3, "bad_row_shape"),
        (7, "bad_row_shape"),
        (21, "bad_channel"),
    ]
    assert "expected 8 fields, got 9" in q[0]["_error"] and q[2]["attempt_id"] == "A0020"
    assert report["kinds"]["attempts"]["read"] == 40 and report["kinds"]["attempts"]["kept"] == 37


def test_parquet_with_large_strings_dictionaries_and_numeric_ids(settings, tmp_path):
    folder = tmp_path / "attempts" / f"date={D}"
    folder.mkdir(parents=True)
    n = 30
    table = pa.table(
        {
            "attempt_id": pa.array(range(n), pa.int64()),
            "person_id": pa.array([f"P{i}" for i in range(n)], pa.large_string()),
            "contact_id": pa.array(["+5511987654321"] * (n - 1) + ["x" * 600], pa.large_string()),
            "channel": pa.array(["voice"] * n).dictionary_encode(),
            "attempted_at": pa.array(["2026-01-03T12:00:00-03:00"] * n, pa.large_string()),
            "outcome": pa.array(["busy"] * n),
            "duration_s": pa.array(["1.5"] * n),
        }
    )
    pq.write_table(table, folder / "p.parquet")
    ingest(settings, D, landing=tmp_path)
    got = attempts(settings)
    assert len(got) == n - 1 and got[0]["attempt_id"] == "0" and got[0]["duration_s"] == 1.5
    assert got[0]["local_hour"] == 12 and got[0]["channel"] == "voice"
    assert [(r["_reason"], r["_column"]) for r in quarantine(settings, "attempts")] == [
        ("too_long", "contact_id")
    ]


def test_parquet_vocabulary_columns_are_read_encoded_and_stored_plain(settings, tmp_path):
    folder = tmp_path / "attempts" / f"date={D}"
    folder.mkdir(parents=True)
    rows = good_rows(8)
    rows[1]["channel"] = " SMS "
    rows[2]["outcome"] = "Busy"
    rows[3]["channel"] = "pigeon"
    rows[4]["campaign_id"] = "  "
    rows[5]["campaign_id"] = " C9 "
    rows[6]["outcome"] = None
    # several row groups: the reader returns one dictionary per chunk
    pq.write_table(pa.Table.from_pylist(rows), folder / "p.parquet", row_group_size=3)
    report = ingest(settings.replace(quarantine_threshold=0.5), D, landing=tmp_path)
    got = {r["attempt_id"]: r for r in attempts(settings)}
    assert got["A0001"]["channel"] == "sms" and got["A0002"]["outcome"] == "busy"
    assert got["A0004"]["campaign_id"] is None and got["A0005"]["campaign_id"] == "C9"
    assert got["A0000"]["channel"] == "voice" and got["A0000"]["campaign_id"] == "C1"
    assert sorted(
        (r["attempt_id"], r["_reason"], r["_column"]) for r in quarantine(settings, "attempts")
    ) == [
        ("A0003", "bad_channel", "channel"),
        ("A0006", "bad_outcome", "outcome"),
    ]
    assert report["kinds"]["attempts"]["kept"] == 6
    # the lake holds plain values, whatever the encoding in memory
    for kind in ("attempts", "contacts_state"):
        schema = pq.read_schema(partition_dir(settings, kind, D) / "part-0.parquet")
        assert not any(pa.types.is_dictionary(t) for t in schema.types), kind
    assert read_partition(settings, "attempts", D).schema == ATTEMPTS
    assert read_partition(settings, "contacts_state", D).schema == CONTACTS_STATE


def test_addresses_seen_only_in_attempts_become_live_candidates_through_the_features(settings, tmp_path):
    """They are not delivered contacts (contacts_state stays empty) but docs/contract.md makes them
    candidates: the features step does, with the channel of their latest attempt."""
    from contactrank.features.build import build_features

    d1, d2 = date(2026, 1, 2), D
    row = good_rows(1)[0]

    def att(i, person, contact, channel, at, d):
        return dict(
            row,
            attempt_id=f"{d:%d}-{i}",
            person_id=person,
            contact_id=contact,
            channel=channel,
            attempted_at=at,
            outcome="busy",
        )

    write_csv(
        tmp_path,
        "attempts",
        [
            att(0, "P1", "+5511900000001", "voice", "2026-01-02T10:00:00Z", d1),
            att(1, "P1", "+5511900000002", "sms", "2026-01-02T11:00:00Z", d1),
        ],
        d=d1,
    )
    ingest(settings, d1, landing=tmp_path)
    write_csv(
        tmp_path,
        "attempts",
        [
            att(0, "P3", "+5511900000009", "voice", "2026-01-03T12:00:00Z", d2),
            att(1, "P1", "+5511900000002", "whatsapp", "2026-01-03T13:00:00Z", d2),  # seen on d1 by sms
            att(2, "P2", "+5511900000005", "voice", "2026-01-03T09:00:00Z", d2),
            att(3, "P2", "+5511900000005", "sms", "2026-01-03T15:00:00Z", d2),  # latest: its channel wins
            att(4, "P3", "+5511900000009", "sms", "2026-01-03T08:00:00Z", d2),  # earlier: loses
            att(5, "P2", "+5511900000001", "voice", "2026-01-03T10:00:00Z", d2),  # same address, other person
        ],
        d=d2,
    )
    ingest(settings, d2, landing=tmp_path)
    assert read_partition(settings, "contacts_state", d2).num_rows == 0
    build_features(settings, d1)
    build_features(settings, d2)
    got = {
        (r["person_id"], r["contact_id"]): (r["channel"], r["f_source"], r["f_c_age_days"])
        for r in read_partition(settings, "features", d2).to_pylist()
    }
    assert got == {
        ("P1", "+5511900000001"): ("voice", "attempts", 1),
        ("P1", "+5511900000002"): ("whatsapp", "attempts", 1),  # the latest attempt's channel
        ("P3", "+5511900000009"): ("voice", "attempts", 0),
        ("P2", "+5511900000005"): ("sms", "attempts", 0),
        ("P2", "+5511900000001"): ("voice", "attempts", 0),
    }
    state = read_partition(settings, "feature_state", d2).to_pylist()
    assert all(r["live"] and not r["in_cs"] for r in state) and len(state) == 5


def test_threaded_validation_gives_the_same_lake_as_one_thread(settings, tmp_path, monkeypatch):
    import contactrank.features.ingest as fi

    rows = good_rows(40)
    rows[3]["channel"] = "pigeon"  # bad rows in the first and the last range
    rows[25]["attempted_at"] = "yesterday"
    rows[33]["person_id"] = ""
    rows[7]["contact_id"] = "(11) 98765-4321"
    rows = rows[20:] + rows[:20]  # unsorted ids: the dedupe's hash path
    rows.append(dict(rows[0], outcome="busy"))
    write_csv(tmp_path, "attempts", rows)
    settings = settings.replace(quarantine_threshold=0.5)
    one = settings.replace(num_threads=1, home=tmp_path / "one")
    report_one = ingest(one, D, landing=tmp_path)
    monkeypatch.setattr(fi, "_SPLIT_ROWS", 10)  # 41 rows: four ranges of ~10 rows
    calls = []
    real = fi._validate_in_threads
    monkeypatch.setattr(fi, "_validate_in_threads", lambda *a: calls.append(1) or real(*a))
    many = settings.replace(num_threads=4, home=tmp_path / "many")
    report_many = ingest(many, D, landing=tmp_path)
    assert calls == [1]
    for kind in ("attempts", "quarantine/attempts", "contacts_state", "suppressions"):
        a, b = read_partition(one, kind, D), read_partition(many, kind, D)
        if kind == "contacts_state":  # new addresses come in the aggregation's order, which follows chunking
            a, b = (t.sort_by([("person_id", "ascending"), ("contact_id", "ascending")]) for t in (a, b))
        assert a.to_pylist() == b.to_pylist(), kind
    q = read_partition(many, "quarantine/attempts", D).to_pylist()
    assert sorted((r["_row_number"], r["_reason"]) for r in q) == [
        (6, "bad_timestamp"),
        (14, "empty_value"),
        (24, "bad_channel"),
    ]
    assert report_one["kinds"] == report_many["kinds"]
    assert report_many["kinds"]["attempts"]["deduped"] == 1
    assert {r["contact_id"] for r in attempts(many)} >= {"+5511987654321"}
