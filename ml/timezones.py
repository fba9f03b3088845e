"""Each person's clock for the export (contract v1.1): the ``timezone`` and ``best_hour_utc`` columns.

Hours are learned and chosen in the clock the attempts were recorded in (``local_hour``: the
person's own when ingest knew their ``timezone`` attribute, ``features.person_clocks``; else the
offset the provider gave, or the deployment's ``local_timezone`` for UTC or naive timestamps).
The export names that clock per person, so a dialer that schedules in UTC can convert:

1. the person's ``timezone`` attribute (an IANA name delivered in ``persons``), when it is valid;
2. else the offset of the person's latest attempt in the last ``CLOCK_WINDOW_DAYS`` days, named
   by the deployment's zone when it has that offset on the valid day, else ``Etc/GMT±N``;
3. else the deployment's ``local_timezone``.

When the attribute names another zone than the recorded clock (attempts ingested before the
attribute arrived, or a lake written by an older version), ``best_hour`` is converted into
the attribute's zone (the same instant), so ``best_hour`` is always in the clock ``timezone`` names.
"""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import duckdb
import numpy as np
import pandas as pd

from contactrank import storage
from contactrank.features import sql
from contactrank.features.lake import DATA_FILE, partition_dates, partition_dir
from contactrank.features.person_clocks import (
    TIMEZONE_ATTRIBUTE,
    latest_zones_sql,
    valid_zone,
    zone_files_sql,
    zone_rows_sql,
)
from contactrank.settings import Settings

CLOCK_WINDOW_DAYS = 30


def utc_offset_hours(zone: str, day: date, hour: int = 12) -> float:
    """The zone's offset from UTC in hours at ``hour`` local time on ``day``."""
    offset = datetime(day.year, day.month, day.day, hour, tzinfo=ZoneInfo(zone)).utcoffset()
    return offset.total_seconds() / 3600 if offset is not None else 0.0


def zone_of_offset(offset_hours: float, settings: Settings, day: date) -> str:
    """The deployment's zone when it has this offset on ``day``, else the IANA fixed-offset name."""
    if abs(utc_offset_hours(settings.local_timezone, day) - offset_hours) < 1e-9:
        return settings.local_timezone
    whole = int(round(offset_hours))
    if whole == 0:
        return "Etc/UTC"
    return f"Etc/GMT{'-' if whole > 0 else '+'}{abs(whole)}"  # POSIX sign: Etc/GMT+3 is UTC-3


def person_clocks(settings: Settings, d: date, person_ids: pd.Series) -> pd.DataFrame:
    """``person_id, recorded_offset, attribute_zone`` for the given persons (None where unknown)."""
    persons = pd.DataFrame({"person_id": pd.unique(person_ids.astype(str))})
    con = duckdb.connect()
    storage.register_duckdb(con, settings.lake)  # the lake may be on an object store
    try:
        con.register("wanted", persons)
        offsets = _recorded_offsets(con, settings, d)
        zones = _attribute_zones(con, settings, d)
    finally:
        con.close()
    out = persons.merge(offsets, on="person_id", how="left").merge(zones, on="person_id", how="left")
    return out


def clock_shifts(settings: Settings, d: date, person_ids: pd.Series) -> pd.Series:
    """Hours to add to a recorded-clock hour to get the person's own clock, for the persons whose
    ``timezone`` attribute names another offset than their attempts were recorded in (index
    ``person_id``; absent persons: 0).

    Scoring learns and chooses hours in the recorded clock, but the allowed hours are the person's
    own: a person in a zone two hours behind the recorded clock must not be offered its 8h, which is
    their 6h. The offset is the zone's at noon of the valid day (a zone changing its offset that
    day may be an hour off at the edges of the window). Attempts are read only when some candidate
    has a zone attribute.
    """
    valid_day = d + timedelta(days=1)
    con = duckdb.connect()
    storage.register_duckdb(con, settings.lake)
    try:
        relation = _zone_relation(con, settings, d)
        if relation is None:  # no zone attribute anywhere: nothing to shift, no persons to list
            return pd.Series(dtype="int64")
        con.register("wanted", pd.DataFrame({"person_id": pd.unique(person_ids.astype(str))}))
        zones = _attribute_zones(con, settings, d, relation).dropna(subset=["attribute_zone"])
        if zones.empty:
            return pd.Series(dtype="int64")
        con.register("wanted", zones[["person_id"]])
        offsets = _recorded_offsets(con, settings, d)
    finally:
        con.close()
    default_offset = utc_offset_hours(settings.local_timezone, valid_day)
    clocks = zones.merge(offsets, on="person_id", how="left")
    recorded = clocks["recorded_offset"].astype(float).fillna(default_offset)
    own_offsets = {zone: utc_offset_hours(zone, valid_day) for zone in clocks["attribute_zone"].unique()}
    own = clocks["attribute_zone"].map(own_offsets).astype(float)
    shift = np.round(own - recorded).astype("int64")
    return pd.Series(shift.to_numpy(), index=clocks["person_id"].to_numpy())[shift.to_numpy() != 0]


