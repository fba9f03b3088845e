"""Point-in-time features from rolling history, built incrementally with DuckDB over the lake.

Tables written for a business date D (all through ``features.lake.atomic_dir``):

- ``daily_agg/date=D``: ``part-0.parquet``, one row per (person, contact) attempted on D with its
  outcome counts, per-hour-bucket counts, last outcome/channel/campaign and the failure tail of the
  day; ``population.parquet``, attempts/reaches/conversions per (campaign, channel) of D.
- ``feature_state/date=D``: ``part-0.parquet``, the running per-(person, contact) state at the end of
  D (windowed counts, decayed sums, last dates, streak...), every candidate plus every pair ever
  attempted; ``persons.parquet``, the point-in-time person attributes (latest non-null per column).
- ``features/date=D``: one row per candidate (every address of the latest ``contacts_state``
  partition <= D and every address ever seen in attempts) with the ``f_*`` features of
  docs/features.md.
- ``training/date=D``: the attempts of D, labelled, with the features of the end of D-1.

Building D reads the state of D-1 and the daily aggregates of D, D-7, D-30, D-90 and D-365 (windows
slide by adding one day and subtracting the day that leaves); when the state of D-1 is missing, or
``full=True``, the state is computed directly from every daily aggregate <= D (rebuilt from raw
attempts with ``full=True``). Both paths give the same features (tests/data/test_incremental.py).
Nothing dated after D is ever read: every file list is cut at D (tests/data/test_leakage.py).
"""

from __future__ import annotations

import contextlib
import logging
import math
import queue
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from contactrank.errors import ContactrankError
from contactrank.features.context import add_context
from contactrank.features.lake import (
    DATA_FILE,
    atomic_dir,
    duckdb_connect,
    partition_dates,
    partition_dir,
    write_partition,
)
from contactrank.features.schema import ATTEMPTS, CONTACTS_STATE, CONVERSION_OUTCOMES, REACH_OUTCOMES
from contactrank.settings import Settings

log = logging.getLogger(__name__)

DAILY_AGG = "daily_agg"
STATE = "feature_state"
FEATURES = "features"
TRAINING = "training"
POP_FILE = "population.parquet"
PERSONS_FILE = "persons.parquet"

WINDOWS = (7, 30, 90, 365)
HALF_LIVES = (7, 30)
DORMANT_DAYS = 90  # "came back": reached on an address first seen after this long without a reach
HISTORY_WINDOW = 365  # window of the hour-bucket and day-of-week counts
# (person, contact) pairs per chunk: the state and the features are computed for one hash-chunk of
# persons at a time, so joins and aggregates stay in memory (no spilling) whatever the history size.
CHUNK_PAIRS = 1_000_000


def _in(values: frozenset[str] | tuple[str, ...]) -> str:
    return "outcome IN (" + ", ".join(f"'{v}'" for v in sorted(values)) + ")"


# Outcome classes counted per window: state/feature name -> predicate on ``outcome``.
KINDS: dict[str, str] = {
    "attempts": "TRUE",
    "reach": _in(REACH_OUTCOMES),
    "conv": _in(CONVERSION_OUTCOMES),
    "wrong_party": "outcome = 'wrong_party'",
    "invalid": "outcome = 'invalid'",
    "noanswer": _in(("no_answer", "busy", "voicemail")),
}
BUCKETS: dict[str, tuple[int, int] | None] = {
    "morning": (8, 11),
    "midday": (12, 14),
    "afternoon": (15, 17),
    "evening": (18, 21),
    "night": None,  # every other hour
}
CHANNELS_FOR_SHARES = ("voice", "sms", "email", "whatsapp")


class FeatureError(ContactrankError):
    """The feature build could not run (unreadable partition, inconsistent input)."""


# --- small helpers ------------------------------------------------------------------------------


def _lit(d: date) -> str:
    return f"DATE '{d.isoformat()}'"


def _q(path: Path | str) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _files(settings: Settings, kind: str, upto: date, since: date | None = None, name: str = DATA_FILE) -> list[Path]:
    """Files ``<kind>/date=X/<name>`` with ``since <= X <= upto``: the only way history is listed.

    Cutting every list at ``upto`` is what keeps data dated after D out of the features of D.
    """
    out = []
    for x in partition_dates(settings, kind):
        if x <= upto and (since is None or x >= since):
            path = partition_dir(settings, kind, x) / name
            if path.is_file():
                out.append(path)
    return out


def _read(files: list[Path], empty: str, **opts: str) -> str:
    """A FROM-able relation over ``files``, or the empty relation ``empty`` when there are none."""
    if not files:
        return empty
    opts.setdefault("hive_partitioning", "false")  # lake paths look like hive keys: never guess
    extra = "".join(f", {k}={v}" for k, v in opts.items())
    return "read_parquet([" + ", ".join(_q(f) for f in files) + f"]{extra})"


def _copy(con, sql: str, path: Path) -> None:
    con.execute(f"COPY ({sql}) TO {_q(path)} (FORMAT parquet, COMPRESSION zstd)")


