"""The tables the feature stage writes for a date, each for every person or for one shard of them.

``features.build`` writes them all in one process; ``features.feature_shards`` writes them shard by
shard, with the rates every row shares computed once between the two halves (``shared_rates``).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq

from contactrank.errors import ContactrankError
from contactrank.features import history
from contactrank.features.context import add_context
from contactrank.features.daily_aggregates import attempts_of_day, daily_agg_sql, population_sql
from contactrank.features.feature_chunks import (
    Bounds,
    in_range,
    parquet_rows,
    person_ranges,
    stream_to_parquet,
)
from contactrank.features.feature_rows import (
    create_shared_rates,
    feature_rows_sql,
    load_shared_rates,
    training_rows_sql,
)
from contactrank.features.feature_state import write_state
from contactrank.features.history import FEATURES, TRAINING
from contactrank.features.lake import DATA_FILE, atomic_dir, partition_dates, partition_dir, write_partition
from contactrank.features.person_attributes import write_person_attributes
from contactrank.features.person_curves import create_person_curves
from contactrank.features.schema import ATTEMPTS, CONTACTS_STATE
from contactrank.settings import Settings
from contactrank.shards import Shard, sharded
from contactrank.storage import Location

# The shared-rate files of one date: where they are and the prefix of their names.
SharedRates = tuple[Location, str]


class FeatureError(ContactrankError):
    """The feature build could not run (unreadable partition, inconsistent input)."""


def register_empty_relations(con) -> None:
    """The zero-row views of ``history.EMPTY_*`` that stand in for missing partitions."""
    con.register("empty_attempts_arrow", ATTEMPTS.empty_table())
    con.execute(f"CREATE OR REPLACE TEMP VIEW {history.EMPTY_ATTEMPTS} AS SELECT * FROM empty_attempts_arrow")
    con.register("empty_contacts_state_arrow", CONTACTS_STATE.empty_table())
    con.execute(
        f"CREATE OR REPLACE TEMP VIEW {history.EMPTY_CONTACTS_STATE} AS "
        "SELECT * FROM empty_contacts_state_arrow"
    )
    no_attempts = attempts_of_day(None, date(1970, 1, 1))
    con.execute(f"CREATE OR REPLACE TEMP VIEW {history.EMPTY_DAILY_AGG} AS {daily_agg_sql(no_attempts)}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW {history.EMPTY_POPULATION} AS {population_sql(no_attempts)}")


def daily_aggs_to_build(settings: Settings, d: date, full: bool) -> list[date]:
    """d itself, every attempts date <= d without daily aggregates yet, or all of them when ``full``."""
    attempt_dates = [x for x in partition_dates(settings, "attempts") if x <= d]
    have = set(partition_dates(settings, history.DAILY_AGG))
    todo = [x for x in attempt_dates if full or x == d or x not in have]
    if d not in todo:
        todo.append(d)
    return todo


def write_state_and_attributes(
    settings: Settings, con, d: date, prev_dir: Path | None, out_dir: Path, shard: Shard | None = None
) -> str:
    """The state and the person attributes of the end of d, onto those of ``prev_dir`` if any."""
    mode = write_state(settings, con, d, prev_dir, out_dir, shard)
    write_person_attributes(settings, con, d, prev_dir, out_dir, shard)
    return mode


def create_day_rates(settings: Settings, con, state: str, attrs: str, population: str, x: date) -> None:
    """The shared rates the feature rows of ``x`` read (``feature_rows.create_shared_rates``) and,
    for the "curve" hour choice, every person's hour curve (``features.person_curves``; an empty
    table for the other choices). Training's rows read the rates only: the curves are not fitted
    for them."""
    create_shared_rates(con, state, attrs, population, x, settings)
    create_person_curves(con, settings, x, state, attrs, fit=settings.hour_choice == "curve")


def write_features(
    settings: Settings,
    con,
    d: date,
    state_dir: Path,
    shard: Shard | None = None,
    shared: SharedRates | None = None,
) -> int:
    """Features of d: one row per candidate (``is_candidate_sql``) of the state of the end of d
    (``state_dir``: every person's, or ``shard``'s with the ``shared`` rates of all persons)."""
    state, attrs = history.state_files(state_dir)
    if shared is None:
        create_day_rates(settings, con, state, attrs, history.recent_population(settings, d), d)
    else:
        load_shared_rates(con, *shared)
    keys = ["person_id", "contact_id", "channel"]
    with atomic_dir(partition_dir(settings, sharded(FEATURES, shard), d)) as stage:
        queries = [
            feature_rows_sql(con, None, keys, in_range(state, b), in_range(attrs, b) if attrs else "", d,
                             settings.prior_strength, own_lines=settings.hour_habit_own_lines,
                             curves=settings.hour_choice == "curve")
            for b in person_ranges(con, state_dir / DATA_FILE)
        ]  # fmt: skip
        return stream_to_parquet(con, queries, stage / DATA_FILE)


def no_attempts(settings: Settings, d: date) -> bool:
    """True when nothing was attempted on d (no attempts partition, or an empty one)."""
    day = history.attempts_file(settings, d)
    return day is None or (isinstance(day, Path) and parquet_rows(day) == 0)


def write_training(
    settings: Settings,
    con,
    d: date,
    prev_dir: Path,
    shard: Shard | None = None,
    shared: SharedRates | None = None,
) -> int:
    """Training examples of d: its attempts (of ``shard``'s persons, if given), labelled, with the
    features of the end of d-1 only (``prev_dir``: that state; ``shared``: its shared rates)."""
    x = d - timedelta(days=1)
    state, attrs = history.state_files(prev_dir)
    quiet = None
    if no_attempts(settings, d):
        # the same queries over an empty state give the same (empty) table, and the shared rates
        # no longer scan every person of d-1 on a quiet day
        state = f"(SELECT * FROM {state} WHERE false)"
        attrs = attrs and f"(SELECT * FROM {attrs} WHERE false)"
        if shared is None:
            quiet = _quiet_key(settings, con, d, attrs, shard)
            if quiet in _EMPTY_TRAINING:  # a quiet day like one seen before: the same empty table
                write_partition(settings, sharded(TRAINING, shard), d, _EMPTY_TRAINING[quiet])
                return 0
    passthrough = ["attempt_id", "person_id", "contact_id", "channel", "date", "campaign_id", "label_reach",
                   "label_conversion", "local_hour"]  # fmt: skip
    if shared is None:
        create_shared_rates(con, state, attrs, history.recent_population(settings, x), x, settings)
    else:
        load_shared_rates(con, *shared)
    attempts = training_rows_sql(settings, d)
    if shard is not None:
        attempts = in_range(attempts, Bounds(None, None, shard))
    # Only the state rows of the persons attempted on d: a few hundred thousand, not the whole state.
    con.execute(f"CREATE OR REPLACE TEMP TABLE training_rows AS SELECT * FROM {attempts}")
    attempted = "WHERE person_id IN (SELECT person_id FROM training_rows)"
    con.execute(f"CREATE OR REPLACE TEMP TABLE training_state AS SELECT * FROM {state} {attempted}")
    if attrs:
        con.execute(f"CREATE OR REPLACE TEMP TABLE training_attrs AS SELECT * FROM {attrs} {attempted}")
    attrs_rel = "training_attrs" if attrs else ""
    query = feature_rows_sql(con, "training_rows", passthrough, "training_state", attrs_rel, x,
                             settings.prior_strength, own_lines=settings.hour_habit_own_lines)  # fmt: skip
    df = (
        con.sql(query).to_arrow_table().to_pandas().sort_values("attempt_id", ignore_index=True)
    )  # dates stay dates
    df = df.drop(columns=["last_outcome", "n_attempts"])
    df = add_context(df, d, df["local_hour"]).drop(columns=["local_hour"])
    write_partition(settings, sharded(TRAINING, shard), d, df)
    if quiet is not None and not len(df):
        _EMPTY_TRAINING[quiet] = df
    return len(df)


# The empty training tables of quiet days, by what their columns and types depend on: the
# attribute columns of d-1 and the schema of d's (empty) attempts file. A backfill meets hundreds
# of quiet days, each of which otherwise runs every query of a training day over no row.
_EMPTY_TRAINING: dict[tuple, pd.DataFrame] = {}


def _quiet_key(settings: Settings, con, d: date, attrs: str, shard: Shard | None) -> tuple:
    described = con.execute(f"DESCRIBE SELECT * FROM {attrs}").fetchall() if attrs else []
    day = history.attempts_file(settings, d)
    attempts = day if day is None else pq.read_schema(day).to_string(show_schema_metadata=False)
    return (shard, tuple((name, typ) for name, typ, *_ in described), attempts)
