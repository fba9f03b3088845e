"""Feature rows: the ``f_*`` columns of docs/features.md for chosen (person, contact, channel) rows.

Only the state of the end of one day x feeds them: the features of D use x = D, the training
examples of D use x = D-1. Rates every row of x shares (population priors, recent reach and
conversion rates) are computed once per build into temp tables by ``create_shared_rates``.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from contactrank.features import history, sql
from contactrank.features.daily_aggregates import BUCKETS, KINDS, sum_if
from contactrank.features.feature_state import (
    COUNT_COLS,
    DECAY_COLS,
    DOW_COLS,
    HALF_LIVES,
    habit_count_columns,
    habit_count_sql,
    is_candidate_sql,
)
from contactrank.features.hour_profiles import fit_hour_profiles, profile_join_sql
from contactrank.features.person_attributes import attribute_features_sql
from contactrank.features.person_curves import CURVE_COLUMNS
from contactrank.settings import Settings

CHANNELS_FOR_SHARES = ("voice", "sms", "email", "whatsapp")
RECENT_RATE_WINDOWS = (7, 30)  # days of the population reach/conversion rates
_EXACT = "::DECIMAL(38, 12)"  # exact sums: the result does not depend on thread scheduling
HABIT_PREFIX = "habit_"  # the person totals' hour counts the habit profiles are looked up by


def shrunk_rate(num: str, den: str, prior: str, m: float) -> str:
    """Empirical-Bayes rate: ``num`` successes in ``den`` trials shrunk toward ``prior`` with strength m."""
    return f"(({num}) + {m!r} * ({prior})) / nullif(({den}) + {m!r}, 0)"


def create_shared_rates(con, state: str, attrs: str, population: str, x: date, settings: Settings) -> None:
    """Temp tables of the rates every feature row of ``x`` shares, computed once per build.

    From the state ``state``, the decayed reach rate as a prior: ``prior_overall``,
    ``prior_by_channel`` and ``prior_by_channel_source``, each shrunk toward the level above. From
    the state and the person attributes ``attrs`` ("" when none), the hour-habit profiles of
    ``features.hour_profiles`` (with the habit shapes only when ``settings.hour_choice`` reads
    them). From the population counts ``population``: the reach and conversion rates of the last
    7/30 days, ``recent_rates_overall``, ``recent_rates_by_channel`` and
    ``recent_rates_by_campaign``, and the repeat ratio of each hour bucket (``repeat_ratio_sql``)
    beside the population's hour rates in ``population_hour_rates``.
    """
    m = settings.prior_strength
    X = sql.date_literal(x)

    def prior(parent: str) -> str:
        num, den = (f"sum({c}_hl{{h}}{_EXACT})::DOUBLE" for c in ("dreach", "dattempts"))
        if parent == "":
            return ", ".join(
                f"{num.format(h=h)} / nullif({den.format(h=h)}, 0) AS rate_hl{h}" for h in HALF_LIVES
            )
        return ", ".join(
            f"{shrunk_rate(num.format(h=h), den.format(h=h), f'any_value({parent}.rate_hl{h})', m)}"
            f" AS rate_hl{h}"
            for h in HALF_LIVES
        )

    def recent_rates() -> str:
        return ", ".join(
            f"({sum_if(k, f'date > {X} - {w}')})::DOUBLE"
            f" / nullif({sum_if('n', f'date > {X} - {w}')}, 0) AS {k}_{w}d"
            for w in RECENT_RATE_WINDOWS
            for k in ("reach", "conv")
        )

    def create(name: str, query: str) -> None:
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {query}")

    create("prior_inputs", f"SELECT channel, source, {', '.join(DECAY_COLS)} FROM {state}")
    create("prior_overall", f"SELECT {prior('')} FROM prior_inputs")
    create(
        "prior_by_channel",
        f"""SELECT channel, {prior("prior_overall")}
      FROM prior_inputs CROSS JOIN prior_overall GROUP BY channel""",
    )
    create(
        "prior_by_channel_source",
        f"""SELECT inputs.channel, inputs.source, {prior("prior_by_channel")}
      FROM prior_inputs inputs JOIN prior_by_channel ON prior_by_channel.channel = inputs.channel
      GROUP BY inputs.channel, inputs.source""",
    )
    con.execute("DROP TABLE prior_inputs")
    # Integer sums: exact whatever the thread scheduling.
    own = settings.hour_habit_own_lines
    reach, attempts = (
        {b: habit_count_sql(f"{kind}_hour_{b}", own) for b in BUCKETS} for kind in ("reach", "attempt")
    )
    rates = [f"({reach[b]} / nullif({attempts[b]}, 0))::DOUBLE AS rate_{b}" for b in BUCKETS]
    all_reach, all_attempts = " + ".join(reach.values()), " + ".join(attempts.values())
    rates.append(f"(({all_reach}) / nullif({all_attempts}, 0))::DOUBLE AS rate_all")
    window = f"date <= {X} AND date > {X} - {history.POPULATION_DAYS}"
    create("recent_population_window", f"SELECT * FROM {population} WHERE {window}")
    create(
        "population_hour_rates",
        f"SELECT * FROM (SELECT {', '.join(rates)} FROM {state})"
        f" CROSS JOIN (SELECT {repeat_ratio_sql()} FROM recent_population_window)",
    )
    fit_hour_profiles(con, state, attrs, shapes=settings.hour_choice in ("shape", "curve"), own_lines=own)
    create("recent_rates_overall", f"SELECT {recent_rates()} FROM recent_population_window")
    create(
        "recent_rates_by_channel",
        f"""SELECT channel, {recent_rates()}
      FROM recent_population_window GROUP BY channel""",
    )
    create(
        "recent_rates_by_campaign",
        f"""SELECT campaign_id, {recent_rates()}
      FROM recent_population_window WHERE campaign_id IS NOT NULL GROUP BY campaign_id""",
    )


def repeat_ratio_sql() -> str:
    """``repeat_<bucket>`` of the population counts (``daily_aggregates.population_sql``): the reach
    rate of every try in the bucket over that of first tries there (NULL without both).

    Why: a dialer tries again after a failure, later the same day, and a try that follows a
    failure is answered less whatever the hour (the person is away that day, or screens the
    number). The later buckets hold more of those tries, so their reach rates, and with them the
    habit profiles and shapes fitted on the bucket counts, understate them against the morning.
    Dividing a bucket's rate by this ratio undoes it (``ml.hours``, ``settings.hour_repeat_strength``).
    """
    return ", ".join(
        f"(sum(reach_{b})::DOUBLE / nullif(sum(attempts_{b}), 0))"
        f" / nullif(sum(first_reach_{b})::DOUBLE / nullif(sum(first_attempts_{b}), 0), 0) AS repeat_{b}"
        for b in BUCKETS
    )


# The temp tables of ``create_shared_rates`` (and ``feature_tables.create_day_rates``'s hour curves)
# that feature rows read: what a sharded build computes once (``save_shared_rates``) and every
# shard loads (``load_shared_rates``).
SHARED_RATE_TABLES = (
    "prior_overall", "prior_by_channel", "prior_by_channel_source", "population_hour_rates", "hour_profiles",
    "profile_by_counts", "profile_attributes", "recent_rates_overall", "recent_rates_by_channel",
    "recent_rates_by_campaign", "person_hour_curves",
)  # fmt: skip


def save_shared_rates(con, folder: Path, prefix: str) -> None:
    """Write the shared-rate tables into ``folder`` as ``<prefix><table>.parquet`` (Parquet keeps
    every value and type exactly, so loading them gives the same feature rows)."""
    for name in SHARED_RATE_TABLES:
        target = sql.quote_literal(folder / f"{prefix}{name}.parquet")
        con.execute(f"COPY {name} TO {target} (FORMAT parquet)")


def load_shared_rates(con, folder: Path, prefix: str) -> None:
    """The shared-rate temp tables of ``save_shared_rates``, instead of ``create_shared_rates``."""
    for name in SHARED_RATE_TABLES:
        relation = sql.read_parquet(folder / f"{prefix}{name}.parquet", hive_partitioning="false")
        con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {relation}")
    # rates saved before the repeat ratios existed have none: no correction from them
    for b in BUCKETS:
        con.execute(f"ALTER TABLE population_hour_rates ADD COLUMN IF NOT EXISTS repeat_{b} DOUBLE")


def _person_total_columns(own_lines: bool) -> list[str]:
    """Per-person sums over all addresses of the person (the ``person_totals`` CTE), and
    ``habit_<kind>_hour_<bucket>``, the hour counts the habit profiles were fitted on and are looked
    up by (with ``own_lines`` those of the person's own lines, ``own_line_sql``)."""
    cols = [f"sum({c})::INTEGER AS {c}" for c in COUNT_COLS]
    cols += [f"sum({c}{_EXACT})::DOUBLE AS {c}" for c in DECAY_COLS]
    cols += ["max(last_attempt) AS last_attempt", "max(last_reach) AS last_reach",
             "count(*)::INTEGER AS n_addresses",
             "sum(CASE WHEN live THEN 1 ELSE 0 END)::INTEGER AS n_live",
             "max((first_reach IS NOT NULL AND dormant)::INTEGER)::INTEGER AS came_back",
             "arg_max(last_campaign, {'ts': last_ts, 'c': contact_id}) FILTER (WHERE last_ts IS NOT NULL "
             "AND last_campaign IS NOT NULL) AS last_campaign"]  # fmt: skip
    cols += [
        f"{sum_if('reach_365d', f'channel = {sql.quote_literal(c)}')}::INTEGER AS reach_ch_{c}"
        for c in CHANNELS_FOR_SHARES
    ]
    cols += [f"sum({k}_hour_{b})::INTEGER AS {k}_hour_{b}" for b in BUCKETS for k in ("attempt", "reach")]
    cols += habit_count_columns(own_lines, HABIT_PREFIX + "{kind}_hour_{bucket}")
    cols += ["max(first_seen) AS newest_first_seen"]
    return cols


def _contact_feature_columns(described: str, x: date, m: float) -> list[str]:
    """``f_c_*``, ``f_source``, ``f_channel``: the features of one address (``pair`` is its state row)."""
    X = sql.date_literal(x)
    f = [f"coalesce(pair.{c}, 0)::INTEGER AS f_c_{c}" for c in COUNT_COLS]
    for h in HALF_LIVES:
        levels = ("prior_by_channel_source", "prior_by_channel", "prior_overall")  # the most specific known
        prior = "coalesce(" + ", ".join(f"{level}.rate_hl{h}" for level in levels) + ")"
        rate = shrunk_rate(f"coalesce(pair.dreach_hl{h}, 0)", f"coalesce(pair.dattempts_hl{h}, 0)", prior, m)
        f.append(f"{rate}::FLOAT AS f_c_reach_rate_hl{h}")
        f.append(f"coalesce(pair.dattempts_hl{h}, 0)::FLOAT AS f_c_dattempts_hl{h}")
    for c, name in [("last_attempt", "attempt"), ("last_reach", "reach"), ("last_invalid", "invalid"),
                    ("last_wrong_party", "wrong_party")]:  # fmt: skip
        f.append(f"({X} - pair.{c})::INTEGER AS f_c_days_since_{name}")
    f += [
        "coalesce(pair.streak, 0)::INTEGER AS f_c_fail_streak",
        "coalesce(pair.last_outcome, 'none') AS f_c_last_outcome",
    ]
    f += [f"coalesce(pair.reach_hour_{b}, 0)::INTEGER AS f_c_reach_hour_{b}" for b in BUCKETS]
    f += [f"coalesce(pair.attempt_hour_{b}, 0)::INTEGER AS f_c_attempt_hour_{b}" for b in BUCKETS]
    f += [f"coalesce(pair.{c}, 0)::INTEGER AS f_c_{c}" for c in DOW_COLS]
    f += _superseded_columns()
    f += [f"greatest({X} - coalesce(pair.first_seen, {X}), 0)::INTEGER AS f_c_age_days",
          f"coalesce(pair.source, {described}.source, 'unknown') AS f_source",
          f"{described}.channel AS f_channel"]  # fmt: skip
    return f


def _superseded_columns() -> list[str]:
    """Signs that the address stopped working and the person moved on (``person`` is the person's totals).

    The reference date of an address is its last reach, or its first sighting when it never
    answered. A reach on another address after it, or a newer address of the person, says the
    person may live elsewhere now; a reassigned number answers ``wrong_party`` only now and then,
    so its share of the attempts tells more than the count.
    """
    since = "coalesce(pair.last_reach, pair.first_seen)"
    return [
        f"CASE WHEN person.last_reach > {since} THEN person.last_reach - {since} END::INTEGER"
        " AS f_c_reached_elsewhere_days",
        f"CASE WHEN person.newest_first_seen > {since} THEN person.newest_first_seen - {since} END::INTEGER"
        " AS f_c_newer_address_days",
        "(pair.wrong_party_365d / nullif(pair.attempts_365d, 0))::FLOAT AS f_c_wrong_party_share",
    ]


def _person_and_population_columns(x: date, m: float) -> list[str]:
    """``f_p_*`` (the person over all addresses, ``person``) and ``f_g_*`` (recent population rates)."""
    X = sql.date_literal(x)
    f = [f"coalesce(person.{c}, 0)::INTEGER AS f_p_{c}" for c in COUNT_COLS]
    for h in HALF_LIVES:
        num, den = f"coalesce(person.dreach_hl{h}, 0)", f"coalesce(person.dattempts_hl{h}, 0)"
        f.append(f"{shrunk_rate(num, den, f'prior_overall.rate_hl{h}', m)}::FLOAT AS f_p_reach_rate_hl{h}")
    f += [f"({X} - person.last_attempt)::INTEGER AS f_p_days_since_attempt",
          f"({X} - person.last_reach)::INTEGER AS f_p_days_since_reach",
          "coalesce(person.n_addresses, 0)::INTEGER AS f_p_n_addresses",
          "coalesce(person.n_live, 0)::INTEGER AS f_p_n_live_addresses"]  # fmt: skip
    f += [
        f"(person.reach_ch_{c} / nullif(person.reach_365d, 0))::FLOAT AS f_p_reach_share_{c}"
        for c in CHANNELS_FOR_SHARES
    ]
    f += [
        f"(person.reach_hour_{b} / nullif(person.reach_365d, 0))::FLOAT AS f_p_reach_share_{b}"
        for b in BUCKETS
    ]
    f += [
        f"coalesce(person.{kind}_hour_{b}, 0)::INTEGER AS f_p_{kind}_hour_{b}"
        for b in BUCKETS
        for kind in ("attempt", "reach")
    ]
    f += ["coalesce(person.came_back, 0)::INTEGER AS f_p_came_back"]
    f += [f"population_hour_rates.rate_{b}::FLOAT AS f_g_reach_rate_hour_{b}" for b in BUCKETS]
    f += ["population_hour_rates.rate_all::FLOAT AS f_g_reach_rate_hours"]
    # A person with no state row yet finds no profile row unless attributes take part
    # (``profile_join_sql``): the profiles' mix is its expectation.
    f += [
        f"coalesce(profiles.profile_{b}, profile_mix.rate_{b})::FLOAT AS f_p_hour_profile_{b}"
        for b in BUCKETS
    ]
    f += [f"profiles.shape_{b}::FLOAT AS hour_shape_{b}" for b in BUCKETS]  # NULL: the profile decides
    f += [f"population_hour_rates.repeat_{b}::FLOAT AS hour_repeat_{b}" for b in BUCKETS]  # NULL: none
    for w in RECENT_RATE_WINDOWS:
        f += [f"recent_rates_overall.reach_{w}d::FLOAT AS f_g_reach_rate_{w}d",
              f"recent_rates_overall.conv_{w}d::FLOAT AS f_g_conv_rate_{w}d",
              f"recent_rates_by_channel.reach_{w}d::FLOAT AS f_g_channel_reach_rate_{w}d",
              f"recent_rates_by_channel.conv_{w}d::FLOAT AS f_g_channel_conv_rate_{w}d",
              f"recent_rates_by_campaign.reach_{w}d::FLOAT AS f_g_campaign_reach_rate_{w}d",
              f"recent_rates_by_campaign.conv_{w}d::FLOAT AS f_g_campaign_conv_rate_{w}d"]  # fmt: skip
    return f


def feature_rows_sql(
    con,
    rows: str | None,
    passthrough: list[str],
    state: str,
    attrs: str,
    x: date,
    m: float,
    *,
    own_lines: bool,
    curves: bool = False,
) -> str:
    """Feature rows for the relation ``rows`` (person_id, contact_id, channel, source, ...) at the end of x.

    ``rows`` only chooses which (person, contact, channel) to describe; ``None`` means the
    candidates of ``state`` itself (``is_candidate_sql``), which saves joining the state to itself.
    ``state`` must hold every state row of the persons of ``rows``; the shared rates come from
    ``create_shared_rates``, whose habit profiles were fitted with the same ``own_lines``
    (``settings.hour_habit_own_lines``; no default, so that the two cannot disagree unnoticed: the
    profiles would be looked up by counts they were not fitted on, and most would not be found).
    With ``curves``, each row carries its person's hour curve (``hour_curve_<hour>``, NULL for a
    person without one: ``features.person_curves``).
    """
    described = "described" if rows is not None else "pair"  # the alias the described rows go by
    f = [f"{described}.{c}" for c in passthrough]
    f += [
        "coalesce(pair.last_outcome, 'none') AS last_outcome",
        "coalesce(pair.n_attempts, 0)::BIGINT AS n_attempts",
    ]
    f += _contact_feature_columns(described, x, m)
    f += _person_and_population_columns(x, m)
    if curves:  # read by the hour choice, not by the model (no ``f_`` prefix)
        f += [f"curves.{c}::FLOAT AS hour_{c}" for c in CURVE_COLUMNS]
    if rows is None:
        rows_cte, only_described, from_rows = "", "", "FROM state_rows pair"
    else:
        rows_cte = f"described AS (SELECT * FROM {rows}),\n"
        only_described = "WHERE person_id IN (SELECT person_id FROM described)"
        from_rows = (
            "FROM described\n"
            "LEFT JOIN state_rows pair\n"
            "  ON pair.person_id = described.person_id AND pair.contact_id = described.contact_id"
        )
    profiles_on = profile_join_sql(con, "profiles", "person", attrs, "attrs", HABIT_PREFIX)
    return f"""
WITH state_rows AS NOT MATERIALIZED (SELECT * FROM {state}),  -- re-reading beats copying 80 columns
{rows_cte}person_totals AS (
  SELECT person_id, {", ".join(_person_total_columns(own_lines))} FROM state_rows {only_described}
  GROUP BY person_id
),
profile_mix AS (
  SELECT {", ".join(f"sum(exp(log_weight) * rate_{b}) / sum(exp(log_weight)) AS rate_{b}" for b in BUCKETS)}
  FROM hour_profiles
)
SELECT {("," + chr(10) + "  ").join(f)}{attribute_features_sql(con, attrs, "attrs")}
{from_rows}
LEFT JOIN person_totals person ON person.person_id = {described}.person_id
CROSS JOIN prior_overall
LEFT JOIN prior_by_channel ON prior_by_channel.channel = {described}.channel
LEFT JOIN prior_by_channel_source ON prior_by_channel_source.channel = {described}.channel
  AND prior_by_channel_source.source = coalesce(pair.source, {described}.source, 'unknown')
CROSS JOIN recent_rates_overall
CROSS JOIN population_hour_rates
CROSS JOIN profile_mix
{f"LEFT JOIN {attrs} attrs ON attrs.person_id = {described}.person_id" if attrs else ""}
LEFT JOIN profile_by_counts profiles ON {profiles_on}
LEFT JOIN recent_rates_by_channel ON recent_rates_by_channel.channel = {described}.channel
LEFT JOIN recent_rates_by_campaign ON recent_rates_by_campaign.campaign_id = person.last_campaign
{f"LEFT JOIN person_hour_curves curves ON curves.person_id = {described}.person_id" if curves else ""}
{"WHERE " + is_candidate_sql("pair") if rows is None else ""}
"""


def training_rows_sql(settings: Settings, d: date) -> str:
    """The attempts of d as rows to describe, with their labels; source only for pairs new on d."""
    path = history.attempts_file(settings, d)
    attempts = history.read_file(path) if path is not None else history.EMPTY_ATTEMPTS
    return f"""(SELECT att.attempt_id, att.person_id, att.contact_id, att.channel,
  {sql.date_literal(d)} AS date,
  att.campaign_id, ({KINDS["reach"]})::INT8 AS label_reach, ({KINDS["conv"]})::INT8 AS label_conversion,
  att.local_hour, coalesce(delivered.source, 'attempts') AS source
  FROM {attempts} att LEFT JOIN {history.contacts_state(settings, d)} delivered
    ON delivered.person_id = att.person_id AND delivered.contact_id = att.contact_id)"""