def _count(con, path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


Bounds = tuple[str | None, str | None]


def _chunks(con, *files: Path | None, rows: int = 0) -> list[Bounds]:
    """Ranges of person_id holding at most ~CHUNK_PAIRS rows of the largest of ``files`` each.

    Every computation is per person, so a chunk never needs another chunk's rows. Outputs are
    written chunk after chunk, unsorted within a chunk (sorting 80 columns costs more than it
    saves): each row group then lies inside one person range, so a reader of one range skips
    the other row groups.
    """
    sizes = [(pq.ParquetFile(f).metadata.num_rows, f) for f in files if f is not None and Path(f).is_file()]
    n = max(1, math.ceil(max([rows, *(r for r, _ in sizes)]) / CHUNK_PAIRS))
    if n == 1 or not sizes:
        return [(None, None)]
    biggest = max(sizes)[1]
    qs = ", ".join(str(i / n) for i in range(1, n))
    cuts = con.execute(f"SELECT quantile_disc(person_id, [{qs}]) FROM read_parquet({_q(biggest)}, hive_partitioning=false)").fetchall()[0][0]
    cuts = sorted({c for c in cuts if c is not None})
    edges: list[str | None] = [None, *cuts, None]
    return list(zip(edges[:-1], edges[1:], strict=True))


def _chunk(rel: str, bounds: Bounds) -> str:
    """The rows of ``rel`` whose person_id lies in [lo, hi)."""
    lo, hi = bounds
    cond = [f"person_id >= {_q(lo)}" if lo is not None else "", f"person_id < {_q(hi)}" if hi is not None else ""]
    cond = [c for c in cond if c]
    return rel if not cond else f"(SELECT * FROM {rel} WHERE {' AND '.join(cond)})"


def _stream(con, sqls: Iterable[str], path: Path) -> int:
    """Write the results of ``sqls``, one after the other, into one Parquet file; returns the rows.

    A writer thread encodes and compresses each batch while DuckDB computes the next one (both
    release the GIL), so the two cores are busy even where a query runs on one; the bounded queue
    keeps at most a few batches in memory.
    """
    batches: queue.Queue = queue.Queue(maxsize=4)
    failed: list[BaseException] = []
    rows = 0

    def write() -> None:
        writer = None
        try:
            while (batch := batches.get()) is not None:
                if writer is None:
                    writer = pq.ParquetWriter(path, batch.schema, compression="zstd")
                if batch.num_rows:
                    writer.write_batch(batch)
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)
            while batches.get() is not None:  # drain: the producer must never block on a full queue
                pass
        finally:
            if writer is not None:
                writer.close()

    thread = threading.Thread(target=write, name="features-writer", daemon=True)
    thread.start()
    try:
        for i, sql in enumerate(sqls):
            if failed:  # the writer stopped: computing more chunks would be wasted
                break
            reader = con.sql(sql).arrow()
            if i == 0:  # opens the file with the schema, even when no row follows
                batches.put(_empty_batch(reader.schema))
            for batch in reader:
                if failed:
                    break
                batches.put(batch)
                rows += batch.num_rows
    finally:
        batches.put(None)
        thread.join()
    if failed:
        raise failed[0]
    return rows


def _empty_batch(schema: pa.Schema) -> pa.RecordBatch:
    """A zero-row batch of ``schema``: opens the file with the right schema even for no rows."""
    return pa.RecordBatch.from_pylist([], schema=schema)


# --- daily aggregates ---------------------------------------------------------------------------


def _bucket_case() -> str:
    whens = " ".join(f"WHEN local_hour BETWEEN {lo} AND {hi} THEN '{b}'" for b, r in BUCKETS.items() if r for lo, hi in [r])
    return f"CASE {whens} WHEN local_hour IS NOT NULL THEN 'night' END"


def _count_if(pred: str) -> str:
    return "count(*)::INTEGER" if pred == "TRUE" else f"sum(CASE WHEN {pred} THEN 1 ELSE 0 END)::INTEGER"


def _sum_if(expr: str, pred: str) -> str:
    return f"sum(CASE WHEN {pred} THEN {expr} ELSE 0 END)"


def _agg_sql(src: str) -> str:
    """Per (person, contact, date) aggregates of the attempts relation ``src`` (with a ``date``)."""
    # sum(CASE ...) rather than FILTER: DuckDB runs it ~2.5x faster with many aggregates.
    kinds = ",\n  ".join(f"{_count_if(pred)} AS {k}" for k, pred in KINDS.items())
    buckets = ",\n  ".join(
        f"{_count_if(f'bucket = {chr(39)}{b}{chr(39)}')} AS attempts_{b},\n  "
        f"{_count_if(f'bucket = {chr(39)}{b}{chr(39)} AND is_reach')} AS reach_{b}"
        for b in BUCKETS
    )
    return f"""
WITH a AS (
  SELECT person_id, contact_id, date, channel, outcome, campaign_id, attempted_at,
    {_bucket_case()} AS bucket, {KINDS['reach']} AS is_reach,
    row_number() OVER (PARTITION BY person_id, contact_id, date ORDER BY attempted_at, attempt_id) AS rn
  FROM {src}
)
SELECT person_id, contact_id, date,
  arg_max(channel, rn) AS channel,
  arg_max(outcome, rn) AS last_outcome,
  arg_max(attempted_at, rn) AS last_ts,
  arg_max_null(campaign_id, rn) AS last_campaign,
  {kinds},
  {buckets},
  (count(*) - coalesce(max(CASE WHEN is_reach THEN rn END), 0))::INTEGER AS tail_fail
FROM a GROUP BY person_id, contact_id, date
"""


def _pop_sql(src: str) -> str:
    return f"""
SELECT date, campaign_id, channel, count(*)::INTEGER AS n,
  {_count_if(KINDS['reach'])} AS reach, {_count_if(KINDS['conv'])} AS conv
FROM {src} GROUP BY ALL"""


def _attempts_src(path: Path | None, d: date) -> str:
    cols = ", ".join(ATTEMPTS.names)
    rel = f"read_parquet({_q(path)}, hive_partitioning=false)" if path else "_empty_attempts"
    return f"(SELECT {cols}, {_lit(d)} AS date FROM {rel})"


def _build_daily_aggs(settings: Settings, con, days: list[date], d: date) -> int:
    """Write ``daily_agg`` of every date of ``days``; returns the aggregate rows of ``d``."""
    rows = 0
    for x in days:
        n = _build_daily_agg(settings, con, x)
        rows = n if x == d else rows
    return rows


def _build_daily_agg(settings: Settings, con, d: date) -> int:
    """Write ``daily_agg/date=d`` from the raw attempts of d (none: empty aggregates)."""
    path = partition_dir(settings, "attempts", d) / DATA_FILE
    src = _attempts_src(path if path.is_file() else None, d)
    with atomic_dir(partition_dir(settings, DAILY_AGG, d)) as stage:
        _copy(con, _agg_sql(src) + " ORDER BY person_id, contact_id", stage / DATA_FILE)
        _copy(con, _pop_sql(src) + " ORDER BY ALL", stage / POP_FILE)
        return _count(con, stage / DATA_FILE)


# --- the per-(person, contact) state ------------------------------------------------------------