def _recorded_offsets(con, settings: Settings, d: date) -> pd.DataFrame:
    files = [
        partition_dir(settings, "attempts", x) / DATA_FILE
        for x in partition_dates(settings, "attempts")
        if d - timedelta(days=CLOCK_WINDOW_DAYS) < x <= d
    ]
    files = [f for f in files if f.is_file()]
    if not files:
        return pd.DataFrame({"person_id": pd.Series(dtype=str), "recorded_offset": pd.Series(dtype=float)})
    # local_hour minus the UTC hour, folded into [-12, +12): the provider's offset of that attempt
    return con.execute(
        f"""SELECT person_id,
              arg_max(((local_hour - hour(attempted_at AT TIME ZONE 'UTC') + 36) % 24) - 12, attempted_at)
                ::DOUBLE AS recorded_offset
            FROM {sql.read_parquet(files, hive_partitioning="false")}
            WHERE local_hour IS NOT NULL AND person_id IN (SELECT person_id FROM wanted)
            GROUP BY person_id"""
    ).fetch_df()


def _zone_relation(con, settings: Settings, d: date) -> str | None:
    """The persons files up to D as one relation, when some of them has the zone attribute."""
    files = [
        partition_dir(settings, "persons", x) / DATA_FILE
        for x in partition_dates(settings, "persons")
        if x <= d
    ]
    files = [f for f in files if f.is_file()]
    if not files:
        return None
    relation = zone_files_sql(files)
    columns = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {relation}").fetchall()}
    return relation if TIMEZONE_ATTRIBUTE in columns else None


def _attribute_zones(con, settings: Settings, d: date, relation: str | None = None) -> pd.DataFrame:
    relation = relation or _zone_relation(con, settings, d)
    if relation is None:
        return pd.DataFrame({"person_id": pd.Series(dtype=str), "attribute_zone": pd.Series(dtype=object)})
    found = con.sql(latest_zones_sql([zone_rows_sql(relation)], "wanted")).df()
    found = found.rename(columns={"zone": "attribute_zone"})
    found["attribute_zone"] = found["attribute_zone"].map(valid_zone)
    return found


def export_clock(
    settings: Settings, d: date, person_id: pd.Series, best_hour: pd.Series
) -> tuple[pd.Series, pd.Series, pd.Series]:
    """``(timezone, best_hour, best_hour_utc)`` for rows of the export of D (valid on D+1)."""
    valid_day = d + timedelta(days=1)
    clocks = person_clocks(settings, d, person_id).set_index("person_id")
    pid = person_id.astype(str)
    default_offset = utc_offset_hours(settings.local_timezone, valid_day)
    recorded = pid.map(clocks["recorded_offset"]).astype(float).fillna(default_offset).to_numpy()
    attribute = pid.map(clocks["attribute_zone"]).to_numpy(dtype=object)
    hours = best_hour.to_numpy(dtype="int64")
    hour_utc = np.mod(hours - np.round(recorded).astype("int64"), 24)

    zone = np.empty(len(pid), dtype=object)
    local = hours.copy()
    names = {o: zone_of_offset(o, settings, valid_day) for o in np.unique(recorded)}
    for offset, name in names.items():
        zone[recorded == offset] = name
    has_attribute = np.array([a is not None and a == a for a in attribute], dtype=bool)
    for name in set(attribute[has_attribute]):
        rows = has_attribute & (attribute == name)
        zone[rows] = name
        # the same instant in the attribute's clock (its offset at the recommended UTC hour)
        for h in np.unique(hour_utc[rows]):
            at = rows & (hour_utc == h)
            shift = _offset_at_utc_hour(name, valid_day, int(h))
            local[at] = np.mod(h + shift, 24)
    return (
        pd.Series(zone, index=person_id.index, dtype=object),
        pd.Series(local.astype("int32"), index=person_id.index),
        pd.Series(hour_utc.astype("int32"), index=person_id.index),
    )


def _offset_at_utc_hour(zone: str, day: date, hour_utc: int) -> int:
    instant = datetime(day.year, day.month, day.day, hour_utc, tzinfo=ZoneInfo("UTC"))
    offset = instant.astimezone(ZoneInfo(zone)).utcoffset()
    return int(round(offset.total_seconds() / 3600)) if offset is not None else 0
