"""The hour curves' prior stored in the lake (features.curve_priors): read back as it was fitted,
by the days of its cadence only, and never when fitted by other code or counts."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pyarrow as pa
import pytest

from contactrank.features import curve_priors as cp
from contactrank.features.hour_curves import LEVELS, CurveFit, bumps
from contactrank.features.lake import partition_dates
from contactrank.settings import Settings

D = date(2026, 3, 2)


def _prior() -> cp.StoredPrior:
    rng = np.random.default_rng(1)
    habits = len(bumps())
    by_value = [rng.dirichlet(np.ones(habits), 3), rng.dirichlet(np.ones(habits), 1)]
    fit = CurveFit(-1.25, rng.normal(size=5), -0.3, rng.dirichlet(np.ones(len(LEVELS))),
                   rng.dirichlet(np.ones(habits)), by_value)  # fmt: skip
    return cp.StoredPrior(fit, {"age_band": ["18-29", "30-49", "50+"], "region": ["north"]})


def test_a_stored_prior_is_read_back_exactly(tmp_path):
    settings = Settings(home=tmp_path, hour_curve_refit_days=7)
    prior = _prior()
    cp.store_prior(settings, D, prior)
    read = cp.newest_prior(settings, D + timedelta(days=1))
    assert read is not None and read.vocabularies == prior.vocabularies
    for name in ("base", "retry_offset", "channel_offset", "level_weight", "habit_weight"):
        np.testing.assert_array_equal(getattr(read.fit, name), getattr(prior.fit, name))
    for got, want in zip(read.fit.habit_by_value, prior.fit.habit_by_value, strict=True):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize(("days_after", "read"), [(0, False), (1, True), (6, True), (7, False), (-1, False)])
def test_a_prior_is_read_by_the_days_of_its_cadence_after_it_only(tmp_path, days_after, read):
    settings = Settings(home=tmp_path, hour_curve_refit_days=7)
    cp.store_prior(settings, D, _prior())
    assert (cp.newest_prior(settings, D + timedelta(days=days_after)) is not None) is read


def test_the_newest_prior_of_the_cadence_is_read(tmp_path):
    settings = Settings(home=tmp_path, hour_curve_refit_days=7)
    older, newer = _prior(), _prior()
    newer.fit.base = 0.5
    cp.store_prior(settings, D, older)
    cp.store_prior(settings, D + timedelta(days=3), newer)
    assert cp.newest_prior(settings, D + timedelta(days=4)).fit.base == 0.5
    assert cp.newest_prior(settings, D + timedelta(days=2)).fit.base == -1.25


def test_a_prior_of_other_counts_or_a_daily_cadence_is_neither_stored_nor_read(tmp_path):
    weekly = Settings(home=tmp_path, hour_curve_refit_days=7)
    cp.store_prior(weekly, D, _prior())
    other_counts = Settings(home=tmp_path, hour_curve_refit_days=7, hour_habit_own_lines=False)
    assert cp.newest_prior(other_counts, D + timedelta(days=1)) is None
    daily = Settings(home=tmp_path / "daily", hour_curve_refit_days=1)
    cp.store_prior(daily, D, _prior())
    assert partition_dates(daily, cp.CURVE_PRIOR) == []
    with pytest.raises(ValueError, match="hour_curve_refit_days"):
        Settings(hour_curve_refit_days=0)


def test_values_the_prior_does_not_know_have_no_code_and_attributes_follow_the_order_asked():
    prior = _prior()
    columns = [pa.array(["50+", "unknown", None]), pa.array(["north", "north", "south"])]
    codes = cp.codes_in(prior.vocabularies, ["age_band", "region"], columns)
    assert codes.tolist() == [[2, 0], [-1, 0], [-1, -1]]
    fit = prior.for_attributes(["region", "channel_pref"])
    np.testing.assert_array_equal(fit.habit_by_value[0], prior.fit.habit_by_value[1])
    assert fit.habit_by_value[1].shape == (0, len(bumps()))
