"""The feature stage shard by shard: what ``build_features`` writes, split so that workers share it.

For a date D and N shards (``settings.shards``), in this order (each a DAG task, the middle ones
mapped over the shards)::

    prepare_features        daily_agg of D (and of any day missing one): one task, it is small
    build_state_shard(k)    feature_state/shard=k-of-N/date=D: the state of the shard's persons
    build_shared_rates      shared_rates/date=D: the population priors, hour profiles and recent
                            rates of every person, for D (feature rows) and, unless the step of
                            D-1 saved them, for D-1 (training rows)
    build_rows_shard(k)     features/ and training/shard=k-of-N/date=D

The shared rates are the one step that needs every person: computed once from all the shards'
states, saved, and loaded by every shard, they are exactly those of the unsharded build (the same
queries over the same rows; sums are exact), so the feature rows are too.

A shard's state of D-1 comes from its own partition, else the unsharded partition of D-1 filtered
to the shard, else it is computed directly from the daily aggregates and written as the shard's
partition of D-1 (the content D-1's own build writes: both paths give the same state), where the
shared-rates step finds it.
"""

from __future__ import annotations

import logging
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from contactrank.errors import ContactrankError, NotReady
from contactrank.features import history
from contactrank.features.daily_aggregates import build_daily_aggs
from contactrank.features.feature_chunks import parquet_rows
from contactrank.features.feature_rows import SHARED_RATE_TABLES, save_shared_rates
from contactrank.features.feature_tables import (
    FeatureError,
    SharedRates,
    create_day_rates,
    daily_aggs_to_build,
    register_empty_relations,
    write_features,
    write_state_and_attributes,
    write_training,
)
from contactrank.features.history import PERSONS_FILE, STATE
from contactrank.features.lake import DATA_FILE, atomic_dir, duckdb_connect, partition_dir, partition_files_of
from contactrank.settings import Settings
from contactrank.shards import Shard, map_shards, sharded

log = logging.getLogger(__name__)

SHARED_RATES = "shared_rates"
END_OF_DAY, DAY_BEFORE = "end_of_day-", "day_before-"  # the rates of D (feature rows), of D-1 (training)


def _connected(settings: Settings, d: date, what: str, work) -> dict[str, Any]:
    """``work(con)`` on a fresh connection with the empty relations, timed (wall and CPU seconds);
    DuckDB and Arrow errors become one FeatureError line naming the date and the step."""
    wall, cpu = time.perf_counter(), time.process_time()
    con = duckdb_connect(settings)
    try:
        register_empty_relations(con)
        out = work(con)
    except ContactrankError:
        raise
    except Exception as exc:
        raise FeatureError(f"{what} for {d}: {type(exc).__name__}: {str(exc).splitlines()[0]}") from exc
    finally:
        con.close()
    out.update(seconds=round(time.perf_counter() - wall, 3), cpu_seconds=round(time.process_time() - cpu, 3))
    log.info("%s %s: %s", what, d, out)
    return out


def prepare_features(settings: Settings, d: date, full: bool = False) -> dict[str, Any]:
    """The daily aggregates of d (and of every attempts day without them; all of them when ``full``)."""

    def work(con) -> dict[str, Any]:
        todo = daily_aggs_to_build(settings, d, full)
        return {"date": d.isoformat(), "daily_agg_days": len(todo), "daily_agg_rows": build_daily_aggs(
            settings, con, todo, d)}  # fmt: skip

    return _connected(settings, d, "features (daily aggregates)", work)


def _state_dir(settings: Settings, d: date, shard: Shard | None) -> Path:
    return partition_dir(settings, sharded(STATE, shard), d)


def _has_state(folder) -> bool:
    return (folder / DATA_FILE).is_file() and (folder / PERSONS_FILE).is_file()


def build_state_shard(settings: Settings, d: date, shard: Shard, full: bool = False) -> dict[str, Any]:
    """``feature_state/shard=k-of-N/date=d``: the state of the end of d of the shard's persons."""
    prev_day = d - timedelta(days=1)

    def work(con) -> dict[str, Any]:
        prev_dir, source = _state_dir(settings, prev_day, shard), "shard"
        if full or not _has_state(prev_dir):
            prev_dir, source = _state_dir(settings, prev_day, None), "whole"
        if full or not _has_state(prev_dir):
            source = "direct"
            with atomic_dir(_state_dir(settings, prev_day, shard)) as stage:
                write_state_and_attributes(settings, con, prev_day, None, stage, shard)
            prev_dir = _state_dir(settings, prev_day, shard)
        with atomic_dir(_state_dir(settings, d, shard)) as stage:
            mode = write_state_and_attributes(settings, con, d, prev_dir, stage, shard)
            rows = parquet_rows(stage / DATA_FILE)
        return {"date": d.isoformat(), "shard": shard.folder, "mode": mode, "previous_state": source,
                "state_rows": rows}  # fmt: skip

    return _connected(settings, d, f"features (state, {shard})", work)


