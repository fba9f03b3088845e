"""Hour-habit profiles: a mixture of per-bucket reach rates fitted to every person's bucket counts,
and each person's expected rate per bucket under the posterior over them (``f_p_hour_profile_*``).

A person's bucket counts are sparse (a handful of attempts spread over five buckets), so one
morning answer says little alone; against a few profiles learned from everyone (e.g. morning,
evening and all-day types, at several levels) it says which type the person probably is.

With so few attempts most posteriors stay close to the prior, so the prior matters: it depends on
the person's categorical attributes (where habits follow age, region or segment, a person with no
history still leans the way their group does). Per attribute value, the profile weights of its
persons, shrunk toward everyone's; a person's prior combines the values they hold as if the
attributes were independent given the profile (naive Bayes): log w_k + sum_a (log w_k|a - log w_k).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from threadpoolctl import threadpool_limits

from contactrank.features import sql
from contactrank.features.daily_aggregates import BUCKETS
from contactrank.features.feature_state import habit_count_columns
from contactrank.features.hour_shapes import (
    LevelsShapes,
    binomial_loglik,
    fit_levels_shapes,
    population_rates,
)

# Four: persons differ in level as much as in shape, and fewer profiles spend themselves on the level.
HOUR_PROFILES = 4
_PROFILE_ROUNDS = 100
_PROFILE_START = (  # (level, morning/midday lean, evening lean) of each profile's starting rates
    (0.3, 1.0, 1.0), (2.0, 1.0, 1.0), (1.0, 1.6, 0.6), (1.0, 0.6, 1.6),
)  # fmt: skip
# Attributes the prior depends on: string columns of at most this many values. More values look
# like identifiers or free text, and each value would hold too few persons to say anything.
MAX_PRIOR_VALUES = 50
# A value's profile weights are shrunk toward everyone's by this many pseudo-persons: the persons
# of a rare value have a few attempts each, and naive Bayes adds up the noise of every attribute.
PRIOR_PSEUDO_PERSONS = 50.0
_PRIOR_ROUNDS = 50
_COUNTS = [f"{k}_{b}" for b in BUCKETS for k in ("attempt", "reach")]


def prior_attributes(con, attrs: str) -> list[str]:
    """The attribute columns of ``attrs`` the prior depends on: strings with 1..MAX_PRIOR_VALUES values."""
    if not attrs:
        return []
    described = con.execute(f"DESCRIBE SELECT * FROM {attrs}").fetchall()
    strings = sorted(name for name, typ, *_ in described if typ == "VARCHAR" and name != "person_id")
    if not strings:
        return []
    distinct = ", ".join(f"count(DISTINCT {sql.quote_ident(name)})" for name in strings)
    counts = con.execute(f"SELECT {distinct} FROM {attrs}").fetchall()[0]
    return [name for name, n in zip(strings, counts, strict=True) if 1 <= n <= MAX_PRIOR_VALUES]


def fit_hour_profiles(con, state: str, attrs: str = "", shapes: bool = True, own_lines: bool = False) -> None:
    """Temp tables ``hour_profiles`` (k, log_weight, rate_<bucket>, ...), habit profiles fitted by EM
    on each person's bucket counts (with ``own_lines`` those of their own lines only,
    ``feature_state.own_line_sql``);
    ``profile_attributes`` (position, name), the attributes the prior depends on; and
    ``profile_by_counts`` (attempt_<bucket>, reach_<bucket>, value_<position>..., profile_<bucket>,
    shape_<bucket>): the expected reach rate of each bucket under the posterior of each distinct
    pair of bucket counts and attribute values (a NULL value: the person has none), and the
    expected shape under the levels x shapes of ``hour_shapes``, with the same kind of prior
    (NULL without ``shapes``: the fit costs as much again as the profiles', for a column only the
    ``shape`` hour choice reads).

    EM runs on the distinct count vectors with their multiplicity (exact, far fewer than persons),
    from a fixed start, so the fit is deterministic; the posterior is computed once per distinct
    pair, and persons find theirs by their counts and values (``profile_join_sql``: a join instead
    of a profile likelihood per person and profile in SQL). With attributes the pairs can come
    close to one per person in a small population; counts and values repeat as it grows.
    """
    names = prior_attributes(con, attrs)
    per_person = ", ".join(habit_count_columns(own_lines, "{kind}_{bucket}"))
    persons = f"(SELECT person_id, {per_person} FROM {state} GROUP BY person_id)"
    if names:
        values = "".join(
            f", CAST(person_attrs.{sql.quote_ident(name)} AS VARCHAR) AS value_{i}"
            for i, name in enumerate(names)
        )
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE profile_counts_by_values AS
          SELECT {", ".join(f"person_counts.{c} AS {c}" for c in _COUNTS)}{values}, count(*)::DOUBLE AS n
          FROM {persons} person_counts
          LEFT JOIN {attrs} person_attrs ON person_attrs.person_id = person_counts.person_id
          GROUP BY ALL ORDER BY ALL"""
        )
        # the same rows (and order) as the query without attributes below: the same profiles
        counts = con.execute(
            f"SELECT {', '.join(_COUNTS)}, sum(n) AS n FROM profile_counts_by_values"
            " GROUP BY ALL ORDER BY ALL"
        ).fetchnumpy()
    else:
        counts = con.execute(
            f"SELECT {', '.join(_COUNTS)}, count(*)::DOUBLE AS n FROM {persons} GROUP BY ALL ORDER BY ALL"
        ).fetchnumpy()
    att, reach = _count_matrices(counts)
    # The products have 4-5 columns: BLAS threads only wait on each other there (3x the CPU time).
    with threadpool_limits(limits=1, user_api="blas"):
        rate, log_weight = _em_profiles(att, reach, np.asarray(counts["n"], float))
        fit = fit_levels_shapes(att, reach, np.asarray(counts["n"], float)) if shapes else None
        if names:
            posterior = _posterior_by_values(con, attrs, names, rate, log_weight, fit)
        else:
            expected = _posterior_rates(att, reach, rate, log_weight)
            shape = fit.expected_shape(att, reach, fit.log_weight) if fit else None
            posterior = _posterior_table(att, reach, {}, expected, shape)
    table = {"k": np.arange(HOUR_PROFILES), "log_weight": log_weight}
    for i, b in enumerate(BUCKETS):
        table[f"rate_{b}"] = rate[:, i]
    _register_table(con, "hour_profiles", pa.table(table))
    described = {"position": pa.array(range(len(names)), pa.int32()), "name": pa.array(names, pa.string())}
    _register_table(con, "profile_attributes", pa.table(described))
    _register_table(con, "profile_by_counts", posterior)
    con.execute("DROP TABLE IF EXISTS profile_counts_by_values")