_COUNT_COLS = [f"{k}_{w}d" for k in KINDS for w in WINDOWS]
_HOUR_COLS = [f"{kind}_hour_{b}" for b in BUCKETS for kind in ("attempt", "reach")]
_DOW_COLS = [f"reach_dow_{i}" for i in range(7)]
_DECAY_COLS = [f"d{k}_hl{h}" for h in HALF_LIVES for k in ("attempts", "reach")]
_DATE_COLS = ["first_attempt", "last_attempt", "last_reach", "last_invalid", "last_wrong_party", "first_reach"]
_DATE_PRED = {  # date column -> daily_agg predicate of the day it records
    "first_attempt": "attempts > 0",
    "last_attempt": "attempts > 0",
    "last_reach": "reach > 0",
    "last_invalid": "invalid > 0",
    "last_wrong_party": "wrong_party > 0",
    "first_reach": "reach > 0",
}
STATE_COLUMNS = [
    "person_id", "contact_id", "channel", "source", "in_cs", "first_seen", "live", "n_attempts",
    *_COUNT_COLS, *_HOUR_COLS, *_DOW_COLS, *_DECAY_COLS, *_DATE_COLS,
    "streak", "last_outcome", "last_ts", "last_campaign", "att_channel", "dormant",
]  # fmt: skip


def _cs_sql(cs: str) -> str:
    """Candidates with the columns the state needs (live = active and consenting)."""
    return f"""(SELECT person_id, contact_id, channel AS cs_channel, coalesce(source, 'unknown') AS cs_source,
  first_seen AS cs_first_seen, coalesce(active, true) AND coalesce(consent, true) AS cs_live, true AS in_cs
  FROM {cs})"""


def _live_sql(cs_live: str, n_attempts: str) -> str:
    """A pair is live when contacts_state says it is active and consenting; an address only seen
    in attempts (never delivered as a contact) is live by default."""
    return f"coalesce({cs_live}, ({n_attempts}) > 0)"


def _candidate_sql(alias: str) -> str:
    """The candidates of a state: every delivered address and every address seen in attempts
    (CONTRACT.md: a contact seen in attempts but never in contacts is a candidate too)."""
    return f"({alias}.in_cs OR {alias}.n_attempts > 0)"


def _state_tail() -> str:
    """Columns shared by both state builders, computed from cs_* and the aggregated fields."""
    return """coalesce(cs_channel, att_channel) AS channel,
  CASE WHEN in_cs THEN cs_source ELSE 'attempts' END AS source,
  coalesce(in_cs, false) AS in_cs"""


def _state_direct_sql(agg: str, cs: str, x: date) -> str:
    """The state at the end of ``x`` from every daily aggregate <= x (``agg`` is already cut)."""
    X = _lit(x)
    counts = []
    for k in KINDS:
        for w in WINDOWS:
            counts.append(f"coalesce({_sum_if(k, f'date > {X} - {w}')}, 0)::INTEGER AS {k}_{w}d")
    hist = f"date > {X} - {HISTORY_WINDOW}"
    for b in BUCKETS:
        counts.append(f"coalesce({_sum_if(f'attempts_{b}', hist)}, 0)::INTEGER AS attempt_hour_{b}")
        counts.append(f"coalesce({_sum_if(f'reach_{b}', hist)}, 0)::INTEGER AS reach_hour_{b}")
    for i in range(7):
        counts.append(f"coalesce({_sum_if('reach', f'{hist} AND isodow(date) = {i + 1}')}, 0)::INTEGER AS reach_dow_{i}")
    for h in HALF_LIVES:
        for k in ("attempts", "reach"):
            # DECIMAL terms make the sum exact, so the result does not depend on thread scheduling.
            counts.append(f"sum(({k} * pow(0.5, ({X} - date) / {float(h)}))::DECIMAL(38, 12))::DOUBLE AS d{k}_hl{h}")
    dates = [
        f"{'min' if c.startswith('first') else 'max'}(CASE WHEN {_DATE_PRED[c]} THEN date END) AS {c}" for c in _DATE_COLS
    ]
    g_cols = ",\n    ".join(counts + dates)
    fill = ",\n  ".join(
        [f"coalesce(p.{c}, 0) AS {c}" for c in _COUNT_COLS + _HOUR_COLS + _DOW_COLS]
        + [f"coalesce(p.{c}, 0.0) AS {c}" for c in _DECAY_COLS]
    )
    return f"""
WITH agg AS NOT MATERIALIZED (SELECT * FROM {agg}),  -- an in-memory table: inlining it copies nothing
g AS (
  SELECT person_id, contact_id,
    sum(attempts)::BIGINT AS n_attempts,
    {g_cols},
    arg_max(last_outcome, date) AS last_outcome,
    arg_max(last_ts, date) AS last_ts,
    arg_max_null(last_campaign, date) AS last_campaign,
    arg_max(channel, date) AS att_channel
  FROM agg GROUP BY person_id, contact_id
),
sk AS (
  SELECT a.person_id, a.contact_id,
    sum(CASE WHEN a.reach > 0 THEN a.tail_fail ELSE a.attempts END)::INTEGER AS streak
  FROM agg a JOIN g ON a.person_id = g.person_id AND a.contact_id = g.contact_id
  WHERE g.last_reach IS NULL OR a.date >= g.last_reach
  GROUP BY a.person_id, a.contact_id
),
cs AS {_cs_sql(cs)},
pairs AS (
  SELECT coalesce(g.person_id, cs.person_id) AS person_id, coalesce(g.contact_id, cs.contact_id) AS contact_id,
    cs.*, g.* EXCLUDE (person_id, contact_id),
    least(cs.cs_first_seen, g.first_attempt) AS first_seen
  FROM g FULL JOIN cs ON g.person_id = cs.person_id AND g.contact_id = cs.contact_id
),
pfirst AS (SELECT person_id, min(date) AS first_att FROM agg GROUP BY person_id),
recent AS (  -- pairs whose person was reached in the {DORMANT_DAYS} days before the pair was first seen
  SELECT DISTINCT p.person_id, p.contact_id
  FROM pairs p JOIN (SELECT DISTINCT person_id, date FROM agg WHERE reach > 0) r
    ON r.person_id = p.person_id AND r.date < p.first_seen AND r.date >= p.first_seen - {DORMANT_DAYS}
)
SELECT p.person_id, p.contact_id,
  {_state_tail()},
  p.first_seen, {_live_sql('p.cs_live', 'coalesce(p.n_attempts, 0)')} AS live, coalesce(p.n_attempts, 0) AS n_attempts,
  {fill},
  {', '.join('p.' + c for c in _DATE_COLS)},
  coalesce(sk.streak, 0) AS streak, p.last_outcome, p.last_ts, p.last_campaign, p.att_channel,
  coalesce(pf.first_att < p.first_seen, false) AND rc.person_id IS NULL AS dormant
FROM pairs p
LEFT JOIN sk ON sk.person_id = p.person_id AND sk.contact_id = p.contact_id
LEFT JOIN pfirst pf ON pf.person_id = p.person_id
LEFT JOIN recent rc ON rc.person_id = p.person_id AND rc.contact_id = p.contact_id
"""


