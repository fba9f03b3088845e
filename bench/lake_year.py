"""A year of daily partitions: does listing and reading the lake slow down as it grows?

Writes 365 daily `attempts` partitions (N rows each) through `features.lake.write_partition`, then
times, at 30, 90, 180 and 365 partitions: `partition_dates` (listing), reading one partition, and a
DuckDB scan of the last 30 days (what the feature build reads) — each should stay flat — plus a
full scan (which should grow linearly with the rows). Prints one JSON line; figures go in
docs/benchmarks.md.

    python bench/lake_year.py [--rows-per-day 20000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from contactrank.features import lake  # noqa: E402
from contactrank.settings import load_settings  # noqa: E402

START = date(2025, 1, 1)


def _day(n: int, i: int) -> pa.Table:
    rng = np.random.default_rng(i)
    return pa.table(
        {
            "attempt_id": pa.array([f"{i}-{k}" for k in range(n)]),
            "person_id": pa.array(rng.integers(0, 200_000, n).astype(str)),
            "contact_id": pa.array(rng.integers(0, 500_000, n).astype(str)),
            "outcome": pa.array(rng.choice(["no_answer", "right_party", "busy"], n)),
            "local_hour": pa.array(rng.integers(8, 22, n).astype("int8")),
        }
    )


def _best(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--rows-per-day", type=int, default=20_000)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        s = load_settings(home=Path(tmp))
        con = lake.duckdb_connect(s)
        glob = lake.parquet_glob(s, "attempts")
        out = {"rows_per_day": args.rows_per_day, "at": {}}
        written = 0
        t_write = time.perf_counter()
        for checkpoint in (30, 90, 180, 365):
            while written < checkpoint:
                lake.write_partition(
                    s, "attempts", START + timedelta(days=written), _day(args.rows_per_day, written)
                )
                written += 1
            last = START + timedelta(days=written - 1)
            since = (last - timedelta(days=29)).isoformat()
            out["at"][checkpoint] = {
                "list_s": _best(lambda: lake.partition_dates(s, "attempts")),
                "read_one_s": _best(lambda last=last: lake.read_partition(s, "attempts", last)),
                "scan_last_30d_s": _best(
                    lambda since=since: con.sql(
                        "select count(*), count(distinct contact_id) "
                        f"from read_parquet('{glob}', hive_partitioning=true) "
                        f"where date >= DATE '{since}'"
                    ).fetchall()
                ),
                "scan_all_s": _best(
                    lambda: con.sql(
                        f"select count(*) from read_parquet('{glob}', hive_partitioning=true)"
                    ).fetchall(),
                    3,
                ),
            }
        out["write_365_s"] = round(time.perf_counter() - t_write, 2)
        a, b = out["at"][30], out["at"][365]
        out["ratio_365_vs_30"] = {k: round(b[k] / a[k], 2) for k in a}
        print(json.dumps(out))


if __name__ == "__main__":
    main()
