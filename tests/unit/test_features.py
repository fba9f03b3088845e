"""Feature values on a tiny hand-made lake, checked against numbers worked out by hand."""

from __future__ import annotations

import math
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from contactrank.errors import NotReady
from contactrank.features.build import build_features, load_features, load_training
from contactrank.features.context import add_context
from contactrank.features.lake import write_partition
from contactrank.features.schema import ATTEMPTS, CONTACTS_STATE
from contactrank.settings import Settings

D0 = date(2025, 3, 3)  # a Monday
M = 5.0  # settings.prior_strength


def _att(day: int, i: int, person: str, contact: str, channel: str, outcome: str, hour: int) -> dict:
    d = D0 + timedelta(days=day)
    return {"attempt_id": f"a{day}-{i}", "person_id": person, "contact_id": contact, "channel": channel,
            "attempted_at": datetime(d.year, d.month, d.day, hour, 0, tzinfo=UTC), "local_hour": hour,
            "outcome": outcome, "campaign_id": "k", "duration_s": 0.0}  # fmt: skip


ATTEMPTS_BY_DAY = {
    0: [_att(0, 1, "p1", "c1", "voice", "no_answer", 9), _att(0, 2, "p1", "c1", "voice", "right_party", 19),
        _att(0, 3, "p1", "c1", "voice", "busy", 20)],
    2: [_att(2, 1, "p1", "c1", "voice", "voicemail", 13), _att(2, 2, "p2", "c3", "voice", "right_party", 16)],
    3: [],
    4: [_att(4, 1, "p1", "c1", "voice", "converted", 10)],
}  # fmt: skip
CANDIDATES = [  # person, contact, channel, source, active, first_seen day
    ("p1", "c1", "voice", "customer", True, 0),
    ("p1", "c2", "email", "bureau", False, 0),
    ("p2", "c3", "voice", "customer", True, 1),
]


@pytest.fixture(scope="module")
def lake(tmp_path_factory):
    """Built once for the module (read-only for the tests); plain Settings: no env or config file."""
    settings = Settings(home=tmp_path_factory.mktemp("features") / "home")
    for day in range(5):
        rows = ATTEMPTS_BY_DAY.get(day, [])
        table = pa.Table.from_pylist(rows, schema=ATTEMPTS) if rows else ATTEMPTS.empty_table()
        write_partition(settings, "attempts", D0 + timedelta(days=day), table)
        cs = [{"person_id": p, "contact_id": c, "channel": ch, "source": src, "consent": True, "active": act,
               "first_seen": D0 + timedelta(days=fs), "updated_at": datetime(2025, 1, 1, tzinfo=UTC)}
              for p, c, ch, src, act, fs in CANDIDATES if fs <= day]  # fmt: skip
        write_partition(
            settings,
            "contacts_state",
            D0 + timedelta(days=day),
            pa.Table.from_pylist(cs, schema=CONTACTS_STATE),
        )
    persons = {
        "person_id": ["p1", "p2"],
        "region": ["north", "east"],
        "score": [1.0, 3.0],
        "vip": [True, False],
    }
    write_partition(settings, "persons", D0, pd.DataFrame(persons))
    write_partition(
        settings,
        "persons",
        D0 + timedelta(days=2),
        pd.DataFrame({"person_id": ["p1"], "region": [None], "score": [2.0]}),
    )
    write_partition(
        settings,
        "persons",
        D0 + timedelta(days=4),
        pd.DataFrame({"person_id": ["p1"], "region": ["south"], "score": [9.0]}),
    )
    for day in range(4):
        build_features(settings, D0 + timedelta(days=day))
    return settings


def _decay(days_ago: list[int], hl: int) -> float:
    return sum(0.5 ** (a / hl) for a in days_ago)


def test_contact_windows_streak_buckets_and_recency(lake):
    f = load_features(lake, D0 + timedelta(days=3)).set_index("contact_id")
    c1 = f.loc["c1"]
    assert (c1.f_c_attempts_7d, c1.f_c_reach_7d, c1.f_c_noanswer_7d, c1.f_c_conv_7d) == (4, 1, 3, 0)
    assert (c1.f_c_days_since_attempt, c1.f_c_days_since_reach) == (1, 3)
    assert math.isnan(c1.f_c_days_since_invalid)
    assert c1.f_c_fail_streak == 2  # busy after the day-0 reach, then the day-2 voicemail
    assert c1.f_c_last_outcome == c1.last_outcome == "voicemail" and c1.n_attempts == 4
    assert (c1.f_c_attempt_hour_morning, c1.f_c_attempt_hour_midday, c1.f_c_attempt_hour_evening) == (1, 1, 2)
    assert (c1.f_c_reach_hour_evening, c1.f_c_reach_dow_0, c1.f_c_reach_dow_2) == (1, 1, 0)
    assert (c1.f_c_age_days, c1.f_source, c1.f_channel) == (3, "customer", "voice")
    c2 = f.loc["c2"]  # an inactive address is still a row; never attempted
    assert (c2.n_attempts, c2.f_c_attempts_365d, c2.f_c_last_outcome) == (0, 0, "none")
    assert math.isnan(c2.f_c_days_since_attempt)
    assert not any(c.startswith("f_") and ("active" in c or "consent" in c) for c in f.columns)