def profile_join_sql(
    con, profiles: str, person: str, attrs: str, attrs_alias: str, counts_prefix: str = ""
) -> str:
    """The condition that joins a person's row of ``profile_by_counts`` (as ``profiles``): the same
    bucket counts (``person``: the person's totals, whose ``<counts_prefix><kind>_hour_<bucket>``
    the profiles were fitted on) and the same value of every attribute of ``profile_attributes``
    (``attrs_alias``: the person's row of ``attrs``; NULL matches NULL)."""
    names = [
        row[0] for row in con.execute("SELECT name FROM profile_attributes ORDER BY position").fetchall()
    ]
    if not names:
        return " AND ".join(
            f"{profiles}.{k}_{b} = {person}.{counts_prefix}{k}_hour_{b}"
            for b in BUCKETS
            for k in ("attempt", "reach")
        )
    # A person with no state row yet (attempted for the first time) has the zero counts' row of its values.
    same = [
        f"{profiles}.{k}_{b} = coalesce({person}.{counts_prefix}{k}_hour_{b}, 0)"
        for b in BUCKETS
        for k in ("attempt", "reach")
    ]
    have = {row[0] for row in con.execute(f"DESCRIBE SELECT * FROM {attrs}").fetchall()} if attrs else set()
    for i, name in enumerate(names):
        value = f"CAST({attrs_alias}.{sql.quote_ident(name)} AS VARCHAR)" if name in have else "NULL"
        same.append(f"{profiles}.value_{i} IS NOT DISTINCT FROM {value}")
    return " AND ".join(same)


def _count_matrices(counts: dict) -> tuple[np.ndarray, np.ndarray]:
    """(rows x buckets) attempts and reaches of the columns ``attempt_<bucket>``, ``reach_<bucket>``."""
    return tuple(
        np.column_stack([np.asarray(counts[f"{k}_{b}"], float) for b in BUCKETS]).reshape(-1, len(BUCKETS))
        for k in ("attempt", "reach")
    )


def _posterior_table(
    att: np.ndarray, reach: np.ndarray, values: dict, expected: np.ndarray, shape: np.ndarray | None
) -> pa.Table:
    columns = {}
    for i, b in enumerate(BUCKETS):
        columns[f"attempt_{b}"] = pa.array(att[:, i], pa.int32())
        columns[f"reach_{b}"] = pa.array(reach[:, i], pa.int32())
    columns.update(values)
    for i, b in enumerate(BUCKETS):
        columns[f"profile_{b}"] = pa.array(expected[:, i], pa.float32())
    for i, b in enumerate(BUCKETS):
        column = np.full(len(att), np.nan) if shape is None else shape[:, i]
        columns[f"shape_{b}"] = pa.array(column, pa.float32(), from_pandas=True)
    return pa.table(columns)


