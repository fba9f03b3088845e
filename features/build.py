"""The feature stage: point-in-time features from rolling history, built incrementally with DuckDB.

Tables written for a business date D (all through ``features.lake.atomic_dir``):

- ``daily_agg/date=D``: the attempts of D reduced per (person, contact) and per (campaign,
  channel) (``daily_aggregates``);
- ``feature_state/date=D``: the running per-(person, contact) state at the end of D, every candidate
  plus every pair ever attempted (``feature_state``), and the point-in-time person attributes
  (``person_attributes``);
- ``features/date=D``: one row per candidate (every address of the latest ``contacts_state``
  partition <= D and every address ever seen in attempts) with the ``f_*`` features of
  docs/features.md (``feature_rows``);
- ``training/date=D``: the attempts of D, labelled, with the features of the end of D-1.

Building D reads the state of D-1 and the daily aggregates of D, D-7, D-30, D-90 and D-365 (windows
slide by adding one day and subtracting the day that leaves); when the state of D-1 is missing, or
``full=True``, the state is computed directly from every daily aggregate <= D (rebuilt from raw
attempts with ``full=True``). Both paths give the same features (tests/data/test_incremental.py).
Nothing dated after D is ever read: every file list is cut at D (``history.partition_files``).
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd

from contactrank.errors import ContactrankError, NotReady
from contactrank.features import history
from contactrank.features.context import add_context
from contactrank.features.daily_aggregates import (
    attempts_of_day,
    build_daily_aggs,
    daily_agg_sql,
    population_sql,
)
from contactrank.features.feature_chunks import in_range, parquet_rows, person_ranges, stream_to_parquet
from contactrank.features.feature_rows import create_shared_rates, feature_rows_sql, training_rows_sql
from contactrank.features.feature_state import write_state
from contactrank.features.history import DAILY_AGG, FEATURES, PERSONS_FILE, STATE, TRAINING
from contactrank.features.lake import (
    DATA_FILE,
    atomic_dir,
    duckdb_connect,
    partition_dates,
    partition_dir,
    read_table,
    write_partition,
)
from contactrank.features.person_attributes import write_person_attributes
from contactrank.features.schema import ATTEMPTS, CONTACTS_STATE
from contactrank.settings import Settings

__all__ = [
    "DAILY_AGG", "FEATURES", "STATE", "TRAINING", "FeatureError", "build_features", "load_features",
    "load_training", "training_dates",
]  # fmt: skip

log = logging.getLogger(__name__)


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


def build_features(settings: Settings, d: date, full: bool = False) -> dict[str, Any]:
    """Write ``daily_agg``, ``feature_state``, ``features`` and ``training`` of date ``d``.

    Incremental when the state of d-1 exists (and ``full`` is false); otherwise the state is computed
    directly from the daily aggregates. ``full=True`` also rebuilds every daily aggregate <= d from the
    raw attempts. Idempotent and deterministic for its date; never reads anything dated after d.
    """
    t0 = time.perf_counter()
    timings: dict[str, float] = {}
    cpu: dict[str, float] = {}

    @contextlib.contextmanager
    def phase(name: str):
        # CPU seconds beside wall time: the figure that load on a shared machine does not distort.
        w, c = time.perf_counter(), time.process_time()
        yield
        timings[name], cpu[name] = time.perf_counter() - w, time.process_time() - c

    con = duckdb_connect(settings)
    try:
        register_empty_relations(con)
        todo = _daily_aggs_to_build(settings, d, full)
        with phase("daily_agg"):
            agg_rows = build_daily_aggs(settings, con, todo, d)

        prev_day = d - timedelta(days=1)
        prev_dir = partition_dir(settings, STATE, prev_day)
        prev_ok = not full and (prev_dir / DATA_FILE).is_file() and (prev_dir / PERSONS_FILE).is_file()
        tmp_root = settings.home / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=tmp_root, prefix="features-") as tmp:
            if not prev_ok:
                # The state of d-1 computed directly (kept out of the lake: only d's partitions are written).
                prev_dir = Path(tmp)
                with phase("state_prev_direct"):
                    _write_state_and_attributes(settings, con, prev_day, None, prev_dir)
            with phase("state"), atomic_dir(partition_dir(settings, STATE, d)) as stage:
                # Always one incremental step onto the state of d-1 (read, or computed directly just above).
                mode = _write_state_and_attributes(settings, con, d, prev_dir, stage)
                state_rows = parquet_rows(stage / DATA_FILE)
            mode = "full" if full else (mode if prev_ok else "direct")
            with phase("features"):
                feat_rows = write_features(settings, con, d, partition_dir(settings, STATE, d))
            with phase("training"):
                train_rows = write_training(settings, con, d, prev_dir)
    except ContactrankError:
        raise
    except Exception as exc:  # duckdb/pyarrow errors: one line naming the date
        raise FeatureError(f"features for {d}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    finally:
        con.close()
    out = {
        "date": d.isoformat(),
        "mode": mode,
        "daily_agg_days": len(todo),
        "daily_agg_rows": agg_rows,
        "state_rows": state_rows,
        "rows": feat_rows,
        "training_rows": train_rows,
        "seconds": round(time.perf_counter() - t0, 3),
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "cpu_seconds": {k: round(v, 3) for k, v in cpu.items()},
    }
    log.info("features %s: %s", d, out)
    return out


def _daily_aggs_to_build(settings: Settings, d: date, full: bool) -> list[date]:
    """d itself, every attempts date <= d without daily aggregates yet, or all of them when ``full``."""
    attempt_dates = [x for x in partition_dates(settings, "attempts") if x <= d]
    have = set(partition_dates(settings, DAILY_AGG))
    todo = [x for x in attempt_dates if full or x == d or x not in have]
    if d not in todo:
        todo.append(d)
    return todo


def _write_state_and_attributes(
    settings: Settings, con, d: date, prev_dir: Path | None, out_dir: Path
) -> str:
    """The state and the person attributes of the end of d, onto those of ``prev_dir`` if any."""
    mode = write_state(settings, con, d, prev_dir, out_dir)
    write_person_attributes(settings, con, d, prev_dir, out_dir)
    return mode


def write_features(settings: Settings, con, d: date, state_dir: Path) -> int:
    """Features of d: one row per candidate (``is_candidate_sql``) of the state of the end of d."""
    state, attrs = history.state_files(state_dir)
    create_shared_rates(con, state, history.recent_population(settings, d), d, settings.prior_strength)
    keys = ["person_id", "contact_id", "channel"]
    with atomic_dir(partition_dir(settings, FEATURES, d)) as stage:
        queries = [
            feature_rows_sql(con, None, keys, in_range(state, b), in_range(attrs, b) if attrs else "", d,
                             settings.prior_strength)
            for b in person_ranges(con, state_dir / DATA_FILE)
        ]  # fmt: skip
        return stream_to_parquet(con, queries, stage / DATA_FILE)


def write_training(settings: Settings, con, d: date, prev_dir: Path) -> int:
    """Training examples of d: its attempts, labelled, with the features of the end of d-1 only."""
    x = d - timedelta(days=1)
    state, attrs = history.state_files(prev_dir)
    tries = ["tries_before_address", "tries_before_person"]
    passthrough = ["attempt_id", "person_id", "contact_id", "channel", "date", "campaign_id", "label_reach",
                   "label_conversion", "local_hour", *tries]  # fmt: skip
    create_shared_rates(con, state, history.recent_population(settings, x), x, settings.prior_strength)
    # Only the state rows of the persons attempted on d: a few hundred thousand, not the whole state.
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE training_rows AS SELECT * FROM {training_rows_sql(settings, d)}"
    )
    attempted = "WHERE person_id IN (SELECT person_id FROM training_rows)"
    con.execute(f"CREATE OR REPLACE TEMP TABLE training_state AS SELECT * FROM {state} {attempted}")
    if attrs:
        con.execute(f"CREATE OR REPLACE TEMP TABLE training_attrs AS SELECT * FROM {attrs} {attempted}")
    attrs_rel = "training_attrs" if attrs else ""
    query = feature_rows_sql(con, "training_rows", passthrough, "training_state", attrs_rel, x,
                             settings.prior_strength)  # fmt: skip
    df = (
        con.sql(query).to_arrow_table().to_pandas().sort_values("attempt_id", ignore_index=True)
    )  # dates stay dates
    df = df.drop(columns=["last_outcome", "n_attempts"])
    df = add_context(df, d, df["local_hour"], *(df[c] for c in tries)).drop(columns=["local_hour", *tries])
    write_partition(settings, TRAINING, d, df)
    return len(df)


# --- readers for the other stages -----------------------------------------------------------------


def load_features(settings: Settings, d: date, columns: list[str] | None = None) -> pd.DataFrame:
    """The feature state of the end of d (one row per candidate); raises NotReady when not built."""
    path = partition_dir(settings, FEATURES, d) / DATA_FILE
    if not path.is_file():
        raise NotReady(f"no features for {d}: {path} is missing (run `contactrank features --date {d}`)")
    return read_table(path, columns=columns).to_pandas()


def training_dates(settings: Settings, start: date, end: date) -> list[date]:
    """Dates in [start, end] that have a training partition."""
    return [x for x in partition_dates(settings, TRAINING) if start <= x <= end]


def load_training(
    settings: Settings, start: date, end: date, columns: list[str] | None = None
) -> pd.DataFrame:
    """Every training partition in [start, end] concatenated (missing days skipped; empty frame if none)."""
    frames = []
    for x in training_dates(settings, start, end):
        table = read_table(partition_dir(settings, TRAINING, x) / DATA_FILE)
        if columns is not None:
            table = table.select([c for c in columns if c in table.column_names])
        frames.append(table.to_pandas())
    if not frames:
        return pd.DataFrame(columns=columns or [])
    return pd.concat(frames, ignore_index=True)
