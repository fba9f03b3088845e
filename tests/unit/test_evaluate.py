"""ml.evaluate: metric definitions, ranking within groups, calibrators and baselines."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from contactrank.ml import evaluate as ev


def test_ece_by_hand() -> None:
    # two bins used: p=0.1 (4 rows, 1 success -> rate .25) and p=0.9 (4 rows, 4 successes)
    p = np.array([0.1] * 4 + [0.9] * 4)
    y = np.array([1, 0, 0, 0, 1, 1, 1, 1])
    assert ev.ece(y, p) == pytest.approx((4 * abs(0.1 - 0.25) + 4 * abs(0.9 - 1.0)) / 8)


def test_ece_small_for_calibrated_and_large_for_distorted() -> None:
    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 200_000)
    y = (rng.random(len(p)) < p).astype(int)
    assert ev.ece(y, p) < 0.005
    assert ev.ece(y, p**2) > 0.1


def test_hit_at_1_counts_ties_fractionally_and_skips_ineligible_groups() -> None:
    groups = np.array(["a", "a", "a", "b", "b", "c", "d", "d"])
    y = np.array([0, 1, 0, 1, 0, 1, 0, 0])
    # a: top (0.9) is the success -> 1; b: tie at the top between a success and a failure -> 0.5
    # c: a single row, d: no success -> not eligible
    s = np.array([0.1, 0.9, 0.5, 0.3, 0.3, 0.7, 0.2, 0.1])
    assert ev.hit_at_1(y, s, groups) == pytest.approx(0.75)
    # a constant score earns the success share of each group
    assert ev.hit_at_1(y, np.zeros(8), groups) == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_ndcg_at_3_by_hand() -> None:
    groups = np.array(["a"] * 4)
    y = np.array([1, 0, 1, 0])
    s = np.array([0.1, 0.9, 0.8, 0.2])  # order: 0, 1, 0, 1 (ranks 1..4): successes at 2 and 4
    dcg = 1 / np.log2(3)  # only rank 2 within the top 3
    idcg = 1 / np.log2(2) + 1 / np.log2(3)
    assert ev.ndcg_at_k(y, s, groups, k=3) == pytest.approx(dcg / idcg)
    assert ev.ndcg_at_k(y, y.astype(float), groups, k=3) == pytest.approx(1.0)


def test_evaluate_reports_channels_and_nan_for_single_class_slices() -> None:
    y = np.array([0, 1, 0, 1, 1, 1])
    s = np.array([0.1, 0.8, 0.3, 0.6, 0.5, 0.4])
    g = np.array(["p1", "p1", "p2", "p2", "p3", "p3"])
    ch = np.array(["voice", "voice", "sms", "sms", "email", "email"])
    m = ev.evaluate(y, s, g, ch)
    assert m["auc"] == pytest.approx(1.0 - 0.0)  # every success above every failure
    assert m["auc_voice"] == 1.0 and m["hit1_sms"] == 1.0
    assert np.isnan(m["auc_email"])  # only successes on e-mail
    assert {"pr_auc", "log_loss", "brier", "ece", "hit1", "ndcg3"} <= set(m)


def test_fit_calibrator_fixes_a_distorted_score_out_of_fold() -> None:
    rng = np.random.default_rng(1)
    p = rng.uniform(0.01, 0.6, 40_000)
    y = (rng.random(len(p)) < p).astype(int)
    raw = np.sqrt(p)  # overconfident: too high everywhere
    folds = rng.integers(0, 2, len(p))
    cal, report = ev.fit_calibrator(raw, y, folds)
    assert report["method"] in {"isotonic", "platt"}
    assert report["cv_ece"][report["method"]] < report["cv_ece"]["none"] / 3
    fresh = rng.uniform(0.01, 0.6, 40_000)
    yf = (rng.random(len(fresh)) < fresh).astype(int)
    assert ev.ece(yf, cal.predict(np.sqrt(fresh))) < ev.ece(yf, np.sqrt(fresh)) / 3


def test_fit_calibrator_keeps_a_calibrated_score_as_is() -> None:
    rng = np.random.default_rng(2)
    p = rng.uniform(0.01, 0.9, 20_000)
    y = (rng.random(len(p)) < p).astype(int)
    cal, report = ev.fit_calibrator(p, y, rng.integers(0, 2, len(p)))
    # nothing beats the truth out of fold by enough to matter; if chosen, it must not hurt
    if cal is None:
        assert report["method"] == "none"
    else:
        assert ev.ece(y, cal.predict(p)) <= ev.ece(y, p) + 0.005


def test_isotonic_calibrator_keeps_the_order_of_distinct_scores() -> None:
    rng = np.random.default_rng(3)
    raw = rng.uniform(0, 1, 5000)
    y = (rng.random(5000) < raw**3).astype(int)
    cal = ev.IsotonicCalibrator.fit(raw, y)
    xs = np.sort(raw)
    out = cal.predict(xs)
    assert np.all(np.diff(out) > 0)  # strictly increasing: no ties introduced
    assert out.min() >= 0 and out.max() <= 1


def test_heuristic_prefers_recent_success_then_customer_source() -> None:
    df = pd.DataFrame(
        {
            "f_c_days_since_reach": [np.nan, 3.0, 30.0, np.nan],
            "f_source": ["bureau", "bureau", "bureau", "customer"],
        }
    )
    order = np.argsort(-ev.heuristic_score(df))
    assert list(order) == [1, 2, 3, 0]


def test_oracle_reads_truth_by_attempt_id(tmp_path) -> None:
    path = tmp_path / "truth_attempts.parquet"
    pd.DataFrame({"attempt_id": ["a", "b"], "p_reach": [0.2, 0.7], "p_conversion": [0.1, 0.3]}).to_parquet(
        path
    )
    got = ev.oracle_probabilities(path, pd.Series(["b", "x", "a"]), "reach")
    assert got[0] == 0.7 and np.isnan(got[1]) and got[2] == 0.2
    assert ev.oracle_probabilities(tmp_path / "absent.parquet", pd.Series(["a"]), "reach") is None


def test_confusion_and_operating_threshold() -> None:
    y = np.array([1, 1, 0, 0, 1])
    p = np.array([0.9, 0.6, 0.55, 0.1, 0.2])
    assert ev.confusion(y, p, 0.5) == {"tp": 2, "fp": 1, "fn": 1, "tn": 1}
    t = ev.operating_threshold(y, p)
    assert 0.0 < t <= 0.9
