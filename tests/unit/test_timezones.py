"""The export's clock columns (contract v1.1): timezone and best_hour_utc per person."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pandas as pd
import pyarrow as pa

from contactrank.features import lake
from contactrank.features.schema import ATTEMPTS
from contactrank.ml.timezones import export_clock, zone_of_offset

D = date(2026, 3, 2)


def _attempt(pid: str, utc_hour: int, local_hour: int) -> dict:
    return {
        "attempt_id": f"{pid}-{utc_hour}",
        "person_id": pid,
        "contact_id": f"c{pid}",
        "channel": "voice",
        "attempted_at": datetime(2026, 3, 2, utc_hour, tzinfo=UTC),
        "local_hour": local_hour,
        "outcome": "busy",
        "campaign_id": None,
        "duration_s": None,
    }


def test_attribute_else_offset_else_deployment(settings) -> None:
    rows = [_attempt("sp", 13, 10), _attempt("manaus", 14, 10), _attempt("tokyo", 1, 10)]
    lake.write_partition(settings, "attempts", D, pa.Table.from_pylist(rows, schema=ATTEMPTS))
    persons = pa.table({"person_id": ["manaus", "bad"], "timezone": ["America/Manaus", "Not/AZone"]})
    lake.write_partition(settings, "persons", D, persons)

    pid = pd.Series(["sp", "manaus", "tokyo", "unknown", "bad"])
    zone, local, utc = export_clock(settings, D, pid, pd.Series([19, 19, 19, 19, 19]))

    assert zone.tolist() == [
        "America/Sao_Paulo",
        "America/Manaus",
        "Etc/GMT-9",
        "America/Sao_Paulo",
        "America/Sao_Paulo",
    ]
    assert utc.tolist() == [22, 23, 10, 22, 22]  # 19h at -3, -4, +9, the deployment's -3
    assert local.tolist() == [19, 19, 19, 19, 19]


def test_an_attribute_zone_other_than_the_recorded_clock_converts_best_hour(settings) -> None:
    # attempts recorded in the deployment clock (-3) for a person whose attribute says Manaus (-4)
    lake.write_partition(
        settings, "attempts", D, pa.Table.from_pylist([_attempt("p", 13, 10)], schema=ATTEMPTS)
    )
    lake.write_partition(
        settings, "persons", D, pa.table({"person_id": ["p"], "timezone": ["America/Manaus"]})
    )
    zone, local, utc = export_clock(settings, D, pd.Series(["p"]), pd.Series([19]))
    assert (zone[0], local[0], utc[0]) == ("America/Manaus", 18, 22)


def test_offsets_are_named_by_the_deployment_zone_or_posix_etc_names(settings) -> None:
    assert zone_of_offset(-3.0, settings, D) == "America/Sao_Paulo"
    assert zone_of_offset(-5.0, settings, D) == "Etc/GMT+5"
    assert zone_of_offset(0.0, settings, D) == "Etc/UTC"


def test_the_latest_delivered_zone_wins_over_earlier_partitions(settings) -> None:
    # persons delivered every day, their zone changed on the last: the export must name the last
    # zone for everyone, however DuckDB splits the scan of the partitions between its threads
    days = [date(2026, 2, 25 + k) if k < 4 else date(2026, 3, k - 3) for k in range(6)]
    pids = [f"p{i:05d}" for i in range(20_000)]
    for k, day in enumerate(days):
        zone = "America/Manaus" if k == len(days) - 1 else ["America/Noronha", "America/Rio_Branco"][k % 2]
        lake.write_partition(
            settings, "persons", day, pa.table({"person_id": pids, "timezone": [zone] * len(pids)})
        )
    zone, local, _ = export_clock(settings, days[-1], pd.Series(pids), pd.Series([19] * len(pids)))
    assert set(zone) == {"America/Manaus"}
    assert set(local) == {18}  # 19h of the recorded clock (the deployment's, -3) in Manaus (-4)


def test_an_attribute_named_filename_is_an_attribute_like_any_other(settings) -> None:
    # DuckDB's default name for the path column of a scan: a legal attribute name in a persons file
    persons = pa.table({"person_id": ["p"], "filename": ["x.csv"], "timezone": ["America/Manaus"]})
    lake.write_partition(settings, "persons", D, persons)
    zone, _, utc = export_clock(settings, D, pd.Series(["p"]), pd.Series([19]))
    assert (zone[0], utc[0]) == ("America/Manaus", 22)
