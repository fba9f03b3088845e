"""Levels x shapes: learned across levels, so a rarely reached person's few answers say when."""

from __future__ import annotations

import duckdb
import numpy as np
import pandas as pd

from contactrank.features.daily_aggregates import BUCKETS
from contactrank.features.hour_profiles import fit_hour_profiles, profile_join_sql
from contactrank.features.hour_shapes import fit_levels_shapes

NAMES = list(BUCKETS)
MORNING, EVENING = NAMES.index("morning"), NAMES.index("evening")


def population(seed: int = 5, n: int = 6000) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Persons of three levels (0.05, 0.2, 0.5 at their best) and two habits (morning, evening:
    their best bucket three times the others), eight attempts each at random day buckets."""
    rng = np.random.default_rng(seed)
    level = rng.choice([0.05, 0.2, 0.5], n)
    evening = rng.random(n) < 0.5
    shape = np.full((n, len(NAMES)), 1 / 3)
    shape[:, NAMES.index("night")] = 0.0
    shape[np.arange(n), np.where(evening, EVENING, MORNING)] = 1.0
    day = [NAMES.index(b) for b in ("morning", "midday", "afternoon", "evening")]
    att = np.zeros((n, len(NAMES)))
    np.add.at(att, (np.repeat(np.arange(n), 8), rng.choice(day, n * 8)), 1)
    reach = rng.binomial(att.astype(int), level[:, None] * shape).astype(float)
    return att, reach, evening


def test_a_rarely_reached_persons_one_evening_answer_says_evening():
    att, reach, _ = population()
    fit = fit_levels_shapes(att, reach, np.ones(len(att)))
    # each learned shape leans one way or the other, whatever the level
    relative = fit.shape[:, [MORNING, EVENING]]
    assert (np.abs(np.log(relative[:, 0] / relative[:, 1])) > 0.5).sum() >= 2
    # eight attempts, two in each day bucket, one answer, in the evening
    one = np.zeros((1, len(NAMES)))
    for b in ("morning", "midday", "afternoon", "evening"):
        one[0, NAMES.index(b)] = 2
    answered = one * 0
    answered[0, EVENING] = 1
    shape = fit.expected_shape(one, answered, fit.log_weight)
    assert shape[0, EVENING] > 1.2 * shape[0, MORNING]


def _world_by_age(n: int = 4000, attempts: int = 8) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """A state and attributes where both the habit and the level follow the age band: the young
    answer rarely and in the evening, the old often and in the morning, the middle-aged either
    way or at midday; each person's best bucket twice the others."""
    rng = np.random.default_rng(5)
    age = rng.choice(["young", "middle", "old"], n)
    evening = pd.Series(age).map({"young": 0.7, "middle": 0.35, "old": 0.1}).to_numpy()
    morning = pd.Series(age).map({"young": 0.1, "middle": 0.35, "old": 0.7}).to_numpy()
    u = rng.random(n)
    habit = np.where(u < evening, EVENING, np.where(u < evening + morning, MORNING, NAMES.index("midday")))
    level = pd.Series(age).map({"young": 0.08, "middle": 0.2, "old": 0.4}).to_numpy() * rng.choice(
        [0.5, 1, 2], n
    )
    shape = np.full((n, len(NAMES)), 0.5)
    shape[:, NAMES.index("night")] = 0.0
    shape[np.arange(n), habit] = 1.0
    att = np.zeros((n, len(NAMES)))
    np.add.at(att, (np.repeat(np.arange(n), attempts), rng.choice(4, n * attempts)), 1)
    reach = rng.binomial(att.astype(int), np.clip(level[:, None] * shape, 0, 0.95))
    state = pd.DataFrame({"person_id": [f"p{i}" for i in range(n)]})
    for j, b in enumerate(NAMES):
        state[f"attempt_hour_{b}"], state[f"reach_hour_{b}"] = att[:, j].astype(int), reach[:, j]
    return state, pd.DataFrame({"person_id": state["person_id"], "age_band": age}), habit


def test_where_habit_and_level_follow_an_attribute_the_shape_finds_the_habit_more_often():
    state, attrs, habit = _world_by_age()
    con = duckdb.connect()
    con.register("state_df", state)
    con.execute("CREATE TABLE state AS SELECT * FROM state_df")
    con.register("attrs_df", attrs)
    con.execute("CREATE TABLE attrs AS SELECT * FROM attrs_df")
    fit_hour_profiles(con, "state", "attrs")
    same = profile_join_sql(con, "profiles", "person", "attrs", "person_attrs")
    day = NAMES[:4]  # every bucket but the night, where nobody was tried
    picked = ", ".join(f"profiles.profile_{b}, profiles.shape_{b}" for b in day)
    rows = (
        con.sql(
            f"""SELECT person.person_id, {picked} FROM state person
        JOIN attrs person_attrs ON person_attrs.person_id = person.person_id
        JOIN profile_by_counts profiles ON {same}"""
        )
        .df()
        .set_index("person_id")
        .loc[state["person_id"]]
    )
    profile = rows[[f"profile_{b}" for b in day]].to_numpy().argmax(axis=1)
    shape = rows[[f"shape_{b}" for b in day]].to_numpy().argmax(axis=1)
    # the free profiles read the age band as a level; the shapes read it as a habit
    assert (shape == habit).mean() > (profile == habit).mean() + 0.05, (
        (shape == habit).mean(),
        (profile == habit).mean(),
    )


def test_a_bucket_nobody_was_tried_in_has_no_shape_and_the_fit_is_deterministic():
    att, reach, _ = population(n=800)
    first = fit_levels_shapes(att, reach, np.ones(len(att)))
    again = fit_levels_shapes(att, reach, np.ones(len(att)))
    assert np.array_equal(first.shape, again.shape) and np.array_equal(first.log_weight, again.log_weight)
    shape = first.expected_shape(att, reach, first.log_weight)
    assert np.isnan(shape[:, NAMES.index("night")]).all()
    assert np.isfinite(np.delete(shape, NAMES.index("night"), axis=1)).all()
    # nothing tried anywhere: no shape at all
    none = fit_levels_shapes(att * 0, reach * 0, np.ones(len(att)))
    assert np.isnan(none.expected_shape(att[:3] * 0, reach[:3] * 0, none.log_weight)).all()


def test_without_shapes_the_profiles_are_the_same_and_the_shapes_null():
    state, attrs, _ = _world_by_age(n=600)
    tables = []
    for shapes in (True, False):
        con = duckdb.connect()
        con.register("state_df", state)
        con.execute("CREATE TABLE state AS SELECT * FROM state_df")
        con.register("attrs_df", attrs)
        con.execute("CREATE TABLE attrs AS SELECT * FROM attrs_df")
        fit_hour_profiles(con, "state", "attrs", shapes=shapes)
        tables.append(con.sql("SELECT * FROM profile_by_counts ORDER BY ALL").df())
    with_shapes, without = tables
    shape_cols = [f"shape_{b}" for b in NAMES]
    assert without[shape_cols].isna().all().all() and with_shapes[shape_cols[0]].notna().all()
    pd.testing.assert_frame_equal(
        with_shapes.drop(columns=shape_cols).sort_values(list(without.columns[:10])).reset_index(drop=True),
        without.drop(columns=shape_cols).sort_values(list(without.columns[:10])).reset_index(drop=True),
        check_exact=True,
    )