def _prefixed(rel: str, cols: list[str], prefix: str) -> str:
    sel = ", ".join(f"{c} AS {prefix}{c}" for c in cols)
    return f"(SELECT person_id, contact_id, {sel} FROM {rel})"


_AGG_COUNT_COLS = list(KINDS)
_AGG_BUCKET_COLS = [f"{kind}_{b}" for b in BUCKETS for kind in ("attempts", "reach")]


def _state_incr_sql(prev: str, cur: str, old: dict[int, str], cs: str, backdated: str, d: date) -> str:
    """The state at the end of ``d`` from the state of d-1, the aggregates of d and of the days leaving."""
    D = _lit(d)
    cur_cols = [*_AGG_COUNT_COLS, *_AGG_BUCKET_COLS, "tail_fail", "last_outcome", "last_ts", "last_campaign", "channel"]
    # The state of d-1 is the big side; d's candidates join it once (full join: new pairs and pairs
    # that left contacts_state both survive), the small daily aggregates are left-joined onto it.
    joins = [
        f"FULL JOIN {_cs_sql(cs)} USING (person_id, contact_id)",
        f"FULL JOIN {_prefixed(cur, cur_cols, 'c_')} USING (person_id, contact_id)",
        f"LEFT JOIN {backdated} USING (person_id, contact_id)",
    ]
    for w, rel in old.items():
        cols = _AGG_COUNT_COLS + (_AGG_BUCKET_COLS if w == HISTORY_WINDOW else [])
        joins.append(f"LEFT JOIN {_prefixed(rel, cols, f'o{w}_')} USING (person_id, contact_id)")

    def z(c: str) -> str:
        return f"coalesce({c}, 0)"

    cols = []
    for k in KINDS:
        for w in WINDOWS:
            cols.append(f"({z('p_' + k + f'_{w}d')} + {z('c_' + k)} - {z(f'o{w}_' + k)})::INTEGER AS {k}_{w}d")
    H = HISTORY_WINDOW
    for b in BUCKETS:
        cols.append(f"({z('p_attempt_hour_' + b)} + {z('c_attempts_' + b)} - {z(f'o{H}_attempts_' + b)})::INTEGER AS attempt_hour_{b}")
        cols.append(f"({z('p_reach_hour_' + b)} + {z('c_reach_' + b)} - {z(f'o{H}_reach_' + b)})::INTEGER AS reach_hour_{b}")
    gone = d - timedelta(days=H)
    for i in range(7):
        expr = z(f"p_reach_dow_{i}")
        if d.weekday() == i:
            expr += f" + {z('c_reach')}"
        if gone.weekday() == i:
            expr += f" - {z(f'o{H}_reach')}"
        cols.append(f"({expr})::INTEGER AS reach_dow_{i}")
    for h in HALF_LIVES:
        factor = repr(math.pow(0.5, 1.0 / h))
        for k in ("attempts", "reach"):
            cols.append(f"coalesce(p_d{k}_hl{h}, 0.0) * {factor} + {z('c_' + k)} AS d{k}_hl{h}")
    for c in _DATE_COLS:
        today = f"CASE WHEN coalesce(c_{_DATE_PRED[c].split()[0]}, 0) > 0 THEN {D} END"
        # first_*: the earliest day wins (the old one); last_*: today wins when it qualifies.
        cols.append(f"coalesce(p_{c}, {today}) AS {c}" if c.startswith("first") else f"coalesce({today}, p_{c}) AS {c}")
    attempted = "coalesce(c_attempts, 0) > 0"
    body = ",\n  ".join(cols)
    return f"""
WITH pp AS (SELECT person_id, min(first_attempt) AS pp_first_att, max(last_reach) AS pp_last_reach FROM {prev} GROUP BY person_id),
j AS (
  SELECT *, p_first_seen IS NULL AS is_new,
    CASE WHEN p_first_seen IS NULL THEN least(cs_first_seen, CASE WHEN {attempted} THEN {D} END)
         ELSE least(p_first_seen, cs_first_seen) END AS new_first_seen,
    CASE WHEN {attempted} THEN c_channel ELSE p_att_channel END AS att_channel
  FROM {_prefixed(prev, [c for c in STATE_COLUMNS if c not in ('person_id', 'contact_id', 'in_cs')], 'p_')} {' '.join(joins)}
  LEFT JOIN pp USING (person_id)
)
SELECT person_id, contact_id,
  {_state_tail()},
  new_first_seen AS first_seen, {_live_sql('cs_live', f"coalesce(p_n_attempts, 0) + {z('c_attempts')}")} AS live,
  (coalesce(p_n_attempts, 0) + {z('c_attempts')})::BIGINT AS n_attempts,
  {body},
  CASE WHEN coalesce(c_reach, 0) > 0 THEN c_tail_fail ELSE (coalesce(p_streak, 0) + {z('c_attempts')}) END::INTEGER AS streak,
  CASE WHEN {attempted} THEN c_last_outcome ELSE p_last_outcome END AS last_outcome,
  CASE WHEN {attempted} THEN c_last_ts ELSE p_last_ts END AS last_ts,
  CASE WHEN {attempted} THEN c_last_campaign ELSE p_last_campaign END AS last_campaign,
  att_channel,
  CASE WHEN NOT is_new THEN p_dormant
       WHEN new_first_seen IS NULL THEN false
       WHEN new_first_seen = {D} THEN coalesce(pp_first_att < {D}, false)
            AND coalesce(pp_last_reach < {D} - {DORMANT_DAYS}, true)
       ELSE coalesce(b_dormant, false) END AS dormant
FROM j
"""


