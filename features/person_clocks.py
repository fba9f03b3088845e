"""Each attempt's hour in the person's own clock, when their ``timezone`` attribute names it.

A dialer gives an attempt's time in its own offset, or in UTC (``local_hour``: the hour in the
offset the provider gave, else in the deployment's ``local_timezone``). A person's habits live in
the person's clock: with persons in several zones and attempts recorded in one, the same habit
(answers at 19h) falls into different hour buckets for each zone, and the habit profiles, learned
from everyone, blur. So ingest records ``local_hour`` in the person's zone whenever the person has
a valid ``timezone`` attribute (delivered on D or before); otherwise as the provider gave it.
The export's ``timezone`` column names the same clock (``ml.timezones``).

The attribute is a value from a file: a name that is not a zone the time-zone database knows is
ignored (the provider's hour is kept), never an error that stops the day.
"""

from __future__ import annotations

from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contactrank.features.person_rules import PersonsFile

TIMEZONE_ATTRIBUTE = "timezone"
_NO_ZONES = pa.table({"person_id": pa.array([], pa.string()), "zone": pa.array([], pa.string())})


def valid_zone(name: object) -> str | None:
    """``name`` when it is an IANA zone name the time-zone database knows, else None."""
    if not isinstance(name, str) or not name or len(name) > 64:
        return None
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None
    return name


def person_zones(earlier: list[PersonsFile], persons_of_d: pa.Table) -> pa.Table:
    """``person_id, zone``: each person's latest non-null ``timezone`` delivered up to D (the
    earlier persons partitions ``earlier``, oldest first, then ``persons_of_d``); not yet validated.

    Only the partitions whose schema has the attribute are read; ``earlier`` carries the schemas
    ingest reads anyway to check the attribute types (``person_rules.earlier_person_files``)."""
    parts = [
        pq.read_table(path, columns=["person_id", TIMEZONE_ATTRIBUTE])
        for path, pairs in earlier
        if any(name == TIMEZONE_ATTRIBUTE for name, _ in pairs)
    ]
    if TIMEZONE_ATTRIBUTE in persons_of_d.column_names:
        parts.append(persons_of_d.select(["person_id", TIMEZONE_ATTRIBUTE]))
    if not parts:
        return _NO_ZONES
    as_strings = pa.schema([("person_id", pa.string()), (TIMEZONE_ATTRIBUTE, pa.string())])
    zones = pa.concat_tables([p.cast(as_strings) for p in parts])  # a number or flag is no zone either
    zones = zones.filter(pc.is_valid(zones[TIMEZONE_ATTRIBUTE])).rename_columns(["person_id", "zone"])
    # the last row of each person wins: the rows are in delivery order
    person = zones["person_id"].to_numpy(zero_copy_only=False)
    order = np.arange(len(person))[::-1]
    _, last = np.unique(person[::-1], return_index=True)
    return zones.take(pa.array(np.sort(order[last])))


def in_own_clock(attempts: pa.Table, zones: pa.Table) -> pa.Table:
    """``attempts`` with ``local_hour`` the hour of ``attempted_at`` in the person's zone, for the
    persons of ``zones`` whose zone is valid; the other rows as they were."""
    if not attempts.num_rows or not zones.num_rows:
        return attempts
    at = pc.index_in(attempts["person_id"], value_set=zones["person_id"])
    zone = pc.take(zones["zone"], at)
    hour = attempts["local_hour"].combine_chunks()
    utc = attempts["attempted_at"].combine_chunks()
    for name in pc.unique(zone.drop_null()).to_pylist():
        if valid_zone(name) is None:
            continue
        try:
            own = pc.hour(utc.cast(pa.timestamp("us", tz=name))).cast(pa.int8())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):  # a name Arrow's database lacks
            continue
        hour = pc.if_else(pc.fill_null(pc.equal(zone, name), False), own, hour)
    return attempts.set_column(attempts.schema.get_field_index("local_hour"), "local_hour", hour)
