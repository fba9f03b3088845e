"""The running per-(person, contact) state at the end of a day: windowed counts, decayed sums, dates.

``feature_state/date=D/part-0.parquet`` holds one row per candidate of D plus every pair ever
attempted. It is built in one of two ways that give the same result (tests/data/test_incremental.py):

- incremental: the state of D-1, plus the daily aggregates of D, minus those of the days that leave
  each window (D-7, D-30, D-90, D-365);
- direct: every daily aggregate <= D summed at once (no state of D-1, a full rebuild, or a state of
  D-1 that no longer agrees with its aggregates).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

from contactrank.features import history, sql
from contactrank.features.daily_aggregates import BUCKETS, KINDS, sum_if
from contactrank.features.feature_chunks import (
    Bounds,
    in_range,
    parquet_rows,
    person_ranges,
    stream_to_parquet,
)
from contactrank.features.lake import DATA_FILE
from contactrank.settings import Settings
from contactrank.shards import Shard

log = logging.getLogger(__name__)

WINDOWS = (7, 30, 90, 365)
HALF_LIVES = (7, 30)
DORMANT_DAYS = 90  # "came back": reached on an address first seen after this long without a reach
HISTORY_WINDOW = 365  # window of the hour-bucket and day-of-week counts

COUNT_COLS = [f"{k}_{w}d" for k in KINDS for w in WINDOWS]
HOUR_COLS = [f"{kind}_hour_{b}" for b in BUCKETS for kind in ("attempt", "reach")]
DOW_COLS = [f"reach_dow_{i}" for i in range(7)]
DECAY_COLS = [f"d{k}_hl{h}" for h in HALF_LIVES for k in ("attempts", "reach")]
DATE_COLS = ["first_attempt", "last_attempt", "last_reach", "last_invalid", "last_wrong_party", "first_reach"]
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
    *COUNT_COLS, *HOUR_COLS, *DOW_COLS, *DECAY_COLS, *DATE_COLS,
    "streak", "last_outcome", "last_ts", "last_campaign", "att_channel", "dormant",
]  # fmt: skip
# Daily aggregate columns the incremental step adds and subtracts.
_AGG_COUNT_COLS = list(KINDS)
_AGG_BUCKET_COLS = [f"{kind}_{b}" for b in BUCKETS for kind in ("attempts", "reach")]


def candidates_sql(contacts_state: str) -> str:
    """Candidates with the columns the state needs (live = active and consenting)."""
    return f"""(SELECT person_id, contact_id, channel AS cs_channel, coalesce(source, 'unknown') AS cs_source,
  first_seen AS cs_first_seen, coalesce(active, true) AND coalesce(consent, true) AS cs_live, true AS in_cs
  FROM {contacts_state})"""


def own_line_sql() -> str:
    """The state rows whose hour counts say when the person answers: an address that neither
    answered invalid nor as someone else in the hour counts' window, or that reached the person
    there.

    Why: a dead or reassigned number fails at whatever hour it is tried. Counted into the person's
    buckets, its failures lower the buckets it was tried in. Under a dialer that tries at random
    hours that lowers every bucket alike; once the file chooses the hours, the person's live
    number is tried in the chosen bucket while the dead ones' old failures stay in the others, and
    the chosen bucket's lift over the person's average is overstated: in the closed loop the
    published score over-promised at rank 1 (docs/benchmarks.md).
    """
    w = HISTORY_WINDOW
    return f"((invalid_{w}d = 0 AND wrong_party_{w}d = 0) OR reach_{w}d > 0)"


def habit_count_sql(column: str, own_lines: bool) -> str:
    """The sum of the state's ``column`` over a group's rows the habit fits count: every row, or
    with ``own_lines`` those of ``own_line_sql``."""
    return sum_if(column, own_line_sql()) if own_lines else f"sum({column})"


def habit_count_columns(own_lines: bool, name: str) -> list[str]:
    """The hour counts the habit fits read, as columns of a per-person GROUP BY (``habit_count_sql``
    of each of ``HOUR_COLS``, in its order), each named by ``name`` (a format string of ``kind`` and
    ``bucket``)."""
    return [
        f"{habit_count_sql(f'{k}_hour_{b}', own_lines)}::INTEGER AS {name.format(kind=k, bucket=b)}"
        for b in BUCKETS
        for k in ("attempt", "reach")
    ]


def live_sql(cs_live: str, n_attempts: str) -> str:
    """A pair is live when contacts_state says it is active and consenting; an address only seen
    in attempts (never delivered as a contact) is live by default."""
    return f"coalesce({cs_live}, ({n_attempts}) > 0)"


def is_candidate_sql(alias: str) -> str:
    """The candidates of a state: every delivered address and every address seen in attempts
    (docs/contract.md: a contact seen in attempts but never in contacts is a candidate too)."""
    return f"({alias}.in_cs OR {alias}.n_attempts > 0)"


def _channel_and_source() -> str:
    """Columns shared by both state builders, computed from cs_* and the aggregated fields."""
    return """coalesce(cs_channel, att_channel) AS channel,
  CASE WHEN in_cs THEN cs_source ELSE 'attempts' END AS source,
  coalesce(in_cs, false) AS in_cs"""


def _direct_columns(x: date) -> str:
    """The per-pair sums of ``state_direct_sql``: windowed counts, hour/day-of-week counts, decayed
    sums and the dates of the first/last qualifying day."""
    X = sql.date_literal(x)
    counts = []
    for k in KINDS:
        for w in WINDOWS:
            counts.append(f"coalesce({sum_if(k, f'date > {X} - {w}')}, 0)::INTEGER AS {k}_{w}d")
    hist = f"date > {X} - {HISTORY_WINDOW}"
    for b in BUCKETS:
        counts.append(f"coalesce({sum_if(f'attempts_{b}', hist)}, 0)::INTEGER AS attempt_hour_{b}")
        counts.append(f"coalesce({sum_if(f'reach_{b}', hist)}, 0)::INTEGER AS reach_hour_{b}")
    for i in range(7):
        reach_on_day = sum_if("reach", f"{hist} AND isodow(date) = {i + 1}")
        counts.append(f"coalesce({reach_on_day}, 0)::INTEGER AS reach_dow_{i}")
    for h in HALF_LIVES:
        for k in ("attempts", "reach"):
            # DECIMAL terms make the sum exact, so the result does not depend on thread scheduling.
            decayed = f"({k} * pow(0.5, ({X} - date) / {float(h)}))::DECIMAL(38, 12)"
            counts.append(f"sum({decayed})::DOUBLE AS d{k}_hl{h}")
    dates = [
        f"{'min' if c.startswith('first') else 'max'}(CASE WHEN {_DATE_PRED[c]} THEN date END) AS {c}"
        for c in DATE_COLS
    ]
    return ",\n    ".join(counts + dates)


def state_direct_sql(daily: str, contacts_state: str, x: date) -> str:
    """The state at the end of ``x`` from every daily aggregate <= x (``daily`` is already cut)."""
    zero_filled = ",\n  ".join(
        [f"coalesce(pairs.{c}, 0) AS {c}" for c in COUNT_COLS + HOUR_COLS + DOW_COLS]
        + [f"coalesce(pairs.{c}, 0.0) AS {c}" for c in DECAY_COLS]
    )
    return f"""
