"""bench/judge_ceiling_learned.py: a ceiling that fits the habit types on the history (small worlds)."""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from helpers.bench import bench_module

from contactrank.features.simulate import simulate
from contactrank.features.simulated_world import WORLDS

ceiling = bench_module("judge_ceiling")
learned = bench_module("judge_ceiling_learned")
START = date(2026, 9, 1)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("habits") / "landing"
    simulate(root, START, days=10, persons=240, seed=3, fmt="parquet", world="habits")
    d = date(2026, 9, 9)
    return root, d, ceiling.contact_book(root, d)


def test_the_told_types_are_the_simulators():
    spec = WORLDS["default"]
    told = ceiling.told_habits(spec)
    age = np.repeat(np.arange(4), 50)
    zeros = np.zeros(age.size, dtype=int)
    lat = ceiling._prior_persons(np.random.default_rng(0), told, age, zeros, zeros, np.zeros(age.size))
    evening_share = (lat["type"] == 2).mean(axis=1)
    assert evening_share[age == 0].mean() == pytest.approx(0.65, abs=0.01)  # the young lean to evenings
    assert evening_share[age == 3].mean() == pytest.approx(0.15, abs=0.01)
    amp = lat["amp"]
    assert amp.min() >= 0.8 and amp.max() <= 2.0
    habits = ceiling.told_habits(WORLDS["habits"])
    assert habits.amp_high[2] == 0.3 and np.allclose(habits.shares.sum(axis=1), 1.0)


def test_an_em_step_on_a_history_that_says_nothing_keeps_the_prior(world, monkeypatch):
    """Without attempts the posterior is the prior: the M-step must give back the types it was
    given (each moment of a uniform range and a normal centre matched, not shrunk)."""
    root, d, rows = world
    read = ceiling._history

    def without_attempts(landing, day, told="attempts"):
        persons, book, enr, att = read(landing, day, told)
        return persons, book, enr, att.iloc[0:0]

    monkeypatch.setattr(ceiling, "_history", without_attempts)
    told = ceiling.told_habits(WORLDS["habits"])
    moved, loglik = learned.em_step(root, d, rows, "habits", told)
    assert loglik == 0.0  # an empty history has likelihood one under any types
    assert np.allclose(moved.centres, told.centres, atol=0.03)
    assert np.allclose(moved.amp_low, told.amp_low, atol=0.02)
    assert np.allclose(moved.amp_high, told.amp_high, atol=0.02)
    assert np.allclose(moved.shares, told.shares, atol=0.01)


def test_the_history_prefers_the_worlds_types_to_types_it_does_not_have(world):
    root, d, rows = world
    told = ceiling.told_habits(WORLDS["habits"])
    _, at_told = learned.em_step(root, d, rows, "habits", told)
    wrong = ceiling.HabitTypes(np.array([3.0, 4.0, 5.0]), told.amp_low, told.amp_high, told.shares)
    _, at_wrong = learned.em_step(root, d, rows, "habits", wrong)
    assert at_told > at_wrong


def test_a_learned_fit_starts_from_nothing_and_stays_in_its_domain(world):
    root, d, rows = world
    start = learned.generic_habits(3)
    assert np.allclose(start.centres, [10.0 + 1 / 3, 15.0, 19.0 + 2 / 3])
    assert np.allclose(start.shares, 1 / 3)
    assert learned.generic_habits(3, offset=0.25).centres[0] == pytest.approx(8.0 + 14 / 3 * 0.25)
    lines: list[str] = []
    fitted = learned.learn_habits(root, d, rows, "habits", 3, cycles=1, progress=lines.append, starts=2)
    # a cycle line per start, then each start's likelihood; the likeliest start is kept
    assert [line.split(":")[0] for line in lines] == [
        "habit EM cycle 1/1",
        "habit EM start 1/2 (offset 0.25)",
        "habit EM cycle 1/1",
        "habit EM start 2/2 (offset 0.75)",
    ]
    start_ll = [float(line.rsplit(" ", 1)[1]) for line in lines[1::2]]
    _, at_fitted = learned.em_step(root, d, rows, "habits", fitted)
    assert at_fitted == pytest.approx(max(start_ll), abs=1e-5)  # as printed, to five decimals
    assert np.allclose(fitted.shares.sum(axis=1), 1.0) and (fitted.shares >= learned.SHARE_FLOOR).all()
    assert (fitted.amp_low >= 0).all() and (fitted.amp_high <= learned.MAX_AMP).all()
    assert (fitted.amp_low < fitted.amp_high).all()
    # an extrapolated step outside the domain is put back inside it
    wild = learned._as_habits(np.r_[[9.0, 13.0, 19.0], [-1, 0.5, 3], [4, 0.2, 9], np.full(12, -0.5)], 3)
    assert (wild.amp_low >= 0).all() and (wild.amp_high <= learned.MAX_AMP).all()
    assert np.allclose(wild.shares, 1 / 3)
    report = learned.as_json(fitted)
    assert len(report["centres"]) == 3 and len(report["shares_by_age_band"]) == 4