def _posterior_by_values(
    con,
    attrs: str,
    names: list[str],
    rate: np.ndarray,
    log_weight: np.ndarray,
    shapes: LevelsShapes | None,
) -> pa.Table:
    """``profile_by_counts`` with each row's prior from its attribute values: the rows of
    ``profile_counts_by_values``, then zero counts for every combination of values ``attrs`` holds
    that no person without attempts has (a person attempted before any state row of theirs)."""
    # in count order (count columns first; the connection does not keep the insertion order), so
    # equal count vectors are adjacent and the all-zero one, when there is one, comes first
    seen = con.sql("SELECT * FROM profile_counts_by_values ORDER BY ALL").to_arrow_table()
    value_cols = [f"value_{i}" for i in range(len(names))]
    att, reach = _count_matrices({c: seen[c].to_numpy() for c in _COUNTS})
    key = np.hstack([att, reach])
    new_vector = np.r_[True, (key[1:] != key[:-1]).any(axis=1)] if len(key) else np.ones(0, bool)
    vector_of_row, vectors = np.cumsum(new_vector) - 1, key[new_vector]
    with_zero = len(vectors) > 0 and not vectors[0].any()
    zero_seen = set(zip(*(seen[c][: int((vector_of_row == 0).sum()) if with_zero else 0].to_pylist()
                          for c in value_cols), strict=True))  # fmt: skip
    picked = ", ".join(f"CAST({sql.quote_ident(name)} AS VARCHAR)" for name in names)
    nothing = ", ".join("NULL::VARCHAR" for _ in names)
    held = con.execute(
        f"SELECT DISTINCT {picked} FROM {attrs} UNION SELECT {nothing} ORDER BY ALL"
    ).fetchall()
    extra = [values for values in held if tuple(values) not in zero_seen]
    if extra and not with_zero:
        vectors = np.vstack([np.zeros((1, key.shape[1])), vectors])
        vector_of_row += 1
    vector_of_row = np.concatenate([vector_of_row, np.zeros(len(extra), vector_of_row.dtype)])
    att = np.vstack([att, np.zeros((len(extra), len(BUCKETS)))])
    reach = np.vstack([reach, np.zeros((len(extra), len(BUCKETS)))])
    n = np.concatenate([seen["n"].to_numpy(), np.zeros(len(extra))])
    values = {
        c: pa.concat_arrays([seen[c].combine_chunks(), pa.array([v[i] for v in extra], pa.string())])
        for i, c in enumerate(value_cols)
    }
    codes, sizes = value_codes(list(values.values()))
    vector_att, vector_reach = vectors[:, : len(BUCKETS)], vectors[:, len(BUCKETS) :]
    by_value = _weights_by_value(
        binomial_loglik(vector_att, vector_reach, rate), vector_of_row, codes, n, log_weight, sizes
    )
    expected = _posterior_rates(att, reach, rate, log_prior(codes, log_weight, by_value))
    shape = None
    if shapes is not None:
        by_value = _weights_by_value(
            shapes.loglik(vector_att, vector_reach), vector_of_row, codes, n, shapes.log_weight, sizes
        )
        shape = shapes.expected_shape(att, reach, log_prior(codes, shapes.log_weight, by_value))
    return _posterior_table(att, reach, values, expected, shape)


def values_of(column: pa.Array) -> list[str]:
    """An attribute's sorted distinct values: the order ``value_codes`` indexes them in."""
    return sorted(pc.unique(column).drop_null().to_pylist())


def value_codes(columns: list[pa.Array]) -> tuple[np.ndarray, list[int]]:
    """(rows x attributes) index of each row's value among the attribute's sorted values (-1: none),
    and the number of values of each attribute."""
    codes, sizes = np.full((len(columns[0]), len(columns)), -1, dtype=np.int64), []
    for a, column in enumerate(columns):
        vocabulary = pa.array(values_of(column), pa.string())
        codes[:, a] = pc.index_in(column, value_set=vocabulary).fill_null(-1).to_numpy()
        sizes.append(len(vocabulary))
    return codes, sizes


