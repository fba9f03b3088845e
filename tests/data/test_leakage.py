"""Point in time: the features of D never depend on data dated after D, and a training example
never sees its own outcome.

Each test checks the real build and also runs the same check against a deliberately leaky variant
(monkeypatched), asserting that the check catches it: a test that cannot fail would prove nothing.
"""

from __future__ import annotations

from datetime import timedelta

import pandas as pd
import pyarrow.parquet as pq
from feature_history import (
    START,
    attempts_for,
    contacts,
    history,
    write_attempts,
    write_contacts_state,
    write_persons,
)
from test_incremental import assert_same, sorted_partition

from contactrank.features import build
from contactrank.features import history as lake_history
from contactrank.features.build import STATE, build_features
from contactrank.features.lake import DATA_FILE, partition_dir

ATTEMPT_DAYS = [0, 5, 20, 60, 97, 98, 99, 100, 101, 102, 103, 104]
D = 101


def _day(n: int):
    return START + timedelta(days=n)


def _read(settings, kind: str, n: int) -> pd.DataFrame:
    return sorted_partition(settings, kind, _day(n))


def _snapshot(settings, n: int) -> dict[str, pd.DataFrame]:
    return {k: _read(settings, k, n) for k in ("features", "training", STATE)}


def _differs(a: dict[str, pd.DataFrame], b: dict[str, pd.DataFrame]) -> bool:
    try:
        for k in a:
            assert_same(a[k], b[k])
    except AssertionError:
        return True
    return False


def _alter_the_future(settings) -> None:
    """Change every kind of input dated after D: attempts (more, different outcomes), candidates, persons."""
    book = contacts()
    for n in (D + 1, D + 2):
        df = attempts_for(book, n, 80, seed=9)
        df["outcome"] = "converted"
        write_attempts(settings, n, df)
    write_contacts_state(settings, book.assign(first_day=0), D + 1)
    write_persons(settings, D + 1, pd.DataFrame({"person_id": ["p000", "p001"], "region": ["mars", "venus"],
                                                 "segment": ["x", "y"]}))  # fmt: skip
    for n in (D + 1, D + 2):
        build_features(settings, _day(n))


def test_features_of_d_ignore_later_data(settings, monkeypatch):
    history(settings, ATTEMPT_DAYS, list(range(97, 105)))
    for n in range(98, D + 3):
        build_features(settings, _day(n))
    before = _snapshot(settings, D)

    _alter_the_future(settings)
    assert build_features(settings, _day(D))["mode"] == "incremental"
    assert not _differs(before, _snapshot(settings, D))
    build_features(settings, _day(D), full=True)
    assert not _differs(before, _snapshot(settings, D))

    # Leaky variant: file listings not cut at D. The same check must flag it.
    real_files = lake_history.partition_files
    monkeypatch.setattr(lake_history, "partition_files", lambda s, kind, upto, since=None, name=DATA_FILE:
                        real_files(s, kind, upto + timedelta(days=30), since, name))  # fmt: skip
    build_features(settings, _day(D), full=True)
    assert _differs(before, _snapshot(settings, D))


def test_training_example_never_sees_its_own_outcome(settings, monkeypatch):
    history(settings, ATTEMPT_DAYS, list(range(97, 105)))
    for n in range(98, D + 1):
        build_features(settings, _day(n))
    before = _read(settings, "training", D)
    assert len(before) > 0

    # Flip every outcome of day D and rebuild D: labels change, features do not.
    att = pq.read_table(partition_dir(settings, "attempts", _day(D)) / DATA_FILE).to_pandas()
    flipped = att.assign(
        outcome=att.outcome.map(
            lambda o: "no_answer" if o in ("right_party", "converted", "opt_out") else "converted"
        )
    )
    write_attempts(settings, D, flipped)
    build_features(settings, _day(D))
    after = _read(settings, "training", D)
    f_cols = [c for c in before.columns if c.startswith("f_")]
    assert (before.label_reach != after.label_reach).all()
    assert_same(before[["attempt_id", *f_cols]], after[["attempt_id", *f_cols]])

    # Leaky variant: training joined with the state of the end of D (which includes the attempt itself).
    real = build.write_training
    monkeypatch.setattr(  # the state and the shared rates of the end of D, not of D-1
        build,
        "write_training",
        lambda s, con, d, prev_dir, shared=None: real(s, con, d, partition_dir(s, STATE, d)),
    )
    write_attempts(settings, D, att)
    build_features(settings, _day(D))
    leaky_before = _read(settings, "training", D)
    write_attempts(settings, D, flipped)
    build_features(settings, _day(D))
    leaky_after = _read(settings, "training", D)
    try:
        assert_same(leaky_before[["attempt_id", *f_cols]], leaky_after[["attempt_id", *f_cols]])
        caught = False
    except AssertionError:
        caught = True
    assert caught


def test_training_rows_carry_the_features_of_the_day_before(settings):
    """For a pair already a candidate on D-1 (same channel), the f_* of its training rows equal its row
    of features/date=D-1; context columns describe the attempt (date D, its local hour)."""
    history(settings, ATTEMPT_DAYS, list(range(97, 105)))
    for n in range(98, D + 1):
        build_features(settings, _day(n))
    train = _read(settings, "training", D)
    feats = _read(settings, "features", D - 1)
    merged = train.merge(feats, on=["person_id", "contact_id", "channel"], suffixes=("", "_prev"))
    assert len(merged) > 0.8 * len(train)
    context = {"f_hour", "f_dow", "f_month", "f_dom"}
    f_cols = [c for c in feats.columns if c.startswith("f_")]
    assert context.isdisjoint(f_cols) and context <= set(train.columns)
    for c in f_cols:
        pd.testing.assert_series_equal(merged[c], merged[c + "_prev"], check_names=False, check_dtype=False)
    att = (
        pq.read_table(partition_dir(settings, "attempts", _day(D)) / DATA_FILE)
        .to_pandas()
        .set_index("attempt_id")
    )
    assert (train.set_index("attempt_id").f_hour == att.local_hour.reindex(train.attempt_id)).all()
    assert (train.f_dow == _day(D).weekday()).all() and (train.date == _day(D)).all()
