"""Drift guard on tiny frames: stable data passes, a shifted feature or label rate blocks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from contactrank.ml.drift import drift_report, psi


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