def test_reach_rate_is_shrunk_toward_channel_and_source_prior(lake):
    f = load_features(lake, D0 + timedelta(days=3)).set_index("contact_id")
    for hl in (7, 30):
        r1, a1 = _decay([3], hl), _decay([3, 3, 3, 1], hl)  # c1: reach on day 0; attempts days 0,0,0,2
        r3, a3 = _decay([1], hl), _decay([1], hl)  # c3: one lucky attempt on day 2
        p_all = (r1 + r3) / (a1 + a3)
        p_voice = (r1 + r3 + M * p_all) / (a1 + a3 + M)
        p_vc = (r1 + r3 + M * p_voice) / (a1 + a3 + M)  # both voice addresses come from 'customer'
        assert f.loc["c3", f"f_c_reach_rate_hl{hl}"] == pytest.approx((r3 + M * p_vc) / (a3 + M), rel=1e-6)
        assert f.loc["c1", f"f_c_reach_rate_hl{hl}"] == pytest.approx((r1 + M * p_vc) / (a1 + M), rel=1e-6)
        # email has no history: its prior falls back to the overall rate
        assert f.loc["c2", f"f_c_reach_rate_hl{hl}"] == pytest.approx(p_all, rel=1e-6)
    assert f.loc["c3", "f_c_reach_rate_hl7"] < 0.9  # one success is not 100%


def test_person_population_and_attributes(lake):
    f = load_features(lake, D0 + timedelta(days=3)).set_index("contact_id")
    p1 = f.loc["c2"]  # person features are the same on every address of the person
    assert (p1.f_p_attempts_7d, p1.f_p_reach_7d, p1.f_p_n_addresses, p1.f_p_n_live_addresses) == (4, 1, 2, 1)
    assert (p1.f_p_reach_share_voice, p1.f_p_reach_share_email, p1.f_p_reach_share_evening) == (1.0, 0.0, 1.0)
    assert (p1.f_p_days_since_attempt, p1.f_p_came_back) == (1, 0)
    assert f.loc["c1", "f_g_reach_rate_7d"] == pytest.approx(2 / 5)
    assert f.loc["c1", "f_g_channel_reach_rate_30d"] == pytest.approx(2 / 5)
    assert f.loc["c1", "f_g_campaign_conv_rate_7d"] == 0.0
    assert math.isnan(f.loc["c2", "f_g_channel_reach_rate_7d"])  # no e-mail attempts in the window
    # point in time: the day-2 upsert changes score, its null region does not erase 'north', day 4 is unseen
    assert (p1.f_attr_region, p1.f_attr_score, p1.f_attr_vip) == ("north", 2.0, 1.0)
    assert (f.loc["c3", "f_attr_region"], f.loc["c3", "f_attr_vip"]) == ("east", 0.0)


def test_training_labels_and_state_of_previous_day(lake):
    t = load_training(lake, D0, D0 + timedelta(days=3)).set_index("attempt_id")
    assert len(t) == 5  # days 0 and 2 (day 1 and 3 have no attempts; day 4 not built)
    vm = t.loc["a2-1"]  # c1's voicemail on day 2 sees the end of day 1: three attempts, one reach
    assert (vm.label_reach, vm.label_conversion, vm.f_c_attempts_7d, vm.f_c_reach_7d) == (0, 0, 3, 1)
    assert (vm.f_hour, vm.f_dow, vm.f_dom, vm.f_c_days_since_attempt) == (13, 2, 5, 1)
    lucky = t.loc["a2-2"]
    assert (lucky.label_reach, lucky.f_c_attempts_365d, lucky.f_p_attempts_365d, lucky.f_c_age_days) == (
        1,
        0,
        0,
        0,
    )
    first = t.loc["a0-2"]  # nothing happened before day 0
    assert (first.label_reach, first.f_c_attempts_365d) == (1, 0) and math.isnan(first.f_g_reach_rate_7d)
    assert set(t.columns) >= {"person_id", "contact_id", "channel", "date", "label_reach", "label_conversion"}
    assert load_training(lake, D0 + timedelta(days=10), D0 + timedelta(days=12)).empty


def test_load_features_missing_day_raises(settings):
    with pytest.raises(NotReady, match="features"):
        load_features(settings, D0)


def test_add_context_scalar_and_array():
    df = pd.DataFrame({"x": [1, 2, 3]})
    day = date(2026, 11, 27)  # a Friday
    one = add_context(df, day, 9)
    assert (
        one.f_hour.tolist() == [9, 9, 9]
        and set(one.f_dow) == {4}
        and set(one.f_month) == {11}
        and set(one.f_dom) == {27}
    )
    many = add_context(df, day, np.array([8, 12, 21]))
    assert many.f_hour.tolist() == [8, 12, 21] and "f_hour" not in df.columns
    with pytest.raises(Exception, match="3 rows"):
        add_context(df, day, [1, 2])


def test_stream_writes_every_chunk_and_surfaces_a_writer_failure(tmp_path):
    import duckdb
    import pyarrow.parquet as pq

    from contactrank.features.feature_chunks import stream_to_parquet as _stream

    con = duckdb.connect()
    sqls = [f"SELECT range AS x FROM range({lo}, {lo + 5})" for lo in (0, 5, 10)]
    assert _stream(con, sqls, tmp_path / "out.parquet") == 15
    assert sorted(pq.read_table(tmp_path / "out.parquet")["x"].to_pylist()) == list(range(15))
    # no such directory: the writer thread fails, the caller gets its error instead of hanging
    with pytest.raises(OSError):
        _stream(con, sqls * 50, tmp_path / "missing" / "out.parquet")