WITH daily AS NOT MATERIALIZED (SELECT * FROM {daily}),  -- an in-memory table: inlining it copies nothing
pair_totals AS (
  SELECT person_id, contact_id,
    sum(attempts)::BIGINT AS n_attempts,
    {_direct_columns(x)},
    arg_max(last_outcome, date) AS last_outcome,
    arg_max(last_ts, date) AS last_ts,
    arg_max_null(last_campaign, date) AS last_campaign,
    arg_max(channel, date) AS att_channel
  FROM daily GROUP BY person_id, contact_id
),
fail_streaks AS (
  SELECT one_day.person_id, one_day.contact_id,
    sum(CASE WHEN one_day.reach > 0 THEN one_day.tail_fail ELSE one_day.attempts END)::INTEGER AS streak
  FROM daily one_day JOIN pair_totals tot
    ON one_day.person_id = tot.person_id AND one_day.contact_id = tot.contact_id
  WHERE tot.last_reach IS NULL OR one_day.date >= tot.last_reach
  GROUP BY one_day.person_id, one_day.contact_id
),
candidates AS {candidates_sql(contacts_state)},
pairs AS (
  SELECT coalesce(tot.person_id, cand.person_id) AS person_id,
    coalesce(tot.contact_id, cand.contact_id) AS contact_id,
    cand.*, tot.* EXCLUDE (person_id, contact_id),
    least(cand.cs_first_seen, tot.first_attempt) AS first_seen
  FROM pair_totals tot FULL JOIN candidates cand
    ON tot.person_id = cand.person_id AND tot.contact_id = cand.contact_id
),
person_first_attempt AS (SELECT person_id, min(date) AS first_att FROM daily GROUP BY person_id),
reached_before_first_seen AS (  -- pairs whose person was reached in the {DORMANT_DAYS} days before
  SELECT DISTINCT pairs.person_id, pairs.contact_id
  FROM pairs JOIN (SELECT DISTINCT person_id, date FROM daily WHERE reach > 0) reached
    ON reached.person_id = pairs.person_id AND reached.date < pairs.first_seen
    AND reached.date >= pairs.first_seen - {DORMANT_DAYS}
)
SELECT pairs.person_id, pairs.contact_id,
  {_channel_and_source()},
  pairs.first_seen, {live_sql("pairs.cs_live", "coalesce(pairs.n_attempts, 0)")} AS live,
  coalesce(pairs.n_attempts, 0) AS n_attempts,
  {zero_filled},
  {", ".join("pairs." + c for c in DATE_COLS)},
  coalesce(fail_streaks.streak, 0) AS streak, pairs.last_outcome, pairs.last_ts, pairs.last_campaign,
  pairs.att_channel,
  coalesce(person_first.first_att < pairs.first_seen, false) AND recent.person_id IS NULL AS dormant