def _state_relations(settings: Settings, x: date) -> tuple[str, str]:
    """Every person's state and attributes of the end of x: the whole partition's or every shard's
    ("" for the attributes when there are none)."""
    files = partition_files_of(settings, STATE, x)
    if not files:
        raise NotReady(f"no feature state for {x}: build the state of all {settings.shards} shards first")
    persons = [f.parent / PERSONS_FILE for f in files]
    persons = [p for p in persons if p.is_file()]
    return history.read_files(files, ""), history.read_files(persons, "", union_by_name="true")


def day_before_rates(settings: Settings, d: date) -> SharedRates | None:
    """The rates of the end of d-1 as d-1's own shared-rates step saved them, when it ran (the same
    inputs: the state of d-1 and the population up to d-1), so they are not computed twice."""
    folder = partition_dir(settings, SHARED_RATES, d - timedelta(days=1))
    # every table: rates saved by a version with fewer tables are computed again, not half loaded
    saved = all((folder / f"{END_OF_DAY}{name}.parquet").is_file() for name in SHARED_RATE_TABLES)
    return (folder, END_OF_DAY) if saved else None


def build_shared_rates(settings: Settings, d: date) -> dict[str, Any]:
    """``shared_rates/date=d``: the rates every feature row of d shares and, unless d-1's step saved
    them, those every training row of d shares (of the end of d-1)."""

    def work(con) -> dict[str, Any]:
        days = [(d, END_OF_DAY)]
        if day_before_rates(settings, d) is None:
            days.append((d - timedelta(days=1), DAY_BEFORE))
        with atomic_dir(partition_dir(settings, SHARED_RATES, d)) as stage:
            for x, prefix in days:
                (state, attrs), population = (
                    _state_relations(settings, x),
                    history.recent_population(settings, x),
                )
                create_day_rates(settings, con, state, attrs, population, x)
                save_shared_rates(con, stage, prefix)
        return {"date": d.isoformat(), "days": [x.isoformat() for x, _ in days]}

    return _connected(settings, d, "features (shared rates)", work)


def build_rows_shard(settings: Settings, d: date, shard: Shard) -> dict[str, Any]:
    """``features`` and ``training`` of the shard's persons for d, with the shared rates of d."""
    rates = partition_dir(settings, SHARED_RATES, d)
    if not (rates / f"{END_OF_DAY}{SHARED_RATE_TABLES[-1]}.parquet").is_file():
        raise NotReady(f"no shared rates for {d}: {rates} is missing (the shared-rates step runs first)")
    before = day_before_rates(settings, d)
    if not (rates / f"{DAY_BEFORE}{SHARED_RATE_TABLES[-1]}.parquet").is_file() and before is not None:
        training_rates = before
    else:
        training_rates = (rates, DAY_BEFORE)
    prev_dir = _state_dir(settings, d - timedelta(days=1), shard)
    if not _has_state(prev_dir):
        prev_dir = _state_dir(settings, d - timedelta(days=1), None)

    def work(con) -> dict[str, Any]:
        rows = write_features(settings, con, d, _state_dir(settings, d, shard), shard, (rates, END_OF_DAY))
        training = write_training(settings, con, d, prev_dir, shard, training_rates)
        return {"date": d.isoformat(), "shard": shard.folder, "rows": rows, "training_rows": training}

    return _connected(settings, d, f"features (rows, {shard})", work)


def build_all_shards(settings: Settings, d: date, full: bool = False) -> dict[str, Any]:
    """Every step above for every shard of ``settings.shards``: the shards of a step in sequence, or in
    ``settings.shard_workers`` processes (what the DAG's mapped tasks do on several workers)."""
    t0 = time.perf_counter()
    out: dict[str, Any] = {"date": d.isoformat(), "shards": settings.shards}
    out["prepare"] = prepare_features(settings, d, full)
    out["state_shards"] = map_shards(build_state_shard, settings, d, full, workers=settings.shard_workers)
    out["shared_rates"] = build_shared_rates(settings, d)
    out["rows_shards"] = map_shards(build_rows_shard, settings, d, workers=settings.shard_workers)
    out.update(
        mode="full" if full else out["state_shards"][0]["mode"],
        state_rows=sum(r["state_rows"] for r in out["state_shards"]),
        rows=sum(r["rows"] for r in out["rows_shards"]),
        training_rows=sum(r["training_rows"] for r in out["rows_shards"]),
        seconds=round(time.perf_counter() - t0, 3),
    )
    return out
