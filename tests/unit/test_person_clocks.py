"""Ingest records an attempt's local hour in the person's own zone when their attribute names one."""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
from helpers.landing import D, attempts, good_rows, write_csv

from contactrank.features.ingest import ingest
from contactrank.ml.timezones import clock_shifts, export_clock


def _row(i: int, person: str, utc: str) -> dict[str, str]:
    return {**good_rows(1)[0], "attempt_id": f"A{i}", "person_id": person, "attempted_at": utc}


def test_the_local_hour_is_the_persons_own_when_their_zone_attribute_is_valid(settings, tmp_path):
    d0 = D - timedelta(days=1)
    # the zone of P1 arrives a day before its attempts; P2's on the day; P3 has none; the other
    # values come from a file too: none may fail the day or move an hour; nor may an attribute
    # named as DuckDB names the path column of a scan
    write_csv(tmp_path, "attempts", [_row(0, "P1", "2026-01-02T20:00:00Z")], d=d0)
    write_csv(
        tmp_path,
        "persons",
        [
            {"person_id": "P1", "timezone": "America/Rio_Branco", "filename": "a.csv"},
            {"person_id": "P7", "timezone": "America/Manaus", "filename": "b.csv"},
        ],
        d=d0,
    )
    ingest(settings, d0, landing=tmp_path)
    rows = [
        _row(1, "P1", "2026-01-03T22:00:00Z"),  # 17h at -5
        _row(2, "P2", "2026-01-03T22:00:00Z"),  # 18h at -4
        _row(3, "P3", "2026-01-03T22:00:00Z"),  # the deployment's 19h (-3)
        _row(4, "P4", "2026-01-03T22:00:00Z"),
        _row(5, "P5", "2026-01-03T22:00:00Z"),
        _row(6, "P6", "2026-01-03T20:00:00+01:00"),  # the provider's own offset: kept without a zone
        _row(7, "P7", "2026-01-03T22:00:00Z"),  # moved to -2 on D: the latest zone wins
    ]
    write_csv(tmp_path, "attempts", rows)
    write_csv(
        tmp_path,
        "persons",
        [
            {"person_id": "P2", "timezone": "America/Manaus"},
            {"person_id": "P4", "timezone": "../../etc/passwd"},
            {"person_id": "P5", "timezone": "x'); DROP TABLE persons; --"},
            {"person_id": "P6", "timezone": ""},
            {"person_id": "P7", "timezone": "America/Noronha"},
        ],
    )
    ingest(settings, D, landing=tmp_path)
    hours = {r["person_id"]: r["local_hour"] for r in attempts(settings)}
    assert hours == {"P1": 17, "P2": 18, "P3": 19, "P4": 19, "P5": 19, "P6": 20, "P7": 20}
    # the day before, P1's zone came with the attempt: 20h UTC is 15h in Rio Branco
    assert [r["local_hour"] for r in attempts(settings, d0)] == [15]

    # scoring then needs no shift for them, and the export names their zone at the same hour
    persons = pd.Series(["P1", "P2", "P3"])
    assert clock_shifts(settings, D, persons).empty
    zone, local, utc = export_clock(settings, D, persons, pd.Series([19, 19, 19]))
    assert zone.tolist() == ["America/Rio_Branco", "America/Manaus", "America/Sao_Paulo"]
    assert local.tolist() == [19, 19, 19] and utc.tolist() == [0, 23, 22]
