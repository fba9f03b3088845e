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

import pyarrow as pa
import pyarrow.compute as pc

from contactrank.features import sql
from contactrank.features.lake import duckdb_connect
from contactrank.features.person_rules import PersonsFile
from contactrank.settings import Settings

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


def person_zones(
    settings: Settings, earlier: list[PersonsFile], persons_of_d: pa.Table, attempted: pa.ChunkedArray
) -> pa.Table:
    """``person_id, zone``: the latest non-null ``timezone`` delivered up to D (the earlier persons
    partitions ``earlier``, oldest first, then ``persons_of_d``) of each person in ``attempted``
    that has one; not yet validated.

    Only the partitions whose schema has the attribute are read (``earlier`` carries the schemas
    ingest reads anyway to check the attribute types, ``person_rules.earlier_person_files``), by
    DuckDB within the memory bound: a deployment that delivers every person every day holds far
    more rows there than persons."""
    files = [path for path, pairs in earlier if any(name == TIMEZONE_ATTRIBUTE for name, _ in pairs)]
    today = TIMEZONE_ATTRIBUTE in persons_of_d.column_names
    if not (files or today) or not len(attempted):
        return _NO_ZONES
    sources = [zone_rows_sql(zone_files_sql(files))] if files else []
    if today:
        sources.append(zone_rows_sql("today", part=1))
    con = duckdb_connect(settings)
    try:
        if today:
            day = persons_of_d.select(["person_id", TIMEZONE_ATTRIBUTE])
            con.register("today", day.append_column(_FILE_COLUMN, pa.nulls(day.num_rows, pa.string())))
        con.register("attempted", pa.table({"person_id": pc.unique(attempted)}))
        return con.sql(latest_zones_sql(sources, "attempted")).to_arrow_table()
    finally:
        con.close()


# The path of each row's file, under a name no stored partition has: ingest keeps no attribute
# whose name starts with "_", while "filename" (DuckDB's default) is a legal attribute name.
_FILE_COLUMN = "_persons_file"


def zone_files_sql(files: list) -> str:
    """The persons partitions ``files`` as one relation, with each row's file path."""
    return sql.read_parquet(
        files, hive_partitioning="false", union_by_name="true", filename=sql.quote_literal(_FILE_COLUMN)
    )


def zone_rows_sql(relation: str, part: int = 0) -> str:
    """``person_id, zone, part, file`` of a persons relation that has the attribute and the path
    column (``zone_files_sql``); a later ``part`` sorts after every file of an earlier one."""
    column, file = sql.quote_ident(TIMEZONE_ATTRIBUTE), sql.quote_ident(_FILE_COLUMN)
    return (
        f"SELECT person_id, CAST({column} AS VARCHAR) AS zone, {part} AS part, {file} AS file FROM {relation}"
    )


def latest_zones_sql(sources: list[str], wanted: str) -> str:
    """``person_id, zone``: the latest non-null zone of each person of the table ``wanted`` over
    ``sources`` (``zone_rows_sql`` queries, oldest part first).

    Ordered explicitly: ``last()`` without an order takes whichever row the threads of the scan
    combine last, which is not always the latest partition. The partitions' paths end in
    date=YYYY-MM-DD/..., so their order is the delivery order."""
    return f"""SELECT person_id, last(zone ORDER BY part, file) AS zone
        FROM ({" UNION ALL ".join(sources)})
        WHERE zone IS NOT NULL AND person_id IN (SELECT person_id FROM {wanted})
        GROUP BY person_id"""


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