def log_prior(codes: np.ndarray, log_weight: np.ndarray, by_value: list[np.ndarray]) -> np.ndarray:
    """(rows x profiles) log prior of each row: everyone's weights, moved by each value it holds."""
    out = np.tile(log_weight, (len(codes), 1))
    for a, weights in enumerate(by_value):
        known = codes[:, a] >= 0
        out[known] += np.log(weights[codes[known, a]]) - log_weight
    return out


def _weights_by_value(
    loglik: np.ndarray,
    vector_of_row: np.ndarray,
    codes: np.ndarray,
    n: np.ndarray,
    log_weight: np.ndarray,
    sizes: list[int],
) -> list[np.ndarray]:
    """Per attribute, (values x profiles) weights: EM over the weights of each value with the
    profiles' rates fixed (``loglik``: count vectors x profiles; ``vector_of_row``, ``codes``, ``n``:
    each row's count vector, values and persons), each value's the mean posterior of its persons
    shrunk toward everyone's by PRIOR_PSEUDO_PERSONS.

    Each attribute is fitted alone: fitted under the combined prior, every attribute would count
    the others' pull again, and the weights run away to one profile. Alone, it needs only the
    distinct pairs of count vector and value of that attribute, far fewer than the rows."""
    weight, alpha = np.exp(log_weight), PRIOR_PSEUDO_PERSONS
    out = []
    for a, size in enumerate(sizes):
        known = codes[:, a] >= 0
        pairs, pair_of_row = np.unique(vector_of_row[known] * size + codes[known, a], return_inverse=True)
        persons = np.bincount(pair_of_row.reshape(-1), n[known], len(pairs))
        # profiles x pairs: the reductions over the few profiles run along long rows
        pair_loglik, code = np.ascontiguousarray(loglik[pairs // size].T), pairs % size
        in_value = np.bincount(code, persons, size)
        by_value = np.tile(weight, (size, 1))
        for _ in range(_PRIOR_ROUNDS):
            ll = pair_loglik + np.log(by_value).T[:, code]
            post = np.exp(ll - ll.max(axis=0))
            post *= persons / post.sum(axis=0)
            sums = np.column_stack([np.bincount(code, post[k], size) for k in range(len(weight))])
            by_value = (sums + alpha * weight) / (in_value + alpha)[:, None]
        out.append(by_value)
    return out


def _posterior_rates(
    att: np.ndarray, reach: np.ndarray, rate: np.ndarray, log_prior: np.ndarray
) -> np.ndarray:
    """(rows x buckets) expected rates of each count vector under its posterior over the profiles
    (``log_prior``: one row for all, or one per count vector)."""
    ll = binomial_loglik(att, reach, rate) + log_prior
    w = np.exp(ll - ll.max(axis=1, keepdims=True)) if len(ll) else ll
    return (w @ rate) / w.sum(axis=1, keepdims=True)


def _register_table(con, name: str, table: pa.Table) -> None:
    con.register(f"{name}_arrow", table)
    con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS SELECT * FROM {name}_arrow")
    con.unregister(f"{name}_arrow")


def _em_profiles(att: np.ndarray, reach: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Binomial mixture over buckets: (profiles x buckets) rates and log weights of the profiles."""
    overall = population_rates(att, reach, n)
    early = np.array([1.0 if r is not None and r[1] <= 14 else 0.0 for r in BUCKETS.values()])
    late = np.array([1.0 if r is not None and r[0] >= 18 else 0.0 for r in BUCKETS.values()])
    rate = np.array([lvl * overall * np.where(early > 0, e, 1.0) * np.where(late > 0, v, 1.0)
                     for lvl, e, v in _PROFILE_START])  # fmt: skip
    rate = np.clip(rate, 1e-3, 0.95)
    weight = np.full(HOUR_PROFILES, 1.0 / HOUR_PROFILES)
    if n.sum() == 0:  # no history yet: the starting profiles, equally likely
        return rate, np.log(weight)
    # One product per round each way: outcomes (reaches | misses) and counts (reaches | attempts).
    outcomes, counts, buckets = np.hstack([reach, att - reach]), np.hstack([reach, att]), len(BUCKETS)
    for _ in range(_PROFILE_ROUNDS):
        ll = outcomes @ np.vstack([np.log(rate).T, np.log1p(-rate).T]) + np.log(weight)
        post = np.exp(ll - ll.max(axis=1, keepdims=True))
        post *= (n / post.sum(axis=1))[:, None]
        sums = post.T @ counts
        # One pseudo-person at the population rates keeps a bucket no one was tried in defined.
        rate = np.clip((sums[:, :buckets] + overall) / (sums[:, buckets:] + 1.0), 1e-3, 0.95)
        weight = post.sum(axis=0) / n.sum()
    return rate, np.log(np.maximum(weight, 1e-12))
