"""Shards of persons: one stable assignment in SQL and Python, and readers that see a split as one
partition only when every shard of it is there."""

from __future__ import annotations

from datetime import date

import duckdb
import pyarrow as pa
import pytest

from contactrank.features.lake import partition_dates, partition_files_of, read_partition, write_partition
from contactrank.ml.score import merge_reports
from contactrank.pipeline import run_part
from contactrank.settings import load_settings
from contactrank.shards import Shard, all_shards, parse_folder, shard_of

D = date(2026, 3, 1)
IDS = [f"p{i}" for i in range(500)] + ["", "ümlaut-ß", "'; DROP TABLE x; --", "長い名前"]


@pytest.mark.parametrize("count", [1, 2, 4, 7])
def test_sql_and_python_put_every_person_in_the_same_shard(count: int) -> None:
    con = duckdb.connect()
    con.register("persons", pa.table({"person_id": IDS}))
    for shard in all_shards(count):
        in_sql = {
            r[0] for r in con.execute(f"SELECT person_id FROM persons WHERE {shard.predicate()}").fetchall()
        }
        assert in_sql == {p for p in IDS if shard_of(p, count) == shard.index}
    assert {shard_of(p, count) for p in IDS} == set(range(count))  # no shard is empty


def test_the_assignment_does_not_depend_on_the_machine() -> None:
    # md5-based fixed values: a change of library or version cannot move persons between shards
    assert [shard_of(p, 4) for p in ("p0", "p1", "p2", "p3", "p123")] == [2, 0, 3, 0, 3]
    assert [shard_of(p, 7) for p in ("p0", "p1", "p2", "p3")] == [5, 2, 3, 4]
    assert shard_of("p123", 1) == 0


def test_shard_names_round_trip_and_nonsense_is_refused() -> None:
    shard = Shard(2, 4)
    assert shard.kind("features") == "features/shard=2-of-4"
    assert parse_folder(shard.folder) == shard
    assert parse_folder("shard=4-of-4") is None and parse_folder("date=2026-01-01") is None
    with pytest.raises(ValueError):
        Shard(4, 4)
    with pytest.raises(ValueError):
        load_settings(shards=0)


def _training(ids: list[int]) -> pa.Table:
    return pa.table({"attempt_id": [f"a{i:03d}" for i in ids], "person_id": [f"p{i}" for i in ids]})


def test_a_split_is_read_as_one_partition_in_the_order_of_a_whole_one(tmp_path) -> None:
    settings = load_settings(home=tmp_path, shards=2)
    write_partition(settings, "training/shard=0-of-2", D, _training([5, 1, 3]))
    assert partition_files_of(settings, "training", D) == []  # shard 1 missing: never half a day
    assert partition_dates(settings, "training") == []
    write_partition(settings, "training/shard=1-of-2", D, _training([4, 2]))
    assert partition_dates(settings, "training") == [D]
    table = read_partition(settings, "training", D, columns=["person_id"])
    assert table.column_names == ["person_id"]
    assert table.column("person_id").to_pylist() == ["p1", "p2", "p3", "p4", "p5"]  # attempt_id order


def test_the_current_split_wins_over_a_whole_partition_left_beside_it(tmp_path) -> None:
    two = load_settings(home=tmp_path, shards=2)
    one = load_settings(home=tmp_path, shards=1)
    write_partition(one, "training", D, _training([9]))
    for k in range(2):
        write_partition(two, f"training/shard={k}-of-2", D, _training([k]))
    assert len(partition_files_of(two, "training", D)) == 2  # re-run with 2 shards: read as written
    assert len(partition_files_of(one, "training", D)) == 1  # re-run unsharded: the whole one
    assert read_partition(one, "training", D).num_rows == 1


def test_one_shard_runs_the_whole_step_in_one_part_only(tmp_path) -> None:
    settings = load_settings(home=tmp_path)
    out = run_part("publish", "part", settings, D, 0)
    assert out["status"] == "skipped" and "runs whole in its commit task" in out["reason"]
    out = run_part("features", "shared_rates", settings, D)
    assert out["status"] == "skipped" and "runs whole in its prepare task" in out["reason"]
    with pytest.raises(ValueError, match="no part"):
        run_part("publish", "nonsense", settings, D)
    with pytest.raises(ValueError, match="give the shard"):
        run_part("features", "state", load_settings(home=tmp_path, shards=2), D)


def test_shard_reports_add_up() -> None:
    reports = [
        {
            "date": "2026-03-01",
            "rows": 10,
            "persons": 4,
            "cap_person_7d": 7,
            "explore_share": 0.05,
            "shard": "a",
        },
        {
            "date": "2026-03-01",
            "rows": 5,
            "persons": 2,
            "cap_person_7d": 7,
            "explore_share": 0.05,
            "shard": "b",
        },
    ]
    merged = merge_reports(reports)
    assert merged["rows"] == 15 and merged["persons"] == 6 and merged["shards"] == 2
    assert merged["cap_person_7d"] == 7 and merged["explore_share"] == 0.05 and "shard" not in merged