FROM pairs
LEFT JOIN fail_streaks
  ON fail_streaks.person_id = pairs.person_id AND fail_streaks.contact_id = pairs.contact_id
LEFT JOIN person_first_attempt person_first ON person_first.person_id = pairs.person_id
LEFT JOIN reached_before_first_seen recent
  ON recent.person_id = pairs.person_id AND recent.contact_id = pairs.contact_id
"""


def _prefixed(relation: str, cols: list[str], prefix: str) -> str:
    sel = ", ".join(f"{c} AS {prefix}{c}" for c in cols)
    return f"(SELECT person_id, contact_id, {sel} FROM {relation})"


def _incremental_columns(d: date) -> list[str]:
    """Window counts, hour/day-of-week counts, decayed sums and dates of the incremental step.

    Column prefixes: ``p_`` the state of d-1, ``c_`` the aggregates of d, ``o{w}_`` the aggregates
    of the day that leaves the w-day window.
    """
    D = sql.date_literal(d)

    def z(c: str) -> str:
        return f"coalesce({c}, 0)"

    cols = []
    for k in KINDS:
        for w in WINDOWS:
            cols.append(
                f"({z('p_' + k + f'_{w}d')} + {z('c_' + k)} - {z(f'o{w}_' + k)})::INTEGER AS {k}_{w}d"
            )
    H = HISTORY_WINDOW
    for b in BUCKETS:
        for state_kind, agg_kind in (("attempt", "attempts"), ("reach", "reach")):
            moved = (
                f"{z(f'p_{state_kind}_hour_' + b)} + {z(f'c_{agg_kind}_' + b)} - {z(f'o{H}_{agg_kind}_' + b)}"
            )
            cols.append(f"({moved})::INTEGER AS {state_kind}_hour_{b}")
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
    for c in DATE_COLS:
        today = f"CASE WHEN coalesce(c_{_DATE_PRED[c].split()[0]}, 0) > 0 THEN {D} END"
        # first_*: the earliest day wins (the old one); last_*: today wins when it qualifies.
        cols.append(
            f"coalesce(p_{c}, {today}) AS {c}"
            if c.startswith("first")
            else f"coalesce({today}, p_{c}) AS {c}"
        )
    return cols


def state_incremental_sql(
    prev: str, today: str, leaving: dict[int, str], contacts_state: str, backdated: str, d: date
) -> str:
    """The state at the end of ``d`` from the state of d-1 (``prev``), the aggregates of d
    (``today``) and those of the days leaving each window (``leaving``: window -> aggregates)."""
    D = sql.date_literal(d)
    today_cols = [
        *_AGG_COUNT_COLS,
        *_AGG_BUCKET_COLS,
        "tail_fail",
        "last_outcome",
        "last_ts",
        "last_campaign",
        "channel",
    ]
    # The state of d-1 is the big side; d's candidates join it once (full join: new pairs and pairs
    # that left contacts_state both survive), the small daily aggregates are left-joined onto it.
    joins = [
        f"FULL JOIN {candidates_sql(contacts_state)} USING (person_id, contact_id)",
        f"FULL JOIN {_prefixed(today, today_cols, 'c_')} USING (person_id, contact_id)",
        f"LEFT JOIN {backdated} USING (person_id, contact_id)",
    ]
    for w, relation in leaving.items():
        cols = _AGG_COUNT_COLS + (_AGG_BUCKET_COLS if w == HISTORY_WINDOW else [])
        joins.append(f"LEFT JOIN {_prefixed(relation, cols, f'o{w}_')} USING (person_id, contact_id)")
    prev_cols = [c for c in STATE_COLUMNS if c not in ("person_id", "contact_id", "in_cs")]
    attempted = "coalesce(c_attempts, 0) > 0"
    n_attempts = "coalesce(p_n_attempts, 0) + coalesce(c_attempts, 0)"
    body = ",\n  ".join(_incremental_columns(d))
    return f"""
