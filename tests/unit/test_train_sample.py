"""train_max_rows: whole persons are sampled from the training days, deterministically."""

from __future__ import annotations

import dataclasses
from datetime import date

import numpy as np
import pandas as pd
from helpers.synth_training import write_days

from contactrank.features.lake import read_partition
from contactrank.ml.dataset import build_matrix, freeze_categories, plan_window

D = date(2026, 3, 10)


def _window(settings):
    write_days(settings, D, days=8, rows=1500, truth=False)
    w = plan_window(settings, D)
    return w, freeze_categories(settings, w.train_days, w.categorical)


def test_cap_keeps_a_share_of_whole_persons_and_is_deterministic(settings):
    w, cats = _window(settings)
    full = build_matrix(settings, w.train_days, w.features, cats)
    cap = len(full.y) // 2
    a = build_matrix(settings, w.train_days, w.features, cats, max_rows=cap)
    b = build_matrix(settings, w.train_days, w.features, cats, max_rows=cap)
    assert 0.35 * len(full.y) < len(a.y) < 0.65 * len(full.y)  # a share of persons, not an exact cut
    np.testing.assert_array_equal(a.X, b.X)
    # whole persons: each kept person keeps every one of its rows on every training day
    kept = {g.split("|")[0] for g in a.groups}
    rows = pd.concat(
        [read_partition(settings, "training", x, columns=["person_id"]).to_pandas() for x in w.train_days]
    )
    assert len(a.y) == int(rows["person_id"].astype(str).isin(kept).sum())
    assert 0 < len(kept) < rows["person_id"].nunique()


def test_no_cap_or_a_high_cap_keeps_every_row(settings):
    w, cats = _window(settings)
    full = build_matrix(settings, w.train_days, w.features, cats)
    assert len(build_matrix(settings, w.train_days, w.features, cats, max_rows=10**9).y) == len(full.y)
    assert len(full.y) == sum(read_partition(settings, "training", x).num_rows for x in w.train_days)


def test_the_cap_changes_the_training_config(settings):
    from contactrank.ml.train import lgb_params
    from contactrank.ml.train import train_config as _train_config

    params = lgb_params(settings, None)
    smaller = dataclasses.replace(settings, train_max_rows=1000)
    assert _train_config(settings, params) != _train_config(smaller, params)


def test_three_labelled_days_split_into_test_validation_and_training(tmp_path) -> None:
    """The smallest history a quick setting allows still has a test, a validation and a training day."""
    from datetime import date, timedelta

    from contactrank.ml.dataset import plan_window
    from contactrank.settings import load_settings

    s = load_settings(home=tmp_path, min_train_days=3, valid_days=1)
    d = date(2026, 3, 10)
    write_days(s, d, 3)
    window = plan_window(s, d)
    assert not isinstance(window, str), window
    assert window.test_days == [d] and window.valid_days == [d - timedelta(days=1)]
    assert window.train_days == [d - timedelta(days=2)]
