"""Drift guard on tiny frames: stable data passes, a shifted feature or label rate blocks."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from helpers.synth_training import write_days

from contactrank.ml import dataset, drift, training_sample
from contactrank.ml.drift import drift_report, psi, wilson_interval


def _frame(n: int, shift: float = 0.0, rate: float = 0.2, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "f_x": rng.normal(shift, 1.0, n),
            "f_channel": rng.choice(["voice", "sms"], n, p=[0.7, 0.3]),
            "label_reach": (rng.random(n) < rate).astype(int),
        }
    )


def test_psi_is_near_zero_for_the_same_distribution() -> None:
    a, b = _frame(20_000, seed=1), _frame(20_000, seed=2)
    assert psi(a["f_x"], b["f_x"]) < 0.01
    assert psi(a["f_channel"], b["f_channel"]) < 0.01


def test_psi_grows_with_the_shift() -> None:
    ref = _frame(20_000)["f_x"]
    small, large = (
        psi(ref, _frame(20_000, shift=0.2, seed=3)["f_x"]),
        psi(ref, _frame(20_000, shift=1.5, seed=3)["f_x"]),
    )
    assert 0.01 < small < large and large > 0.25


def test_psi_handles_missing_infinite_and_empty() -> None:
    ref = pd.Series([1.0, 2.0, np.nan, np.inf, 3.0] * 100)
    assert np.isfinite(psi(ref, ref))
    assert np.isnan(psi(pd.Series([], dtype=float), ref))
    # a feature that becomes all-missing is a large shift
    assert psi(pd.Series(np.arange(1000.0)), pd.Series([np.nan] * 1000)) > 1.0


def test_report_blocks_on_feature_shift_and_names_it() -> None:
    rep = drift_report(
        _frame(10_000), _frame(2_000, shift=2.0, seed=5), ["f_x", "f_channel"], "label_reach", 0.25, 2.0
    )
    assert rep["blocked"] and rep["reasons"][0].startswith("PSI f_x")
    assert rep["psi"]["f_channel"] < 0.25


@pytest.mark.parametrize(("rate", "blocked"), [(0.2, False), (0.5, True), (0.05, True)])
def test_report_blocks_on_label_rate(rate: float, blocked: bool) -> None:
    rep = drift_report(_frame(10_000), _frame(5_000, rate=rate, seed=7), ["f_x"], "label_reach", 0.25, 2.0)
    assert rep["blocked"] is blocked


def test_psi_is_not_measured_on_too_few_rows() -> None:
    # 40 rows against the window: PSI would be sampling noise, so it is not computed
    rep = drift_report(_frame(10_000), _frame(40, shift=2.0, seed=5), ["f_x"], "label_reach", 0.25, 2.0)
    assert rep["psi"] == {} and rep["psi_measured"] is False and not rep["blocked"]


def test_label_rate_of_a_handful_of_rows_never_flags() -> None:
    # 0 of 8: the rate's interval still holds the window's rate
    rep = drift_report(_frame(10_000), _frame(8, rate=0.0, seed=5), ["f_x"], "label_reach", 0.25, 2.0)
    assert not rep["blocked"] and rep["label_rate_ratio"] == 0.0
    lo, hi = rep["label_rate_interval"]
    assert lo == 0.0 and hi > 0.2


def test_wilson_interval() -> None:
    lo, hi = wilson_interval(20, 100, 0.95)
    assert lo == pytest.approx(0.1333, abs=1e-3) and hi == pytest.approx(0.2888, abs=1e-3)
    assert wilson_interval(0, 0, 0.95) == (0.0, 1.0)


def test_no_false_alarm_on_thin_samples_of_the_same_population() -> None:
    # 200 rows a day for a week against a month: same population, nothing flagged
    alarms = 0
    for seed in range(20):
        window = _frame(6000, seed=100 + seed)
        recent = _frame(1400, seed=200 + seed)
        alarms += drift_report(window, recent, ["f_x", "f_channel"], "label_reach", 0.25, 2.0)["blocked"]
    assert alarms == 0


def test_a_capped_reference_holds_whole_persons_drawn_before_the_read(settings, monkeypatch) -> None:
    d = date(2026, 3, 10)
    write_days(settings, d, days=10, rows=150, truth=False)
    w = dataset.plan_window(settings, d)
    label = dataset.label_column(settings)
    test_df = dataset.labelled(dataset.read_day(settings, w.test_day), label)
    whole = drift.measure_drift(settings, w, test_df, w.features, label)

    reads = []

    def recorded(*args, **kwargs):
        for x, df in dataset.labelled_days(*args, **kwargs):
            reads.append((kwargs["share"], df))
            yield x, df

    monkeypatch.setattr(drift, "labelled_days", recorded)
    monkeypatch.setattr(drift, "DRIFT_REFERENCE_ROWS", 300)
    capped = drift.measure_drift(settings, w, test_df, w.features, label)
    assert whole["rows_window"] > 600 and capped["rows_window"] == 300
    share = reads[0][0]
    assert 0 < share < 1
    for _, df in reads:  # every row read is a kept person's: the cut was made before the sort
        assert training_sample.person_sample(df["person_id"], share, settings.seed).all()
        assert "f_dow" not in df.columns  # and only the watched columns were read
