"""Lake partitions are transactions: replaced whole, never appended, recovered after a crash."""

from __future__ import annotations

import os
from datetime import date

import pyarrow as pa
import pytest

from contactrank.dates import date_range, parse_date, validate_id
from contactrank.errors import InputError
from contactrank.features import lake

D = date(2026, 1, 5)


def test_write_then_rewrite_replaces(settings) -> None:
    lake.write_partition(settings, "attempts", D, pa.table({"x": [1, 2, 3]}))
    lake.write_partition(settings, "attempts", D, pa.table({"x": [9]}))
    assert lake.read_partition(settings, "attempts", D).column("x").to_pylist() == [9]
    assert lake.partition_dates(settings, "attempts") == [D]
    leftovers = [p.name for p in (settings.lake / "attempts").iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_failed_write_leaves_previous_version(settings) -> None:
    lake.write_partition(settings, "features", D, pa.table({"x": [1]}))
    target = lake.partition_dir(settings, "features", D)
    with pytest.raises(RuntimeError), lake.atomic_dir(target) as staging:
        (staging / "part-0.parquet").write_bytes(b"half a file")
        raise RuntimeError("killed")
    assert lake.read_partition(settings, "features", D).column("x").to_pylist() == [1]


def test_interrupted_swap_is_recovered(settings) -> None:
    """A crash between moving the old version aside and renaming the new one in: the old comes back."""
    lake.write_partition(settings, "scores", D, pa.table({"x": [7]}))
    target = lake.partition_dir(settings, "scores", D)
    os.replace(target, target.parent / f".old-{target.name}-deadbeef")
    assert lake.read_partition(settings, "scores", D).column("x").to_pylist() == [7]


def test_partition_batch_commits_in_order_and_nothing_on_a_failed_write(settings) -> None:
    lake.write_partition(settings, "attempts", D, pa.table({"x": [1]}))
    lake.write_partition(settings, "contacts", D, pa.table({"x": [1]}))
    unwritable = pa.table({"x": pa.array([pa.MonthDayNano([1, 2, 3])], pa.month_day_nano_interval())})
    with (
        pytest.raises(pa.ArrowNotImplementedError),
        lake.partition_batch(settings, D, ["contacts", "attempts"]) as batch,
    ):
        batch.write("contacts", pa.table({"x": [2]}))
        batch.write("attempts", unwritable)  # fails in the writer thread
    for kind in ("contacts", "attempts"):  # a failed write: every partition keeps its old version
        assert lake.read_partition(settings, kind, D).column("x").to_pylist() == [1]
    with lake.partition_batch(settings, D, ["contacts", "attempts"]) as batch:
        batch.write("attempts", pa.table({"id": ["a", "b"], "x": [3, 4]}), unique=["id"])
        batch.write("contacts", pa.table({"x": [3]}))
        batch.add_file("attempts", "_report.json", b"{}")
    assert lake.read_partition(settings, "attempts", D).to_pylist() == [
        {"id": "a", "x": 3},
        {"id": "b", "x": 4},
    ]
    assert lake.read_partition(settings, "contacts", D).column("x").to_pylist() == [3]
    target = lake.partition_dir(settings, "attempts", D)
    assert (target / "_report.json").read_bytes() == b"{}"
    # attempts was committed after contacts: its folder was renamed into place later
    assert os.stat(target).st_ctime_ns >= os.stat(lake.partition_dir(settings, "contacts", D)).st_ctime_ns
    assert [p.name for p in target.parent.iterdir() if p.name.startswith(".")] == []


def test_missing_partition_reads_none(settings) -> None:
    assert lake.read_partition(settings, "attempts", D) is None
    assert lake.partition_dates(settings, "nothing") == []


def test_duckdb_reads_hive_partitions(settings) -> None:
    for i, d in enumerate(date_range(D, date(2026, 1, 7))):
        lake.write_partition(settings, "attempts", d, pa.table({"x": [i, i]}))
    con = lake.duckdb_connect(settings)
    rows = con.sql(
        f"select date, sum(x) from read_parquet('{lake.parquet_glob(settings, 'attempts')}', "
        "hive_partitioning=true) group by 1 order by 1"
    ).fetchall()
    assert rows == [(date(2026, 1, 5), 0), (date(2026, 1, 6), 2), (date(2026, 1, 7), 4)]


@pytest.mark.parametrize("bad", ["../../etc", "2026-13-01", "2026-1-5", "", "2026-01-05; rm -rf /"])
def test_parse_date_refuses_non_dates(bad: str) -> None:
    with pytest.raises(InputError):
        parse_date(bad)


def test_parse_date_and_ids() -> None:
    assert parse_date("2026-01-05") == D
    assert validate_id("12345678900") == "12345678900"
    for bad in ["../x", "a/b", "", "..", "x\x00y"]:
        with pytest.raises(InputError):
            validate_id(bad)


def test_dictionary_columns_are_stored_as_plain_values(settings) -> None:
    """Chunks with different dictionaries (and a unique id column) come back as plain strings."""
    enc = pa.chunked_array(
        [pa.array(["b", "a", "b"]).dictionary_encode(), pa.array(["c", None]).dictionary_encode()]
    )
    ts = pa.array([0, 1, 2, 3, 4], pa.timestamp("us", tz="UTC"))
    table = pa.table({"id": ["1", "2", "3", "4", "5"], "v": enc, "at": ts})
    path = lake.partition_dir(settings, "attempts", D)
    with lake.partition_batch(settings, D, ["attempts"]) as batch:
        batch.write("attempts", table, unique=["id"])
    back = lake.read_partition(settings, "attempts", D)
    assert back.schema == pa.schema(
        [("id", pa.string()), ("v", pa.string()), ("at", pa.timestamp("us", tz="UTC"))]
    )
    assert back.column("v").to_pylist() == ["b", "a", "b", "c", None]
    assert (path / lake.DATA_FILE).is_file()


def test_partition_dates_lists_only_complete_date_partitions(settings) -> None:
    lake.write_partition(settings, "attempts", D, pa.table({"x": [1]}))
    lake.write_partition(settings, "attempts", date(2026, 1, 3), pa.table({"x": [2]}))
    root = settings.lake / "attempts"
    (root / "date=2026-01-09").mkdir()  # a folder without its data file (never committed)
    (root / "date=not-a-date").mkdir()
    (root / "date=not-a-date" / lake.DATA_FILE).write_bytes(b"")
    (root / "notes.txt").write_text("not a partition")
    assert lake.partition_dates(settings, "attempts") == [date(2026, 1, 3), D]  # sorted
    (settings.lake / "afile").write_text("")
    assert lake.partition_dates(settings, "afile") == []


def test_duckdb_connections_share_a_database_but_not_their_tables(settings, tmp_path) -> None:
    first = lake.duckdb_connect(settings)
    first.execute("CREATE TEMP TABLE day AS SELECT 1 AS x")
    second = lake.duckdb_connect(settings)
    assert second.execute("SELECT count(*) FROM duckdb_tables() WHERE table_name = 'day'").fetchone() == (0,)
    first.close()
    assert second.execute("SELECT 2").fetchone() == (2,)  # closing one leaves the others working
    second.close()
    other = settings.replace(home=tmp_path / "other", duckdb_threads=1, duckdb_memory_limit="1GB")
    con = lake.duckdb_connect(other)  # other bounds: a database of their own
    spill = con.execute("SELECT current_setting('temp_directory'), current_setting('threads')").fetchone()
    assert spill == (str(other.home / "tmp" / "duckdb"), 1)
    con.close()
