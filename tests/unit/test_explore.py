"""Exploration policy: determinism for (seed, date), share, exact propensities, ranking."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from contactrank.ml import explore

D = date(2026, 11, 20)


def population(n_persons: int, seed: int = 1) -> pd.DataFrame:
    """Each person: one tested address (best score) + 0..3 others, some untested."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_persons):
        pid = f"P{i:06d}"
        rows.append((pid, f"{pid}-a", 0.9, False, 10))
        for j in range(int(rng.integers(0, 4))):
            rows.append((pid, f"{pid}-{'bcd'[j]}", float(rng.random()) * 0.5, False, int(rng.integers(0, 5))))
    return pd.DataFrame(rows, columns=["person_id", "contact_id", "score", "_invalid", "_n_attempts"]).assign(
        reason="recent_success"
    )


def test_deterministic_for_seed_and_date_and_independent_of_row_order(settings):
    pop = population(3000)
    a = explore.apply(pop, settings, D)
    b = explore.apply(pop.sample(frac=1.0, random_state=3), settings, D)
    pd.testing.assert_frame_equal(a, b)
    c = explore.apply(pop, settings, D + timedelta(days=1))
    d = explore.apply(pop, settings.replace(seed=7), D)
    assert not a.explore.equals(c.explore) and not a.explore.equals(d.explore)
    # one person's draw does not depend on who else is in the file
    sub = explore.apply(pop[pop.person_id < "P001000"], settings, D)
    pd.testing.assert_frame_equal(sub, a[a.person_id < "P001000"].reset_index(drop=True))


def test_share_of_exploring_persons_matches_the_setting(settings):
    pop = population(20000)
    s = settings.replace(explore_share=0.1, explore_min_score_ratio=0.0)
    out = explore.apply(pop, s, D)
    eligible = out[(out._greedy_rank > 1) & (out._n_attempts <= s.explore_max_attempts)].person_id.nunique()
    explored = out[out.explore]
    share = explored.person_id.nunique() / eligible
    assert abs(share - 0.1) < 4 * np.sqrt(0.1 * 0.9 / eligible)
    assert (explored["rank"] == 1).all() and (explored.reason == "explore").all()
    assert (explored._n_attempts <= s.explore_max_attempts).all() and (explored._greedy_rank > 1).all()
    assert explored.person_id.is_unique


def test_propensities_are_exact_probabilities(settings):
    pop = population(250, seed=5)
    s = settings.replace(explore_share=0.3, explore_min_score_ratio=0.0)
    first = explore.apply(pop, s, D)
    top = first[first["rank"] == 1]
    assert ((top.propensity > 0) & (top.propensity <= 1)).all()
    # per person the propensities of all rows sum to 1 (some address is always rank 1)
    assert np.allclose(first.groupby("person_id").propensity.sum(), 1.0)
    # over many dates each address is rank 1 about as often as its propensity says
    counts = pd.Series(0.0, index=pd.MultiIndex.from_frame(first[["person_id", "contact_id"]]))
    days = 200
    for k in range(days):
        out = explore.apply(pop, s, D + timedelta(days=k))
        idx = pd.MultiIndex.from_frame(out.loc[out["rank"] == 1, ["person_id", "contact_id"]])
        counts.loc[idx] += 1
    prop = first.set_index(["person_id", "contact_id"]).propensity.reindex(counts.index)
    freq = counts / days
    se = np.sqrt(prop * (1 - prop) / days)
    assert (np.abs(freq - prop) <= 5 * se + 1e-9).all()
    assert ((prop == 0) == (counts == 0)).all()


def test_rank_moves_the_greedy_top_to_second_when_exploring(settings):
    pop = pd.DataFrame(
        {
            "person_id": ["p"] * 4,
            "contact_id": ["a", "b", "c", "d"],
            "score": [0.9, 0.5, 0.4, 0.1],
            "_invalid": [False, False, False, True],
            "_n_attempts": [9, 9, 0, 0],  # c is explorable; d is untested but invalid: never explored
            "reason": ["x"] * 4,
        }
    )
    s = settings.replace(explore_share=0.999, explore_min_score_ratio=0.0)
    out = explore.apply(pop, s, D).set_index("contact_id")
    assert list(out.sort_values("rank").index) == ["c", "a", "b", "d"]
    assert out.loc["c", "explore"] and out.loc["c", "reason"] == "explore"
    assert out.loc["a", "propensity"] == 1 - 0.999 and out.loc["c", "propensity"] == 0.999
    assert out.loc["b", "propensity"] == 0 and out.loc["d", "propensity"] == 0
    none = explore.apply(pop, settings.replace(explore_share=0.0), D).set_index("contact_id")
    assert list(none.sort_values("rank").index) == ["a", "b", "c", "d"] and none.loc["a", "propensity"] == 1.0


