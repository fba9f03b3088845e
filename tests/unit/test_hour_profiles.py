"""The habit-profile prior by person attributes: persons with little history follow their group."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import duckdb
import pandas as pd
import pyarrow as pa
import pytest

from contactrank.features.build import build_features, load_features, load_training
from contactrank.features.daily_aggregates import BUCKETS
from contactrank.features.feature_rows import HABIT_PREFIX
from contactrank.features.feature_state import habit_count_columns, own_line_sql
from contactrank.features.hour_profiles import MAX_PRIOR_VALUES, fit_hour_profiles, profile_join_sql
from contactrank.features.lake import write_partition
from contactrank.features.schema import ATTEMPTS, CONTACTS_STATE
from contactrank.settings import Settings

GROUP = 150  # persons with history per group
# person -> group; the first four have no attempt or one missed midday attempt
NEWCOMERS = {"e_new": "evening", "e_one": "evening", "m_new": "morning", "m_one": "morning"}


def _counts(morning: tuple[int, int], evening: tuple[int, int], midday: tuple[int, int] = (0, 0)) -> dict:
    out = {f"{k}_hour_{b}": 0 for b in BUCKETS for k in ("attempt", "reach")}
    for b, (attempts, reaches) in (("morning", morning), ("evening", evening), ("midday", midday)):
        out[f"attempt_hour_{b}"], out[f"reach_hour_{b}"] = attempts, reaches
    return out


def _state() -> pd.DataFrame:
    """Evening persons answer in the evening (2-4 of 4), morning persons in the morning; four
    newcomers; ``nobody`` has no attributes row."""
    rows = []
    for i in range(GROUP):
        rows.append({"person_id": f"e{i}", **_counts((4, 0), (4, 2 + i % 3))})
        rows.append({"person_id": f"m{i}", **_counts((4, 2 + i % 3), (4, 0))})
    for person in NEWCOMERS:
        rows.append(
            {"person_id": person, **_counts((0, 0), (0, 0), (1, 0) if person.endswith("one") else (0, 0))}
        )
    rows.append({"person_id": "nobody", **_counts((0, 0), (0, 0))})
    return pd.DataFrame(rows)


def _attrs(name: str = "age_band", evening: str = "young", morning: str = "old") -> pd.DataFrame:
    persons = [p for p in _state()["person_id"] if p != "nobody"]
    group = {p: NEWCOMERS.get(p, "evening" if p.startswith("e") else "morning") for p in persons}
    return pd.DataFrame(
        {"person_id": persons, name: [evening if group[p] == "evening" else morning for p in persons],
         "balance": [float(i) for i in range(len(persons))]}  # numbers never take part
    )  # fmt: skip


def _connect(attrs: pd.DataFrame | None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order=false")  # as features.lake.duckdb_connect
    con.register("state_df", _state())
    con.execute("CREATE TABLE state AS SELECT * FROM state_df")
    if attrs is not None:
        con.register("attrs_df", attrs)
        con.execute("CREATE TABLE attrs AS SELECT * FROM attrs_df")
    return con


def _profiles(con, attrs: str) -> pd.DataFrame:
    """Each person's profile as the feature rows find it (person x bucket)."""
    fit_hour_profiles(con, "state", attrs)
    totals = ", ".join(f"sum({k}_hour_{b}) AS {k}_hour_{b}" for b in BUCKETS for k in ("attempt", "reach"))
    join = f"LEFT JOIN {attrs} person_attrs ON person_attrs.person_id = person.person_id" if attrs else ""
    same = profile_join_sql(con, "profiles", "person", attrs, "person_attrs")
    query = f"""SELECT person.person_id, {", ".join(f"profiles.profile_{b} AS {b}" for b in BUCKETS)}
      FROM (SELECT person_id, {totals} FROM state GROUP BY person_id) person {join}
      LEFT JOIN profile_by_counts profiles ON {same}
      ORDER BY person.person_id"""
    out = con.sql(query).df().set_index("person_id")
    assert out.index.is_unique and out.notna().all().all()
    return out


def test_persons_with_little_history_follow_their_group():
    prof = _profiles(_connect(_attrs()), "attrs")
    for person, group in NEWCOMERS.items():
        later, earlier = ("evening", "morning") if group == "evening" else ("morning", "evening")
        assert prof.loc[person, later] > 1.5 * prof.loc[person, earlier], person
    # without attributes they follow the crowd: the two groups' newcomers alike
    crowd = _profiles(_connect(None), "")
    assert crowd.loc["e_new"].tolist() == crowd.loc["m_new"].tolist()
    assert crowd.loc["e_one"].tolist() == crowd.loc["m_one"].tolist()


def _tables(con) -> dict[str, pd.DataFrame]:
    return {
        t: con.sql(f"SELECT * FROM {t} ORDER BY ALL").df() for t in ("hour_profiles", "profile_by_counts")
    }


