"""Each hour bucket's repeat ratio: the reach rate of every try there over that of first tries."""

from __future__ import annotations

from datetime import UTC, date, datetime

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contactrank.features import history
from contactrank.features.daily_aggregates import population_sql
from contactrank.features.feature_rows import SHARED_RATE_TABLES, load_shared_rates, repeat_ratio_sql
from contactrank.features.feature_tables import register_empty_relations
from contactrank.features.lake import partition_dir
from contactrank.settings import Settings

D = date(2025, 3, 3)


def _try(i: int, contact: str, hour: int, outcome: str) -> dict:
    return {"attempt_id": f"a{i}", "person_id": f"p-{contact}", "contact_id": contact, "date": D,
            "channel": "voice", "campaign_id": "k", "outcome": outcome, "local_hour": hour,
            "attempted_at": datetime(D.year, D.month, D.day, hour, i, tzinfo=UTC)}  # fmt: skip


# A fails at 9h and is tried again at 19h (a retry, not answered); B, C and D are first tried at
# 19h, and C and D answer; E is tried twice at 10h, the retry answers.
TRIES = [_try(1, "A", 9, "no_answer"), _try(2, "A", 19, "no_answer"), _try(3, "B", 19, "no_answer"),
         _try(4, "C", 19, "right_party"), _try(5, "D", 19, "converted"), _try(6, "E", 10, "busy"),
         _try(7, "E", 10, "right_party")]  # fmt: skip


def test_population_counts_every_try_and_first_tries_per_bucket():
    con = duckdb.connect()
    con.register("tries", pd.DataFrame(TRIES))
    pop = con.sql(population_sql("tries")).df().iloc[0]
    assert (pop.n, pop.reach) == (7, 3)
    assert (pop.attempts_evening, pop.reach_evening) == (4, 2)
    assert (pop.first_attempts_evening, pop.first_reach_evening) == (3, 2)  # A's retry is not a first try
    assert (pop.attempts_morning, pop.reach_morning) == (3, 1)
    assert (pop.first_attempts_morning, pop.first_reach_morning) == (2, 0)  # E's answer came on the retry
    assert pop.attempts_midday == 0
    ratio = con.sql(f"SELECT {repeat_ratio_sql()} FROM ({population_sql('tries')})").df().iloc[0]
    assert ratio.repeat_evening == pytest.approx((2 / 4) / (2 / 3))  # retries lowered the evening
    assert pd.isna(ratio.repeat_morning)  # no first try answered: no ratio
    assert pd.isna(ratio.repeat_midday)  # nobody tried


def test_population_files_written_before_the_bucket_counts_read_as_none(tmp_path):
    # a lake from before: its population file has the day's totals only
    settings = Settings(home=tmp_path / "home")
    old = pa.table({"date": [D], "campaign_id": ["k"], "channel": ["voice"], "n": pa.array([4], pa.int32()),
                    "reach": pa.array([1], pa.int32()), "conv": pa.array([0], pa.int32())})  # fmt: skip
    folder = partition_dir(settings, history.DAILY_AGG, D)
    folder.mkdir(parents=True)
    pq.write_table(old, folder / history.POP_FILE)
    pq.write_table(pa.table({"person_id": ["p"]}), folder / "part-0.parquet")  # the day's aggregates
    con = duckdb.connect()
    register_empty_relations(con)
    pop = con.sql(f"SELECT * FROM {history.recent_population(settings, D)}").df()
    assert len(pop) == 1 and pop.n.iloc[0] == 4 and pd.isna(pop.first_attempts_evening.iloc[0])
    ratio = con.sql(f"SELECT {repeat_ratio_sql()} FROM {history.recent_population(settings, D)}").df()
    assert ratio.isna().all(axis=None)


def test_shared_rates_saved_before_the_ratios_load_without_them(tmp_path):
    con = duckdb.connect()
    for name in SHARED_RATE_TABLES:
        con.execute(f"CREATE TABLE {name} AS SELECT 1 AS one")
        con.execute(f"COPY {name} TO '{tmp_path / f'x_{name}.parquet'}' (FORMAT parquet)")
    fresh = duckdb.connect()
    load_shared_rates(fresh, tmp_path, "x_")
    rates = fresh.sql("SELECT * FROM population_hour_rates").df()
    assert rates.one.iloc[0] == 1 and pd.isna(rates.repeat_evening.iloc[0])
