"""Exploration: epsilon-greedy promotion of untested addresses, with exact propensities.

Policy, per person and independently of everyone else:

1. The greedy order is the model's: valid addresses before ``invalid`` ones (when they are kept),
   then score descending, then the raw model output descending (a stepwise calibrator makes
   ties), then ``contact_id`` ascending. The greedy top ``g`` is the exploit choice.
2. The person's *explorable* addresses ``U`` are the other valid addresses with at most
   ``settings.explore_max_attempts`` attempts ever (``n_attempts``) whose score is at least
   ``settings.explore_min_score_ratio`` times the score of ``g``. An untested address the model
   already rates far below ``g`` is rarely the best one, and promoting it costs the most: the
   plausible ones carry most of what exploring can teach at a fraction of the price.
3. If ``U`` is not empty, with probability ``eps = settings.explore_share`` one address of ``U``,
   drawn uniformly, is promoted to rank 1 (``explore=True``, reason ``explore``); ``g`` becomes
   rank 2 and the rest keep the greedy order. Otherwise ``g`` is rank 1.

So ``eps`` is the share of the persons that have something to explore. Propensity of a row = the
probability that this policy puts it at rank 1: ``1 - eps`` for ``g`` when ``U`` is not empty (``1``
otherwise), ``eps / |U|`` for each address of ``U``, ``0`` for every other row. They are exact, and
in (0, 1] for every rank-1 row.

Both random draws of a person are uniform numbers derived from a keyed hash of
(``settings.seed``, D, ``person_id``): the same inputs give the same file whatever the batch order,
population or machine, and one person's draw does not depend on anyone else's.

Epsilon-greedy rather than Thompson sampling: its propensities are exact (no Monte-Carlo), which
keeps the off-policy estimates of ml/policy_eval.py unbiased.
"""

from __future__ import annotations

import hashlib
from datetime import date

import numpy as np
import pandas as pd

from contactrank.settings import Settings

EXPLORE_REASON = "explore"
HOUR_EXPLORE_REASON = "explore_hour"


def uniform(keys: pd.Series | np.ndarray, seed: int, d: date, salt: str) -> np.ndarray:
    """A deterministic uniform [0, 1) number per key, from a hash keyed by (seed, date, salt)."""
    key = hashlib.sha256(f"{seed}|{d.isoformat()}|{salt}".encode()).hexdigest()[:16]
    h = pd.util.hash_array(np.asarray(keys, dtype=object), hash_key=key, categorize=False)
    return (h >> np.uint64(11)).astype(np.float64) / float(2**53)