def test_without_attributes_that_take_part_the_profiles_are_the_global_priors():
    con = _connect(None)
    fit_hour_profiles(con, "state", "")
    alone = _tables(con)
    assert con.sql("SELECT count(*) FROM profile_attributes").fetchall() == [(0,)]
    # numbers, and strings of more than MAX_PRIOR_VALUES values (identifier-like), do not take part
    many = _attrs()
    many["age_band"] = [f"id{i % (MAX_PRIOR_VALUES + 1)}" for i in range(len(many))]
    con = _connect(many)
    fit_hour_profiles(con, "state", "attrs")
    assert con.sql("SELECT count(*) FROM profile_attributes").fetchall() == [(0,)]
    for name, table in _tables(con).items():
        pd.testing.assert_frame_equal(table, alone[name], check_exact=True)
    # with attributes, the fit of the profiles is the same, and a person without attributes has
    # exactly the posterior of the global prior
    con = _connect(_attrs())
    by_attributes = _profiles(con, "attrs")
    pd.testing.assert_frame_equal(_tables(con)["hour_profiles"], alone["hour_profiles"], check_exact=True)
    crowd = _profiles(_connect(None), "")
    assert by_attributes.loc["nobody"].tolist() == crowd.loc["nobody"].tolist()


def test_a_hostile_attribute_name_and_value_stay_data():
    name = 'band"; DROP TABLE state; --'
    attrs = _attrs(name, evening="young'); DROP TABLE attrs; --", morning='old" OR 1=1 --')
    con = _connect(attrs)
    prof = _profiles(con, "attrs")
    assert con.sql("SELECT name FROM profile_attributes").fetchall() == [(name,)]
    assert prof.loc["e_new", "evening"] > prof.loc["e_new", "morning"]
    assert prof.loc["m_new", "morning"] > prof.loc["m_new", "evening"]
    assert con.sql("SELECT count(*) FROM state").fetchall()[0][0] == len(_state())
    assert con.sql("SELECT count(*) FROM attrs").fetchall()[0][0] == len(attrs)


D0 = date(2025, 3, 3)
UPDATED = datetime(2025, 1, 1, tzinfo=UTC)


def _att(day: int, i: int, person: str, outcome: str, hour: int) -> dict:
    d = D0 + timedelta(days=day)
    return {"attempt_id": f"a{day}-{i}", "person_id": person, "contact_id": f"c-{person}", "channel": "voice",
            "attempted_at": datetime(d.year, d.month, d.day, hour, 0, tzinfo=UTC), "local_hour": hour,
            "outcome": outcome, "campaign_id": "k", "duration_s": 0.0}  # fmt: skip


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """Two days of history of two groups; ``e_new`` is a candidate never attempted, ``e_first`` is
    attempted on day 2 for the first time (its training row has no state row of day 1)."""
    settings = Settings(home=tmp_path_factory.mktemp("hour_profiles") / "home")
    persons = [f"e{i}" for i in range(40)] + [f"m{i}" for i in range(40)]
    for day in range(3):
        rows = []
        for p in persons if day < 2 else []:
            answers = (19, 9) if p.startswith("e") else (9, 19)
            rows += [_att(day, len(rows), p, "right_party", answers[0]),
                     _att(day, len(rows) + 1, p, "no_answer", answers[1])]  # fmt: skip
        if day == 2:
            rows += [_att(2, 0, "e_first", "no_answer", 13), _att(2, 1, "m0", "no_answer", 13)]
        write_partition(
            settings, "attempts", D0 + timedelta(days=day), pa.Table.from_pylist(rows, schema=ATTEMPTS)
        )
        cs = [{"person_id": p, "contact_id": f"c-{p}", "channel": "voice", "source": "customer",
               "consent": True, "active": True, "first_seen": D0, "updated_at": UPDATED}
              for p in [*persons, "e_new", *(["e_first"] if day == 2 else [])]]  # fmt: skip
        write_partition(
            settings,
            "contacts_state",
            D0 + timedelta(days=day),
            pa.Table.from_pylist(cs, schema=CONTACTS_STATE),
        )
    everyone = [*persons, "e_new", "e_first"]
    groups = ["evening people" if p.startswith("e") else "morning people" for p in everyone]
    write_partition(settings, "persons", D0, pd.DataFrame({"person_id": everyone, "habit_group": groups}))
    for day in range(3):
        build_features(settings, D0 + timedelta(days=day))
    return settings