def test_only_an_untested_address_rated_near_the_top_is_explored(settings):
    # b is rated at 0.6 of the top, c at 0.3: with the ratio 0.5 only b may take rank 1
    pop = pd.DataFrame(
        {
            "person_id": ["p"] * 3,
            "contact_id": ["a", "b", "c"],
            "score": [0.5, 0.3, 0.15],
            "_invalid": [False] * 3,
            "_n_attempts": [9, 0, 0],
            "reason": ["x"] * 3,
        }
    )
    s = settings.replace(explore_share=0.999, explore_min_score_ratio=0.5)
    out = explore.apply(pop, s, D).set_index("contact_id")
    assert out.loc["b", "explore"] and out.loc["b", "propensity"] == 0.999
    assert out.loc["c", "propensity"] == 0 and out.loc["a", "propensity"] == 1 - 0.999
    assert np.isclose(out.propensity.sum(), 1.0)
    every = explore.apply(pop, s.replace(explore_min_score_ratio=0.0), D).set_index("contact_id")
    assert every.loc["b", "propensity"] == every.loc["c", "propensity"] == 0.999 / 2
    # nothing plausible to explore: the greedy top keeps rank 1 with certainty
    alone = explore.apply(pop[pop.contact_id != "b"], s, D).set_index("contact_id")
    assert alone.loc["a", "rank"] == 1 and alone.loc["a", "propensity"] == 1.0 and not alone.explore.any()


def test_person_without_untested_address_keeps_propensity_one(settings):
    pop = pd.DataFrame(
        {
            "person_id": ["p", "p"],
            "contact_id": ["a", "b"],
            "score": [0.2, 0.3],
            "_invalid": [False, False],
            "_n_attempts": [5, 5],
            "reason": ["x", "y"],
        }
    )
    out = explore.apply(pop, settings.replace(explore_share=0.5), D)
    assert list(out.contact_id) == ["b", "a"] and list(out.propensity) == [1.0, 0.0] and not out.explore.any()


def with_hours(pop: pd.DataFrame, seed: int = 3) -> pd.DataFrame:
    """Scoring's hour columns: a greedy hour, ``_hour_k`` less-tried hours, the drawn one and its score."""
    rng = np.random.default_rng(seed)
    n = len(pop)
    return pop.assign(
        best_hour=np.full(n, 19, dtype="int32"),
        _hour_k=rng.integers(0, 4, n),
        _explore_hour=np.full(n, 9, dtype="int32"),
        _explore_score=np.full(n, 0.123),
    )


def test_hour_exploration_share_propensities_and_log(settings):
    s = settings.replace(explore_share=0.2)
    out = explore.apply(with_hours(population(20000)), s, D)
    top = out[out["rank"] == 1]
    can = top[top._hour_k > 0]
    share = can._hour_explore.mean()
    assert abs(share - 0.2) < 4 * np.sqrt(0.2 * 0.8 / len(can))
    assert not out[out["rank"] > 1]._hour_explore.any() and not top[top._hour_k == 0]._hour_explore.any()
    explored = top[top._hour_explore]
    assert (explored.best_hour == 9).all() and (explored.score == 0.123).all()
    assert (explored._greedy_hour == 19).all()
    assert (explored.reason[~explored.explore] == explore.HOUR_EXPLORE_REASON).all()
    np.testing.assert_allclose(explored._hour_propensity, 0.2 / explored._hour_k)
    kept = can[~can._hour_explore]
    assert (kept.best_hour == 19).all() and np.allclose(kept._hour_propensity, 0.8)
    assert (top[top._hour_k == 0]._hour_propensity == 1.0).all()
    # the address policy and its propensities do not depend on the hour draw
    plain = explore.apply(population(20000), s, D)
    pd.testing.assert_series_equal(plain.propensity, out.propensity)
    pd.testing.assert_series_equal(plain.contact_id, out.contact_id)


def test_without_hour_columns_nothing_changes_hours(settings):
    out = explore.apply(population(500).assign(best_hour=np.int32(10)), settings, D)
    assert not out._hour_explore.any() and (out._hour_propensity == 1.0).all() and (out.best_hour == 10).all()
