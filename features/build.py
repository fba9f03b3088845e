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
from contactrank.features.daily_aggregates import build_daily_aggs
from contactrank.features.feature_chunks import parquet_rows
from contactrank.features.feature_rows import save_shared_rates
from contactrank.features.feature_shards import END_OF_DAY, SHARED_RATES, build_all_shards, day_before_rates
from contactrank.features.feature_tables import (
    FeatureError,
    create_day_rates,
    daily_aggs_to_build,
    no_attempts,
    register_empty_relations,
    write_features,
    write_state_and_attributes,
    write_training,
)
from contactrank.features.history import DAILY_AGG, FEATURES, PERSONS_FILE, STATE, TRAINING
from contactrank.features.lake import (
    DATA_FILE,
    atomic_dir,
    duckdb_connect,
    partition_dates,
    partition_dir,
    partition_files_of,
    read_partition,
    read_table,
)
from contactrank.settings import Settings

__all__ = [
    "DAILY_AGG", "FEATURES", "STATE", "TRAINING", "FeatureError", "build_features", "load_features",
    "load_training", "register_empty_relations", "training_dates",
]  # fmt: skip

log = logging.getLogger(__name__)


def build_features(settings: Settings, d: date, full: bool = False, rows: bool = True) -> dict[str, Any]:
    """Write ``daily_agg``, ``feature_state``, ``features`` and ``training`` of date ``d``.

    Incremental when the state of d-1 exists (and ``full`` is false); otherwise the state is computed
    directly from the daily aggregates. ``full=True`` also rebuilds every daily aggregate <= d from the
    raw attempts. Idempotent and deterministic for its date; never reads anything dated after d.
    With ``settings.shards`` > 1 the same tables are written shard by shard (``feature_shards``).
    ``rows=False`` leaves out a ``features`` partition that does not exist yet (only scoring reads
    it: a replay that scores only its last day saves most of a quiet day's cost); one that exists
    is rewritten, so it never goes stale. Unsharded builds only.
    """
    if settings.shards > 1:
        return build_all_shards(settings, d, full=full)
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
        todo = daily_aggs_to_build(settings, d, full)
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
                    write_state_and_attributes(settings, con, prev_day, None, prev_dir)
            with phase("state"), atomic_dir(partition_dir(settings, STATE, d)) as stage:
                # Always one incremental step onto the state of d-1 (read, or computed directly just above).
                mode = write_state_and_attributes(settings, con, d, prev_dir, stage)
                state_rows = parquet_rows(stage / DATA_FILE)
            mode = "full" if full else (mode if prev_ok else "direct")
            feat_rows = None
            with_rows = rows or (partition_dir(settings, FEATURES, d) / DATA_FILE).is_file()
            if with_rows or partition_dir(settings, SHARED_RATES, d).exists():
                with phase("features"):
                    feat_rows = _write_rows_and_rates(settings, con, d, with_rows)
            # the rates of the end of d-1 as its build saved them, unless that state was rebuilt here
            saved = day_before_rates(settings, d) if prev_ok and not no_attempts(settings, d) else None
            with phase("training"):
                train_rows = write_training(settings, con, d, prev_dir, shared=saved)
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


# --- readers for the other stages -----------------------------------------------------------------


def _write_rows_and_rates(settings: Settings, con, d: date, with_rows: bool) -> int | None:
    """``features/date=d`` when ``with_rows``, and the rates of the end of d its rows share, saved
    (``shared_rates/date=d``): the training rows of d+1 share the same ones. Without the rows, saved
    rates are computed again from the state just written, so that they never go stale."""
    state_dir = partition_dir(settings, STATE, d)
    written = None
    with atomic_dir(partition_dir(settings, SHARED_RATES, d)) as stage:
        if with_rows:
            written = write_features(settings, con, d, state_dir)
        else:
            state, attrs = history.state_files(state_dir)
            population = history.recent_population(settings, d)
            create_day_rates(settings, con, state, attrs, population, d)
        save_shared_rates(con, stage, END_OF_DAY)
    return written


def load_features(settings: Settings, d: date, columns: list[str] | None = None) -> pd.DataFrame:
    """The feature rows of the end of d (one row per candidate; every shard's, in shard order);
    raises NotReady when not built."""
    files = partition_files_of(settings, FEATURES, d)
    if not files:
        path = partition_dir(settings, FEATURES, d) / DATA_FILE
        raise NotReady(f"no features for {d}: {path} is missing (run `contactrank features --date {d}`)")
    return pd.concat([read_table(f, columns=columns).to_pandas() for f in files], ignore_index=True)


def training_dates(settings: Settings, start: date, end: date) -> list[date]:
    """Dates in [start, end] that have a training partition (whole, or every shard of one split)."""
    return [x for x in partition_dates(settings, TRAINING) if start <= x <= end]


def load_training(
    settings: Settings, start: date, end: date, columns: list[str] | None = None
) -> pd.DataFrame:
    """Every training partition in [start, end] concatenated (missing days skipped; empty frame if none).

    A sharded day's rows are put back in ``attempt_id`` order, the order of an unsharded day, so
    that a model trains on the same rows in the same order however the features were split.
    """
    frames = []
    for x in training_dates(settings, start, end):
        table = read_partition(settings, TRAINING, x)
        if columns is not None:
            table = table.select([c for c in columns if c in table.column_names])
        frames.append(table.to_pandas())
    if not frames:
        return pd.DataFrame(columns=columns or [])
    return pd.concat(frames, ignore_index=True)
