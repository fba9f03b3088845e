"""Point-in-time person attributes: per person, the latest non-null value of every attribute column.

``feature_state/date=D/persons.parquet`` folds every ``persons`` upsert <= D (or the folded
attributes of D-1 plus the upserts of D). Attribute columns come from the landing files, so every
column name is quoted as an identifier; they reach the feature rows as ``f_attr_<name>``.
"""

from __future__ import annotations

import shutil
from datetime import date, timedelta
from pathlib import Path

from contactrank.features import history, sql
from contactrank.features.feature_chunks import copy_to_parquet
from contactrank.settings import Settings
from contactrank.shards import Shard

_NUMERIC_TYPES = ("INT", "DOUBLE", "FLOAT", "DECIMAL")


def latest_attributes_sql(con, upserts: str, ordered: bool = True) -> str:
    """Per person, the latest non-null value of every attribute column of ``upserts``
    (in date, updated_at order); in person_id order unless ``ordered`` is false."""
    cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {upserts}").fetchall()]
    attrs = [c for c in cols if c not in ("person_id", "updated_at", "date") and not c.startswith("_")]
    upd = "updated_at NULLS FIRST, " if "updated_at" in cols else ""  # optional in the contract
    sel = "".join(
        f",\n  last({q} ORDER BY date, {upd}{q}) FILTER (WHERE {q} IS NOT NULL) AS {q}"
        for q in (sql.quote_ident(c) for c in sorted(attrs))
    )
    order = " ORDER BY person_id" if ordered else ""
    return f"SELECT person_id{sel} FROM {upserts} WHERE person_id IS NOT NULL GROUP BY person_id{order}"


def person_upserts(settings: Settings, d: date, prev: Path | None) -> str:
    """Person upserts to fold: every partition <= d, or the folded attributes of d-1 (``prev``)
    plus the partition of d."""
    if prev is None:
        files = history.partition_files(settings, "persons", d)
        if not files:
            return (
                "(SELECT NULL::VARCHAR AS person_id, NULL::DATE AS date, NULL::TIMESTAMPTZ AS updated_at"
                " WHERE false)"
            )
        return (
            f"(SELECT * FROM {history.read_files(files, '', hive_partitioning='true', union_by_name='true')})"
        )
    day_before = sql.date_literal(d - timedelta(days=1))
    folded = (
        f"(SELECT *, {day_before} AS date, NULL::TIMESTAMPTZ AS updated_at FROM {history.read_file(prev)})"
    )
    today = history.partition_files(settings, "persons", d, since=d)
    if not today:
        return folded
    today_rel = history.read_files(today, "", hive_partitioning="true")
    return f"({folded} UNION ALL BY NAME (SELECT * FROM {today_rel}))"


def write_person_attributes(
    settings: Settings, con, d: date, prev_dir: Path | None, out_dir: Path, shard: Shard | None = None
) -> None:
    """Write the attributes of the end of d into ``out_dir``, folding onto those of ``prev_dir`` if any
    (of ``shard``'s persons only, when given)."""
    prev = prev_dir / history.PERSONS_FILE if prev_dir is not None else None
    prev = prev if prev is not None and prev.is_file() else None
    out = out_dir / history.PERSONS_FILE
    if prev is not None and shard is None:
        # Folding one row per person gives that row back: only the persons of d's upserts are
        # folded again (every person, every day, was most of a quiet day's state cost).
        today = history.partition_files(settings, "persons", d, since=d)
        if not today and isinstance(prev, Path):
            shutil.copyfile(prev, out)
            return
        copy_to_parquet(con, changed_attributes_sql(con, settings, d, prev, today), out)
        return
    upserts = person_upserts(settings, d, prev)
    if shard is not None:
        upserts = f"(SELECT * FROM {upserts} WHERE {shard.predicate()})"
    copy_to_parquet(con, latest_attributes_sql(con, upserts), out)


def changed_attributes_sql(con, settings: Settings, d: date, prev, today: list[Path]) -> str:
    """The fold of ``latest_attributes_sql`` over the attributes of d-1 (``prev``) and the upserts
    of d (``today``), computed for the persons upserted on d only; the others' rows of ``prev`` are
    kept as they are (same columns and types: the union by name widens them as the fold does)."""
    today_rel = history.read_files(today, "(SELECT NULL::VARCHAR AS person_id WHERE false)")
    today_ids = f"(SELECT person_id FROM {today_rel} WHERE person_id IS NOT NULL)"
    upserts = person_upserts(settings, d, prev)
    touched = f"(SELECT * FROM {upserts} WHERE person_id IN {today_ids})"
    folded = latest_attributes_sql(con, touched, ordered=False)
    kept = f"SELECT * FROM {history.read_file(prev)} WHERE person_id NOT IN {today_ids}"
    return f"SELECT * FROM (({folded}) UNION ALL BY NAME ({kept})) ORDER BY person_id"


def attribute_features_sql(con, attrs: str, alias: str) -> str:
    """``, <expr> AS f_attr_<name>`` for every attribute column of ``attrs`` (joined as ``alias``):
    numbers and booleans as DOUBLE, everything else as VARCHAR."""
    out = []
    described = con.execute(f"DESCRIBE SELECT * FROM {attrs}").fetchall() if attrs else []
    for name, typ, *_ in described[1:]:  # the first column is person_id
        safe = "".join(ch if ch.isalnum() else "_" for ch in str(name).lower())
        expr = f"{alias}.{sql.quote_ident(name)}"
        if typ == "BOOLEAN" or any(t in typ for t in _NUMERIC_TYPES):
            expr = f"CAST({expr} AS DOUBLE)"
        elif typ != "VARCHAR":
            expr = f"CAST({expr} AS VARCHAR)"
        out.append(f"{expr} AS f_attr_{safe}")
    return "".join(",\n  " + s for s in out)