def _sanity_sql(st: str) -> str:
    """Rows whose windows are negative or not nested: the sign of a stale chain."""
    bad = []
    for k in KINDS:
        bad.append(f"{k}_7d < 0")
        bad.extend(f"{k}_{a}d > {k}_{b}d" for a, b in zip(WINDOWS, WINDOWS[1:], strict=False))
    bad += [f"{c} < 0" for c in _HOUR_COLS + _DOW_COLS]
    return f"SELECT count(*) FROM {st} WHERE " + " OR ".join(bad)


# --- person attributes --------------------------------------------------------------------------


def _persons_sql(con, src: str) -> str:
    """Per person, the latest non-null value of every attribute column of ``src`` (date, updated_at order)."""
    cols = [r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {src}").fetchall()]
    attrs = [c for c in cols if c not in ("person_id", "updated_at", "date") and not c.startswith("_")]
    upd = "updated_at NULLS FIRST, " if "updated_at" in cols else ""  # optional in the contract
    sel = "".join(
        f',\n  last("{c}" ORDER BY date, {upd}"{c}") FILTER (WHERE "{c}" IS NOT NULL) AS "{c}"' for c in sorted(attrs)
    )
    return f"SELECT person_id{sel} FROM {src} WHERE person_id IS NOT NULL GROUP BY person_id ORDER BY person_id"


def _persons_src(settings: Settings, d: date, prev: Path | None) -> str:
    """Person upserts to fold: every partition <= d, or the folded state of d-1 plus the partition of d."""
    if prev is None:
        files = _files(settings, "persons", d)
        if not files:
            return "(SELECT NULL::VARCHAR AS person_id, NULL::DATE AS date, NULL::TIMESTAMPTZ AS updated_at WHERE false)"
        return f"(SELECT * FROM {_read(files, '', hive_partitioning='true', union_by_name='true')})"
    prev_rel = f"(SELECT *, {_lit(d - timedelta(days=1))} AS date, NULL::TIMESTAMPTZ AS updated_at FROM read_parquet({_q(prev)}, hive_partitioning=false))"
    today = _files(settings, "persons", d, since=d)
    if not today:
        return prev_rel
    return f"({prev_rel} UNION ALL BY NAME (SELECT * FROM {_read(today, '', hive_partitioning='true')}))"


# --- assembling feature rows --------------------------------------------------------------------


def _attr_select(con, attrs: str) -> str:
    out = []
    described = con.execute(f"DESCRIBE SELECT * FROM {attrs}").fetchall() if attrs else []
    for name, typ, *_ in described[1:]:
        safe = "".join(ch if ch.isalnum() else "_" for ch in str(name).lower())
        expr = f'a."{name}"'
        if typ == "BOOLEAN" or any(t in typ for t in ("INT", "DOUBLE", "FLOAT", "DECIMAL")):
            expr = f"CAST({expr} AS DOUBLE)"
        elif typ != "VARCHAR":
            expr = f"CAST({expr} AS VARCHAR)"
        out.append(f"{expr} AS f_attr_{safe}")
    return "".join(",\n  " + s for s in out)


def _create_rates(con, st_all: str, pop: str, x: date, m: float) -> None:
    """Temp tables of the rates every feature row of ``x`` shares, computed once per build.

    ``_pa`` (population prior of the decayed reach rate), ``_pch`` (per channel), ``_pcs`` (per
    channel and source, each shrunk toward the level above) from the state ``st_all``; ``_ga``,
    ``_gc``, ``_gk``: reach and conversion rates of the last 7/30 days overall, per channel and per
    campaign from the population aggregates ``pop``.
    """
    X = _lit(x)
    dec = "::DECIMAL(38, 12)"

    def prior(level: str) -> str:
        num, den = (f"sum({c}_hl{{h}}{dec})::DOUBLE" for c in ("dreach", "dattempts"))
        if level == "":
            return ", ".join(f"{num.format(h=h)} / nullif({den.format(h=h)}, 0) AS p_hl{h}" for h in HALF_LIVES)
        return ", ".join(f"{_rate(num.format(h=h), den.format(h=h), f'any_value({level}.p_hl{h})', m)} AS p_hl{h}" for h in HALF_LIVES)

    def g_rates() -> str:
        return ", ".join(
            f"({_sum_if(k, f'date > {X} - {w}')})::DOUBLE / nullif({_sum_if('n', f'date > {X} - {w}')}, 0) AS {k}_{w}d"
            for w in (7, 30)
            for k in ("reach", "conv")
        )

    con.execute(f"CREATE OR REPLACE TEMP TABLE _prior_src AS SELECT channel, source, {', '.join(_DECAY_COLS)} FROM {st_all}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _pa AS SELECT {prior('')} FROM _prior_src")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _pch AS SELECT channel, {prior('_pa')} FROM _prior_src CROSS JOIN _pa GROUP BY channel")
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _pcs AS SELECT s.channel, s.source, {prior('pc')}
      FROM _prior_src s JOIN _pch pc ON pc.channel = s.channel GROUP BY s.channel, s.source""")
    con.execute("DROP TABLE _prior_src")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _gw AS SELECT * FROM {pop} WHERE date <= {X} AND date > {X} - 30")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _ga AS SELECT {g_rates()} FROM _gw")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _gc AS SELECT channel, {g_rates()} FROM _gw GROUP BY channel")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _gk AS SELECT campaign_id, {g_rates()} FROM _gw WHERE campaign_id IS NOT NULL GROUP BY campaign_id")


def _rate(num: str, den: str, prior: str, m: float) -> str:
    """Empirical-Bayes rate: ``num`` successes in ``den`` trials shrunk toward ``prior`` with strength m."""
    return f"(({num}) + {m!r} * ({prior})) / nullif(({den}) + {m!r}, 0)"


def _assemble_sql(con, rows: str | None, passthrough: list[str], st: str, attrs: str, x: date, m: float) -> str:
    """Feature rows for the relation ``rows`` (person_id, contact_id, channel, source, ...) at the end of x.

    Only the state of ``x`` feeds the f_* columns: the features of D use x = D, the training examples
    of D use x = D-1. ``rows`` only chooses which (person, contact, channel) to describe; ``None``
    means the candidates of ``st`` itself (``_candidate_sql``), which saves joining the state to itself.
    ``st`` must hold every state row of the persons of ``rows``; the shared rates come from
    ``_create_rates``.
    """
    X = _lit(x)
    dec = "::DECIMAL(38, 12)"

    def rate(num: str, den: str, prior: str) -> str:
        return _rate(num, den, prior, m)

    p_cols = [f"sum({c})::INTEGER AS {c}" for c in _COUNT_COLS]
    p_cols += [f"sum({c}{dec})::DOUBLE AS {c}" for c in _DECAY_COLS]
    p_cols += ["max(last_attempt) AS last_attempt", "max(last_reach) AS last_reach", "count(*)::INTEGER AS n_addresses",
               "sum(CASE WHEN live THEN 1 ELSE 0 END)::INTEGER AS n_live",
               "max((first_reach IS NOT NULL AND dormant)::INTEGER)::INTEGER AS came_back",
               "arg_max(last_campaign, {'ts': last_ts, 'c': contact_id}) FILTER (WHERE last_ts IS NOT NULL "
               "AND last_campaign IS NOT NULL) AS last_campaign"]  # fmt: skip
    p_cols += [f"{_sum_if('reach_365d', f'channel = {chr(39)}{c}{chr(39)}')}::INTEGER AS reach_ch_{c}" for c in CHANNELS_FOR_SHARES]
    p_cols += [f"sum(reach_hour_{b})::INTEGER AS reach_hour_{b}" for b in BUCKETS]

    r = "r" if rows is not None else "s"  # the alias the described rows go by
    f = [f"{r}.{c}" for c in passthrough]
    f += ["coalesce(s.last_outcome, 'none') AS last_outcome", "coalesce(s.n_attempts, 0)::BIGINT AS n_attempts"]
    f += [f"coalesce(s.{c}, 0)::INTEGER AS f_c_{c}" for c in _COUNT_COLS]
    for h in HALF_LIVES:
        prior = f"coalesce(pcs.p_hl{h}, pch.p_hl{h}, pa.p_hl{h})"
        f.append(f"{rate(f'coalesce(s.dreach_hl{h}, 0)', f'coalesce(s.dattempts_hl{h}, 0)', prior)}::FLOAT AS f_c_reach_rate_hl{h}")
        f.append(f"coalesce(s.dattempts_hl{h}, 0)::FLOAT AS f_c_dattempts_hl{h}")
    for c, name in [("last_attempt", "attempt"), ("last_reach", "reach"), ("last_invalid", "invalid"),
                    ("last_wrong_party", "wrong_party")]:  # fmt: skip
        f.append(f"({X} - s.{c})::INTEGER AS f_c_days_since_{name}")
    f += ["coalesce(s.streak, 0)::INTEGER AS f_c_fail_streak", "coalesce(s.last_outcome, 'none') AS f_c_last_outcome"]
    f += [f"coalesce(s.reach_hour_{b}, 0)::INTEGER AS f_c_reach_hour_{b}" for b in BUCKETS]
    f += [f"coalesce(s.attempt_hour_{b}, 0)::INTEGER AS f_c_attempt_hour_{b}" for b in BUCKETS]
    f += [f"coalesce(s.{c}, 0)::INTEGER AS f_c_{c}" for c in _DOW_COLS]
    f += [f"greatest({X} - coalesce(s.first_seen, {X}), 0)::INTEGER AS f_c_age_days",
          f"coalesce(s.source, {r}.source, 'unknown') AS f_source", f"{r}.channel AS f_channel"]  # fmt: skip
    f += [f"coalesce(p.{c}, 0)::INTEGER AS f_p_{c}" for c in _COUNT_COLS]
    for h in HALF_LIVES:
        f.append(f"{rate(f'coalesce(p.dreach_hl{h}, 0)', f'coalesce(p.dattempts_hl{h}, 0)', f'pa.p_hl{h}')}::FLOAT AS f_p_reach_rate_hl{h}")
    f += [f"({X} - p.last_attempt)::INTEGER AS f_p_days_since_attempt", f"({X} - p.last_reach)::INTEGER AS f_p_days_since_reach",
          "coalesce(p.n_addresses, 0)::INTEGER AS f_p_n_addresses", "coalesce(p.n_live, 0)::INTEGER AS f_p_n_live_addresses"]  # fmt: skip
    f += [f"(p.reach_ch_{c} / nullif(p.reach_365d, 0))::FLOAT AS f_p_reach_share_{c}" for c in CHANNELS_FOR_SHARES]
    f += [f"(p.reach_hour_{b} / nullif(p.reach_365d, 0))::FLOAT AS f_p_reach_share_{b}" for b in BUCKETS]
    f += ["coalesce(p.came_back, 0)::INTEGER AS f_p_came_back"]
    for w in (7, 30):
        f += [f"ga.reach_{w}d::FLOAT AS f_g_reach_rate_{w}d", f"ga.conv_{w}d::FLOAT AS f_g_conv_rate_{w}d",
              f"gc.reach_{w}d::FLOAT AS f_g_channel_reach_rate_{w}d", f"gc.conv_{w}d::FLOAT AS f_g_channel_conv_rate_{w}d",
              f"gk.reach_{w}d::FLOAT AS f_g_campaign_reach_rate_{w}d", f"gk.conv_{w}d::FLOAT AS f_g_campaign_conv_rate_{w}d"]  # fmt: skip

    if rows is None:
        rows_cte, who, from_rows = "", "", "FROM st s"
    else:
        rows_cte = f"r AS (SELECT * FROM {rows}),\n"
        who = "WHERE person_id IN (SELECT person_id FROM r)"
        from_rows = "FROM r\nLEFT JOIN st s ON s.person_id = r.person_id AND s.contact_id = r.contact_id"
    return f"""
WITH st AS NOT MATERIALIZED (SELECT * FROM {st}),  -- re-reading beats copying 80 columns
{rows_cte}p AS (SELECT person_id, {', '.join(p_cols)} FROM st {who} GROUP BY person_id)
SELECT {(',' + chr(10) + '  ').join(f)}{_attr_select(con, attrs)}
{from_rows}
LEFT JOIN p ON p.person_id = {r}.person_id
CROSS JOIN _pa pa
LEFT JOIN _pch pch ON pch.channel = {r}.channel
LEFT JOIN _pcs pcs ON pcs.channel = {r}.channel AND pcs.source = coalesce(s.source, {r}.source, 'unknown')
CROSS JOIN _ga ga
LEFT JOIN _gc gc ON gc.channel = {r}.channel
LEFT JOIN _gk gk ON gk.campaign_id = p.last_campaign
{f'LEFT JOIN {attrs} a ON a.person_id = {r}.person_id' if attrs else ''}
{'WHERE ' + _candidate_sql('s') if rows is None else ''}
"""


# --- the stage ------------------------------------------------------------------------------------


def _setup(con) -> None:
    con.register("_empty_attempts_arrow", ATTEMPTS.empty_table())
    con.execute("CREATE OR REPLACE TEMP VIEW _empty_attempts AS SELECT * FROM _empty_attempts_arrow")
    con.register("_empty_cs_arrow", CONTACTS_STATE.empty_table())
    con.execute("CREATE OR REPLACE TEMP VIEW _empty_cs AS SELECT * FROM _empty_cs_arrow")
    empty_src = _attempts_src(None, date(1970, 1, 1))
    con.execute(f"CREATE OR REPLACE TEMP VIEW _empty_agg AS {_agg_sql(empty_src)}")
    con.execute(f"CREATE OR REPLACE TEMP VIEW _empty_pop AS {_pop_sql(empty_src)}")


def _cs_rel(settings: Settings, d: date) -> str:
    """The candidates known by the end of d: the latest contacts_state partition <= d."""
    files = _files(settings, "contacts_state", d)
    return f"read_parquet({_q(files[-1])}, hive_partitioning=false)" if files else "_empty_cs"


def _agg_rel(settings: Settings, d: date, since: date | None = None) -> str:
    return _read(_files(settings, DAILY_AGG, d, since=since), "_empty_agg")


def _one_agg(settings: Settings, d: date) -> str:
    path = partition_dir(settings, DAILY_AGG, d) / DATA_FILE
    return f"read_parquet({_q(path)}, hive_partitioning=false)" if path.is_file() else "_empty_agg"


def _write_state(settings: Settings, con, d: date, prev_dir: Path | None, force_direct: bool, out_dir: Path) -> str:
    """Write the state of the end of d (and the person attributes) into ``out_dir``; returns the mode."""
    state_file = out_dir / DATA_FILE
    cs = _cs_rel(settings, d)
    cs_files = _files(settings, "contacts_state", d)
    mode = "direct"
    if prev_dir is not None and not force_direct:
        prev = f"read_parquet({_q(prev_dir / DATA_FILE)}, hive_partitioning=false)"
        old = {w: _one_agg(settings, d - timedelta(days=w)) for w in WINDOWS}
        backdated = _backdated(settings, con, prev, cs, d)
        chunks = _chunks(con, prev_dir / DATA_FILE, *cs_files[-1:])
        cur = _one_agg(settings, d)
        _stream(con, [
            _state_incr_sql(_chunk(prev, b), _chunk(cur, b), {w: _chunk(r, b) for w, r in old.items()},
                            _chunk(cs, b), _chunk(backdated, b), d)
            for b in chunks
        ], state_file)  # fmt: skip
        bad = con.execute(_sanity_sql(f"read_parquet({_q(state_file)}, hive_partitioning=false)")).fetchall()[0][0]
        if bad:
            log.warning("feature state of %s: %d rows inconsistent with the state of the day before "
                        "(a past date was rebuilt?); recomputing from the daily aggregates", d, bad)  # fmt: skip
        else:
            mode = "incremental"
    if mode == "direct":
        agg = _agg_rel(settings, d)
        agg_rows = sum(_count(con, f) for f in _files(settings, DAILY_AGG, d))
        chunks = _chunks(con, prev_dir / DATA_FILE if prev_dir is not None else None, *cs_files[-1:], rows=agg_rows // 8)

        def direct() -> Iterator[str]:
            for b in chunks:
                # The query reads the chunk's aggregates four times: from memory that costs half
                # of what re-reading the Parquet files does.
                con.execute(f"CREATE OR REPLACE TEMP TABLE _agg_chunk AS SELECT * FROM {_chunk(agg, b)}")
                yield _state_direct_sql("_agg_chunk", _chunk(cs, b), d)

        _stream(con, direct(), state_file)
        con.execute("DROP TABLE IF EXISTS _agg_chunk")
    prev_persons = prev_dir / PERSONS_FILE if (prev_dir is not None and not force_direct) else None
    src = _persons_src(settings, d, prev_persons if prev_persons and prev_persons.is_file() else None)
    _copy(con, _persons_sql(con, src), out_dir / PERSONS_FILE)
    return mode


def _backdated(settings: Settings, con, prev: str, cs: str, d: date) -> str:
    """Dormancy flags of pairs that enter the state on d with a first_seen before d (rare: late deliveries)."""
    empty = "(SELECT NULL::VARCHAR AS person_id, NULL::VARCHAR AS contact_id, NULL::BOOLEAN AS b_dormant WHERE false)"
    con.execute(f"""CREATE OR REPLACE TEMP TABLE _bcand AS
      SELECT c.person_id, c.contact_id, c.first_seen AS fs FROM {cs} c
      LEFT JOIN {prev} p ON p.person_id = c.person_id AND p.contact_id = c.contact_id
      WHERE p.first_seen IS NULL AND c.first_seen < {_lit(d)}""")
    lo, hi = con.execute("SELECT min(fs), max(fs) FROM _bcand").fetchall()[0]
    if lo is None:
        return empty
    reach = _read(_files(settings, DAILY_AGG, hi - timedelta(days=1), since=lo - timedelta(days=DORMANT_DAYS)), "_empty_agg")
    return f"""(
      SELECT b.person_id, b.contact_id,
        coalesce((SELECT min(first_attempt) FROM {prev} q WHERE q.person_id = b.person_id) < b.fs, false)
        AND NOT EXISTS (SELECT 1 FROM {reach} r WHERE r.person_id = b.person_id AND r.reach > 0
                        AND r.date < b.fs AND r.date >= b.fs - {DORMANT_DAYS}) AS b_dormant
      FROM _bcand b)"""


def _training_rows(settings: Settings, d: date) -> str:
    """The attempts of d as rows to describe, with their labels; source only for pairs new on d."""
    path = partition_dir(settings, "attempts", d) / DATA_FILE
    src = f"read_parquet({_q(path)}, hive_partitioning=false)" if path.is_file() else "_empty_attempts"
    return f"""(SELECT a.attempt_id, a.person_id, a.contact_id, a.channel, {_lit(d)} AS date, a.campaign_id,
  ({KINDS['reach']})::INT8 AS label_reach, ({KINDS['conv']})::INT8 AS label_conversion, a.local_hour,
  coalesce(c.source, 'attempts') AS source
  FROM {src} a LEFT JOIN {_cs_rel(settings, d)} c ON c.person_id = a.person_id AND c.contact_id = a.contact_id)"""


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
        _setup(con)
        attempt_dates = [x for x in partition_dates(settings, "attempts") if x <= d]
        have = set(partition_dates(settings, DAILY_AGG))
        todo = [x for x in attempt_dates if full or x == d or x not in have]
        if d not in todo:
            todo.append(d)
        with phase("daily_agg"):
            agg_rows = _build_daily_aggs(settings, con, todo, d)

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
                    _write_state(settings, con, prev_day, None, True, prev_dir)
            with phase("state"), atomic_dir(partition_dir(settings, STATE, d)) as stage:
                # Always one incremental step onto the state of d-1 (read, or computed directly just above).
                mode = _write_state(settings, con, d, prev_dir, False, stage)
                state_rows = _count(con, stage / DATA_FILE)
            mode = "full" if full else (mode if prev_ok else "direct")
            with phase("features"):
                feat_rows = _write_features(settings, con, d, partition_dir(settings, STATE, d))
            with phase("training"):
                train_rows = _write_training(settings, con, d, prev_dir)
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


def _state_rels(state_dir: Path) -> tuple[str, str]:
    persons = state_dir / PERSONS_FILE
    return f"read_parquet({_q(state_dir / DATA_FILE)}, hive_partitioning=false)", (f"read_parquet({_q(persons)}, hive_partitioning=false)" if persons.is_file() else "")


def _pop_rel(settings: Settings, x: date) -> str:
    files = _files(settings, DAILY_AGG, x, since=x - timedelta(days=29), name=POP_FILE)
    return _read(files, "_empty_pop")


def _write_features(settings: Settings, con, d: date, state_dir: Path) -> int:
    """Features of d: one row per candidate (``_candidate_sql``) of the state of the end of d."""
    st, attrs = _state_rels(state_dir)
    _create_rates(con, st, _pop_rel(settings, d), d, settings.prior_strength)

    def sql(b: Bounds) -> str:
        return _assemble_sql(con, None, ["person_id", "contact_id", "channel"], _chunk(st, b),
                             _chunk(attrs, b) if attrs else "", d, settings.prior_strength)  # fmt: skip

    with atomic_dir(partition_dir(settings, FEATURES, d)) as stage:
        chunks = _chunks(con, state_dir / DATA_FILE)
        return _stream(con, [sql(b) for b in chunks], stage / DATA_FILE)


def _write_training(settings: Settings, con, d: date, prev_dir: Path) -> int:
    """Training examples of d: its attempts, labelled, with the features of the end of d-1 only."""
    x = d - timedelta(days=1)
    st, attrs = _state_rels(prev_dir)
    passthrough = ["attempt_id", "person_id", "contact_id", "channel", "date", "campaign_id", "label_reach",
                   "label_conversion", "local_hour"]  # fmt: skip
    _create_rates(con, st, _pop_rel(settings, x), x, settings.prior_strength)
    rows = _training_rows(settings, d)
    # Only the state rows of the persons attempted on d: a few hundred thousand, not the whole state.
    con.execute(f"CREATE OR REPLACE TEMP TABLE _rows AS SELECT * FROM {rows}")
    con.execute(f"CREATE OR REPLACE TEMP TABLE _st AS SELECT * FROM {st} WHERE person_id IN (SELECT person_id FROM _rows)")
    if attrs:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _attrs AS SELECT * FROM {attrs} WHERE person_id IN (SELECT person_id FROM _rows)")
    table = con.sql(_assemble_sql(con, "_rows", passthrough, "_st", "_attrs" if attrs else "", x, settings.prior_strength)).to_arrow_table()
    df = table.to_pandas().sort_values("attempt_id", ignore_index=True)  # dates stay dates
    df = df.drop(columns=["last_outcome", "n_attempts"])
    df = add_context(df, d, df["local_hour"]).drop(columns=["local_hour"])
    write_partition(settings, TRAINING, d, df)
    return len(df)


# --- readers for the other stages -----------------------------------------------------------------


def load_features(settings: Settings, d: date, columns: list[str] | None = None) -> pd.DataFrame:
    """The feature state of the end of d (one row per candidate); raises NotReady when not built."""
    from contactrank.errors import NotReady

    path = partition_dir(settings, FEATURES, d) / DATA_FILE
    if not path.is_file():
        raise NotReady(f"no features for {d}: {path} is missing (run `contactrank features --date {d}`)")
    return pq.read_table(path, columns=columns).to_pandas()


def training_dates(settings: Settings, start: date, end: date) -> list[date]:
    """Dates in [start, end] that have a training partition."""
    return [x for x in partition_dates(settings, TRAINING) if start <= x <= end]


def load_training(settings: Settings, start: date, end: date, columns: list[str] | None = None) -> pd.DataFrame:
    """Every training partition in [start, end] concatenated (missing days skipped; empty frame if none)."""
    frames = []
    for x in training_dates(settings, start, end):
        table = pq.read_table(partition_dir(settings, TRAINING, x) / DATA_FILE)
        if columns is not None:
            table = table.select([c for c in columns if c in table.column_names])
        frames.append(table.to_pandas())
    if not frames:
        return pd.DataFrame(columns=columns or [])
    return pd.concat(frames, ignore_index=True)