WITH person_history AS (
  SELECT person_id, min(first_attempt) AS pp_first_att, max(last_reach) AS pp_last_reach
  FROM {prev} GROUP BY person_id
),
joined AS (
  SELECT *, p_first_seen IS NULL AS is_new,
    CASE WHEN p_first_seen IS NULL THEN least(cs_first_seen, CASE WHEN {attempted} THEN {D} END)
         ELSE least(p_first_seen, cs_first_seen) END AS new_first_seen,
    CASE WHEN {attempted} THEN c_channel ELSE p_att_channel END AS att_channel
  FROM {_prefixed(prev, prev_cols, "p_")} {" ".join(joins)}
  LEFT JOIN person_history USING (person_id)
)
SELECT person_id, contact_id,
  {_channel_and_source()},
  new_first_seen AS first_seen, {live_sql("cs_live", n_attempts)} AS live,
  ({n_attempts})::BIGINT AS n_attempts,
  {body},
  CASE WHEN coalesce(c_reach, 0) > 0 THEN c_tail_fail
       ELSE (coalesce(p_streak, 0) + coalesce(c_attempts, 0)) END::INTEGER AS streak,
  CASE WHEN {attempted} THEN c_last_outcome ELSE p_last_outcome END AS last_outcome,
  CASE WHEN {attempted} THEN c_last_ts ELSE p_last_ts END AS last_ts,
  CASE WHEN {attempted} THEN c_last_campaign ELSE p_last_campaign END AS last_campaign,
  att_channel,
  CASE WHEN NOT is_new THEN p_dormant
       WHEN new_first_seen IS NULL THEN false
       WHEN new_first_seen = {D} THEN coalesce(pp_first_att < {D}, false)
            AND coalesce(pp_last_reach < {D} - {DORMANT_DAYS}, true)
       ELSE coalesce(b_dormant, false) END AS dormant