def test_feature_and_training_rows_take_the_group_prior(lake):
    f = load_features(lake, D0 + timedelta(days=2)).drop_duplicates("person_id").set_index("person_id")
    assert f.loc["e_new", "f_p_hour_profile_evening"] > 1.5 * f.loc["e_new", "f_p_hour_profile_morning"]
    assert f.loc["e0", "f_p_hour_profile_evening"] > f.loc["e0", "f_p_hour_profile_morning"]
    assert f.loc["m0", "f_p_hour_profile_morning"] > f.loc["m0", "f_p_hour_profile_evening"]
    t = load_training(lake, D0 + timedelta(days=2), D0 + timedelta(days=2)).set_index("person_id")
    # day 1's state has no row of e_first: its profile is the prior of its group, like e_new's of day 1
    day_before = load_features(lake, D0 + timedelta(days=1)).set_index("person_id")
    for b in BUCKETS:
        assert t.loc["e_first", f"f_p_hour_profile_{b}"] == day_before.loc["e_new", f"f_p_hour_profile_{b}"]
    assert t.loc["m0", "f_p_hour_profile_morning"] > t.loc["m0", "f_p_hour_profile_evening"]


def test_attributes_without_any_state_row_still_give_every_value_a_row():
    con = _connect(_attrs())
    con.execute("DELETE FROM state")
    fit_hour_profiles(con, "state", "attrs")
    rows = con.sql("SELECT value_0, attempt_morning, profile_morning FROM profile_by_counts ORDER BY ALL")
    rows = rows.fetchall()
    assert [(value, attempts) for value, attempts, _ in rows] == [("old", 0), ("young", 0), (None, 0)]
    # no one to learn from: every value keeps everyone's prior
    assert rows[0][2] == pytest.approx(rows[2][2]) and rows[1][2] == pytest.approx(rows[2][2])


def _state_with_lines() -> pd.DataFrame:
    """``_state`` as one live line per person, and three evening persons answered on a live line in
    the evening: ``twin_dead`` also has a dead number tried five times in the evening (each
    ``invalid``), ``twin_gone`` a number that answered as someone else there, ``twin_clean`` none."""
    rows = _state().assign(contact_id="a", invalid_365d=0, wrong_party_365d=0)
    twins = []
    for person in ("twin_clean", "twin_dead", "twin_gone"):
        twins.append({"person_id": person, "contact_id": "a", **_counts((4, 0), (4, 3))})
    twins.append({"person_id": "twin_dead", "contact_id": "b", **_counts((0, 0), (5, 0)), "invalid_365d": 5})
    twins.append(
        {"person_id": "twin_gone", "contact_id": "b", **_counts((0, 0), (5, 0)), "wrong_party_365d": 2}
    )
    out = pd.concat([rows, pd.DataFrame(twins)], ignore_index=True).fillna(0)
    out["reach_365d"] = sum(out[f"reach_hour_{b}"] for b in BUCKETS)
    return out


def _twin_profiles(own_lines: bool) -> pd.DataFrame:
    con = duckdb.connect()
    con.register("state_df", _state_with_lines())
    con.execute("CREATE TABLE state AS SELECT * FROM state_df")
    fit_hour_profiles(con, "state", "", own_lines=own_lines)
    totals = ", ".join(habit_count_columns(own_lines, HABIT_PREFIX + "{kind}_hour_{bucket}"))
    profiles_on = profile_join_sql(con, "profiles", "person", "", "", HABIT_PREFIX)
    query = f"""SELECT person.person_id, {", ".join(f"profiles.profile_{b} AS {b}" for b in BUCKETS)}
      FROM (SELECT person_id, {totals} FROM state GROUP BY person_id) person
      LEFT JOIN profile_by_counts profiles ON {profiles_on}
      WHERE person.person_id LIKE 'twin%' ORDER BY person.person_id"""
    return con.sql(query).df().set_index("person_id")


def test_a_dead_or_reassigned_numbers_failures_do_not_count_in_the_habit():
    # what a dead number says is that it is dead, not when the person answers
    own = _twin_profiles(own_lines=True)
    for twin in ("twin_dead", "twin_gone"):
        assert own.loc[twin].tolist() == own.loc["twin_clean"].tolist()
    every = _twin_profiles(own_lines=False)
    for twin in ("twin_dead", "twin_gone"):
        assert every.loc[twin, "evening"] < every.loc["twin_clean", "evening"]


@pytest.mark.parametrize(
    ("invalid", "wrong_party", "reach", "own"),
    [(0, 0, 0, True), (2, 0, 0, False), (0, 1, 0, False), (0, 1, 3, True), (1, 0, 1, True)],
)
def test_a_number_that_reached_the_person_stays_theirs(invalid, wrong_party, reach, own):
    # reassigned after answering: its answers are the person's habit (its later failures are few)
    row = f"(SELECT {invalid} AS invalid_365d, {wrong_party} AS wrong_party_365d, {reach} AS reach_365d)"
    assert duckdb.sql(f"SELECT {own_line_sql()} FROM {row}").fetchall() == [(own,)]