# Long on purpose: the exploration policy and its propensities are one computation; split, they drift apart.
def apply(frame: pd.DataFrame, settings: Settings, d: date) -> pd.DataFrame:
    """Rank the rows of each person and apply the exploration policy.

    ``frame`` needs ``person_id, contact_id, score, reason, _invalid, _n_attempts``. Returns it
    sorted by (person_id, rank) with ``rank, explore, propensity, _greedy_rank`` set and
    ``reason`` replaced by ``explore`` on promoted rows.
    """
    eps = float(settings.explore_share)
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"setting 'explore_share' must be in [0, 1): {eps}")
    ratio = float(settings.explore_min_score_ratio)
    if not 0.0 <= ratio <= 1.0:
        raise ValueError(f"setting 'explore_min_score_ratio' must be in [0, 1]: {ratio}")
    keys, ascending = ["person_id", "_invalid", "score", "contact_id"], [True, True, False, True]
    if "_raw" in frame.columns:  # the uncalibrated output breaks the ties of a stepwise calibrator
        keys, ascending = (
            ["person_id", "_invalid", "score", "_raw", "contact_id"],
            [True, True, False, False, True],
        )
    df = frame.sort_values(keys, ascending=ascending, kind="stable").reset_index(drop=True)
    n = len(df)
    if n == 0:
        return df.assign(
            rank=pd.Series(dtype="int32"),
            explore=pd.Series(dtype="bool"),
            propensity=pd.Series(dtype="float64"),
            _greedy_rank=pd.Series(dtype="int32"),
            _greedy_hour=pd.Series(dtype="int32"),
            _hour_explore=pd.Series(dtype="bool"),
            _hour_propensity=pd.Series(dtype="float64"),
        )
    person = df["person_id"].to_numpy()
    greedy_rank = (df.groupby("person_id", sort=False).cumcount() + 1).to_numpy()
    start = np.flatnonzero(greedy_rank == 1)  # first row of each person
    person_idx = np.cumsum(greedy_rank == 1) - 1  # 0..n_persons-1 per row
    score = df["score"].to_numpy(dtype=np.float64)
    explorable = (
        (greedy_rank > 1)
        & ~df["_invalid"].to_numpy(dtype=bool)
        & (df["_n_attempts"].fillna(0).to_numpy() <= settings.explore_max_attempts)
        & (score >= ratio * score[start][person_idx])
    )
    k = np.bincount(person_idx, weights=explorable, minlength=len(start)).astype(np.int64)

    persons = person[start]
    u_explore = uniform(persons, settings.seed, d, "explore")
    u_pick = uniform(persons, settings.seed, d, "pick")
    explores = (k > 0) & (u_explore < eps)
    pick = np.minimum((u_pick * np.maximum(k, 1)).astype(np.int64), np.maximum(k - 1, 0))  # 0-based among U

    # Position of each explorable row among its person's explorable rows, in contact_id order.
    order_key = df.loc[explorable, ["person_id", "contact_id"]]
    pos = np.full(n, -1, dtype=np.int64)
    pos[np.flatnonzero(explorable)] = (
        order_key.sort_values(["person_id", "contact_id"])
        .groupby("person_id", sort=False)
        .cumcount()
        .reindex(order_key.index)
        .to_numpy()
    )
    chosen = explorable & explores[person_idx] & (pos == pick[person_idx])
    person_explores = explores[person_idx]

    rank = greedy_rank.copy()
    # In an exploring person: the chosen row goes to 1, rows greedily above it move down by one.
    chosen_greedy = np.zeros(len(start), dtype=np.int64)
    chosen_greedy[person_idx[chosen]] = greedy_rank[chosen]
    shift = person_explores & (greedy_rank < chosen_greedy[person_idx])
    rank[shift] += 1
    rank[chosen] = 1

    k_row = k[person_idx]
    propensity = np.zeros(n, dtype=np.float64)
    top = greedy_rank == 1
    propensity[top] = np.where(k_row[top] > 0, 1.0 - eps, 1.0)
    propensity[explorable] = eps / k_row[explorable]

    out = df.assign(
        rank=rank.astype("int32"),
        explore=chosen,
        propensity=propensity,
        _greedy_rank=greedy_rank.astype("int32"),
    )
    out.loc[chosen, "reason"] = EXPLORE_REASON
    out = _explore_hours(out, uniform(persons, settings.seed, d, "hour")[person_idx], eps)
    return out.sort_values(["person_id", "rank"], kind="stable").reset_index(drop=True)


def _explore_hours(out: pd.DataFrame, u_hour: np.ndarray, eps: float) -> pd.DataFrame:
    """Hour exploration of the rank-1 rows: with probability ``eps`` the row takes the less-tried
    hour drawn for it by scoring (``_explore_hour``, ``_explore_score``; ``_hour_k`` such hours).

    ``_hour_propensity`` = probability of the recommended hour given the address: ``eps / k`` for
    an explored hour, ``1 - eps`` for the greedy hour when ``k > 0``, else 1. Independent of the
    address draw, so ``propensity`` (the address's) keeps its meaning.
    """
    n = len(out)
    greedy_hour = out["best_hour"].to_numpy().copy() if "best_hour" in out else np.zeros(n, dtype=np.int32)
    if "_hour_k" not in out.columns:
        return out.assign(_greedy_hour=greedy_hour, _hour_explore=False, _hour_propensity=1.0)
    k = out["_hour_k"].to_numpy()
    top = out["rank"].to_numpy() == 1
    explores = top & (k > 0) & (u_hour < eps)
    prop = np.ones(n, dtype=np.float64)
    prop[top & (k > 0)] = 1.0 - eps
    prop[explores] = eps / np.maximum(k[explores], 1)
    out = out.assign(
        best_hour=np.where(explores, out["_explore_hour"].to_numpy(), greedy_hour).astype("int32"),
        score=np.where(explores, out["_explore_score"].to_numpy(), out["score"].to_numpy()),
        _greedy_hour=greedy_hour,
        _hour_explore=explores,
        _hour_propensity=prop,
    )
    out.loc[explores & ~out["explore"].to_numpy(), "reason"] = HOUR_EXPLORE_REASON
    return out