FROM joined
"""


def inconsistent_rows_sql(state: str) -> str:
    """Rows whose windows are negative or not nested: the sign of a stale chain."""
    bad = []
    for k in KINDS:
        bad.append(f"{k}_7d < 0")
        bad.extend(f"{k}_{a}d > {k}_{b}d" for a, b in zip(WINDOWS, WINDOWS[1:], strict=False))
    bad += [f"{c} < 0" for c in HOUR_COLS + DOW_COLS]
    return f"SELECT count(*) FROM {state} WHERE " + " OR ".join(bad)


def backdated_dormancy(settings: Settings, con, prev: str, contacts_state: str, d: date) -> str:
    """Dormancy flags of pairs that enter the state on d with a first_seen before d (rare: late
    deliveries)."""
    empty = (
        "(SELECT NULL::VARCHAR AS person_id, NULL::VARCHAR AS contact_id, NULL::BOOLEAN AS b_dormant"
        " WHERE false)"
    )
    con.execute(f"""CREATE OR REPLACE TEMP TABLE backdated_candidates AS
      SELECT cand.person_id, cand.contact_id, cand.first_seen AS fs FROM {contacts_state} cand
      LEFT JOIN {prev} prev ON prev.person_id = cand.person_id AND prev.contact_id = cand.contact_id
      WHERE prev.first_seen IS NULL AND cand.first_seen < {sql.date_literal(d)}""")
    lo, hi = con.execute("SELECT min(fs), max(fs) FROM backdated_candidates").fetchall()[0]
    if lo is None:
        return empty
    earlier = history.daily_aggs(settings, hi - timedelta(days=1), since=lo - timedelta(days=DORMANT_DAYS))
    return f"""(
      SELECT late.person_id, late.contact_id,
        coalesce((SELECT min(first_attempt) FROM {prev} prev WHERE prev.person_id = late.person_id)
                 < late.fs, false)
        AND NOT EXISTS (SELECT 1 FROM {earlier} one_day WHERE one_day.person_id = late.person_id
                        AND one_day.reach > 0 AND one_day.date < late.fs
                        AND one_day.date >= late.fs - {DORMANT_DAYS}) AS b_dormant
      FROM backdated_candidates late)"""


def write_state(
    settings: Settings, con, d: date, prev_dir: Path | None, out_dir: Path, shard: Shard | None = None
) -> str:
    """Write the state of the end of d into ``out_dir``: incremental onto the state of ``prev_dir``
    when given and consistent, else direct; returns the mode used. With ``shard``, of its persons
    only (``prev_dir`` may hold more: it is filtered too)."""
    state_file = out_dir / DATA_FILE
    contacts_state = history.contacts_state(settings, d)
    cs_files = history.contacts_state_files(settings, d)
    if prev_dir is not None:
        prev = history.read_file(prev_dir / DATA_FILE)
        leaving = {w: history.daily_agg_of(settings, d - timedelta(days=w)) for w in WINDOWS}
        # the shard's own addresses: another shard's would all look new next to this shard's state
        own_contacts = in_range(contacts_state, Bounds(None, None, shard)) if shard else contacts_state
        backdated = backdated_dormancy(settings, con, prev, own_contacts, d)
        today = history.daily_agg_of(settings, d)
        queries = [
            state_incremental_sql(
                in_range(prev, b), in_range(today, b), {w: in_range(r, b) for w, r in leaving.items()},
                in_range(contacts_state, b), in_range(backdated, b), d,
            )
            for b in person_ranges(con, prev_dir / DATA_FILE, *cs_files, shard=shard)
        ]  # fmt: skip
        stream_to_parquet(con, queries, state_file)
        bad = con.execute(inconsistent_rows_sql(history.read_file(state_file))).fetchall()[0][0]
        if not bad:
            return "incremental"
        log.warning("feature state of %s: %d rows inconsistent with the state of the day before "
                    "(a past date was rebuilt?); recomputing from the daily aggregates", d, bad)  # fmt: skip
    daily = history.daily_aggs(settings, d)
    daily_rows = sum(parquet_rows(f) for f in history.partition_files(settings, history.DAILY_AGG, d))
    prev_file = prev_dir / DATA_FILE if prev_dir is not None else None
    ranges = person_ranges(con, prev_file, *cs_files, rows=daily_rows // 8, shard=shard)

    def direct() -> Iterator[str]:
        for b in ranges:
            # The query reads the range's aggregates four times: from memory that costs half of
            # what re-reading the Parquet files does.
            con.execute(f"CREATE OR REPLACE TEMP TABLE daily_agg_range AS SELECT * FROM {in_range(daily, b)}")
            yield state_direct_sql("daily_agg_range", in_range(contacts_state, b), d)

    stream_to_parquet(con, direct(), state_file)
    con.execute("DROP TABLE IF EXISTS daily_agg_range")
    return "direct"
