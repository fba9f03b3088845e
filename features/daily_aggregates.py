"""Daily aggregates: each day's raw attempts reduced once, so the state never re-reads raw attempts.

``daily_agg/date=D`` holds ``part-0.parquet``, one row per (person, contact) attempted on D with its
outcome counts, per-hour-bucket counts, last outcome/channel/campaign and the failure tail of the
day, and ``population.parquet``, attempts/reaches/conversions per (campaign, channel) of D (and
per hour bucket, of every try and of first tries: ``population_sql``).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from contactrank.features import history, sql
from contactrank.features.feature_chunks import copy_to_parquet, parquet_rows
from contactrank.features.lake import DATA_FILE, atomic_dir, partition_dir
from contactrank.features.schema import ATTEMPTS, CONVERSION_OUTCOMES, REACH_OUTCOMES
from contactrank.settings import Settings


def outcome_in(values: frozenset[str] | tuple[str, ...]) -> str:
    return "outcome IN (" + ", ".join(sql.quote_literal(v) for v in sorted(values)) + ")"


# Outcome classes counted per day and per window: column name -> predicate on ``outcome``.
KINDS: dict[str, str] = {
    "attempts": "TRUE",
    "reach": outcome_in(REACH_OUTCOMES),
    "conv": outcome_in(CONVERSION_OUTCOMES),
    "wrong_party": "outcome = 'wrong_party'",
    "invalid": "outcome = 'invalid'",
    "noanswer": outcome_in(("no_answer", "busy", "voicemail")),
}
# Local-hour buckets: name -> inclusive hour range.
BUCKETS: dict[str, tuple[int, int] | None] = {
    "morning": (8, 11),
    "midday": (12, 14),
    "afternoon": (15, 17),
    "evening": (18, 21),
    "night": None,  # every other hour
}


def count_if(pred: str) -> str:
    return "count(*)::INTEGER" if pred == "TRUE" else f"sum(CASE WHEN {pred} THEN 1 ELSE 0 END)::INTEGER"


def sum_if(expr: str, pred: str) -> str:
    return f"sum(CASE WHEN {pred} THEN {expr} ELSE 0 END)"


def _bucket_case() -> str:
    whens = " ".join(
        f"WHEN local_hour BETWEEN {lo} AND {hi} THEN {sql.quote_literal(b)}"
        for b, r in BUCKETS.items()
        if r
        for lo, hi in [r]
    )
    return f"CASE {whens} WHEN local_hour IS NOT NULL THEN 'night' END"


def _ranked_attempts_sql(attempts: str) -> str:
    """The attempts of ``attempts`` with their hour ``bucket``, ``is_reach`` and ``rn``, their place
    in the address's day (1: its first try)."""
    return f"""
  SELECT person_id, contact_id, date, channel, outcome, campaign_id, attempted_at,
    {_bucket_case()} AS bucket, {KINDS["reach"]} AS is_reach,
    row_number() OVER (PARTITION BY person_id, contact_id, date ORDER BY attempted_at, attempt_id) AS rn
  FROM {attempts}"""


def _bucket_counts(prefix: str = "", only: str = "") -> str:
    """Per hour bucket, the tries of ``ranked_attempts`` (those for which ``only`` holds, if given)
    and their reaches, as ``<prefix>attempts_<bucket>``, ``<prefix>reach_<bucket>``."""
    when = f"{only} AND " if only else ""
    return ",\n  ".join(
        f"{count_if(f'{when}bucket = {sql.quote_literal(b)}')} AS {prefix}attempts_{b},\n  "
        f"{count_if(f'{when}bucket = {sql.quote_literal(b)} AND is_reach')} AS {prefix}reach_{b}"
        for b in BUCKETS
    )


def daily_agg_sql(attempts: str) -> str:
    """Per (person, contact, date) aggregates of the attempts relation ``attempts`` (with a ``date``)."""
    # sum(CASE ...) rather than FILTER: DuckDB runs it much faster with many aggregates.
    kinds = ",\n  ".join(f"{count_if(pred)} AS {k}" for k, pred in KINDS.items())
    return f"""
WITH ranked_attempts AS ({_ranked_attempts_sql(attempts)}
)
SELECT person_id, contact_id, date,
  arg_max(channel, rn) AS channel,
  arg_max(outcome, rn) AS last_outcome,
  arg_max(attempted_at, rn) AS last_ts,
  arg_max_null(campaign_id, rn) AS last_campaign,
  {kinds},
  {_bucket_counts()},
  (count(*) - coalesce(max(CASE WHEN is_reach THEN rn END), 0))::INTEGER AS tail_fail
FROM ranked_attempts GROUP BY person_id, contact_id, date
"""


def population_sql(attempts: str) -> str:
    """Attempts, reaches and conversions per (date, campaign, channel) of ``attempts``, and per hour
    bucket the attempts and reaches of every try (``attempts_<bucket>``, ``reach_<bucket>``) and of
    first tries, an address's first try of its day (``first_attempts_<bucket>``,
    ``first_reach_<bucket>``): ``feature_rows.repeat_ratio_sql`` compares the two."""
    return f"""
WITH ranked_attempts AS ({_ranked_attempts_sql(attempts)}
)
SELECT date, campaign_id, channel, count(*)::INTEGER AS n,
  {count_if(KINDS["reach"])} AS reach, {count_if(KINDS["conv"])} AS conv,
  {_bucket_counts()},
  {_bucket_counts("first_", "rn = 1")}
FROM ranked_attempts GROUP BY date, campaign_id, channel"""


def attempts_of_day(path: Path | None, d: date) -> str:
    """The raw attempts of ``path`` (None: no attempts) with a ``date`` column of d."""
    cols = ", ".join(ATTEMPTS.names)
    relation = history.read_file(path) if path else history.EMPTY_ATTEMPTS
    return f"(SELECT {cols}, {sql.date_literal(d)} AS date FROM {relation})"


def build_daily_aggs(settings: Settings, con, days: list[date], d: date) -> int:
    """Write ``daily_agg`` of every date of ``days``; returns the aggregate rows of ``d``."""
    rows = 0
    for x in days:
        n = build_daily_agg(settings, con, x)
        rows = n if x == d else rows
    return rows


def build_daily_agg(settings: Settings, con, d: date) -> int:
    """Write ``daily_agg/date=d`` from the raw attempts of d (none: empty aggregates)."""
    attempts = attempts_of_day(history.attempts_file(settings, d), d)
    with atomic_dir(partition_dir(settings, history.DAILY_AGG, d)) as stage:
        copy_to_parquet(con, daily_agg_sql(attempts) + " ORDER BY person_id, contact_id", stage / DATA_FILE)
        copy_to_parquet(con, population_sql(attempts) + " ORDER BY ALL", stage / history.POP_FILE)
        return parquet_rows(stage / DATA_FILE)
