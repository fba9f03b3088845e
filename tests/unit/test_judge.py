"""bench/judge.py: the figures of a published file against known true probabilities (toy worlds)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from helpers.bench import bench_module

judge = bench_module("judge")

H = judge.HOURS.size


def _p(best_hour: int, low: float, high: float) -> np.ndarray:
    row = np.full(H, low)
    row[best_hour - judge.HOURS[0]] = high
    return row


def _rows(rank, score, best_hour, status=None) -> pd.DataFrame:
    n = len(rank)
    return pd.DataFrame(
        {
            "person_id": ["a", "a", "b", "b"][:n],
            "contact_id": ["x1", "x2", "y1", "y2"][:n],
            "rank": rank,
            "score": score,
            "best_hour": best_hour,
            "status": status or ["valid"] * n,
            "explore": [False] * n,
        }
    )


# person a: x1 is good at 10h, x2 is dead; person b: y2 is good at 19h, y1 mediocre
P = np.vstack([_p(10, 0.1, 0.5), np.zeros(H), _p(12, 0.05, 0.1), _p(19, 0.2, 0.6)])
STATUS = ["valid", "dead", "valid", "valid"]


def test_oracle_pick_captures_everything_and_random_nothing():
    rows = _rows([1, 2, 2, 1], [0.5, 0.0, 0.1, 0.6], [10, 10, 12, 19], STATUS)
    out = judge.judge_frame(rows, P, heur=np.array([1.0, 0.0, 0.0, 1.0]), est=None)
    cr = out["arms"]["contactrank"]
    assert cr["capture"] == pytest.approx(1.0) and cr["hour"] == pytest.approx(1.0)
    assert cr["address"] == pytest.approx(1.0) and cr["dead"] == 0.0
    assert out["arms"]["oracle"]["capture"] == pytest.approx(1.0)
    assert out["arms"]["random"]["capture"] == 0.0
    assert cr["ece"] == pytest.approx(0.0, abs=1e-12)  # the scores are the true p at their hour
    h = out["arms"]["heuristic"]  # picks the dead x2 and the mediocre y1, at a uniform hour
    assert h["dead"] == 0.5 and h["capture"] < 0 and h["hour"] == 0.0


def test_right_address_wrong_hour_splits_the_capture():
    rows = _rows([1, 2, 2, 1], [0.3, 0.0, 0.1, 0.3], [8, 8, 12, 8], STATUS)
    out = judge.judge_frame(rows, P, heur=np.zeros(4), est=None)
    cr = out["arms"]["contactrank"]
    assert cr["address"] == pytest.approx(1.0)
    assert cr["hour"] == pytest.approx(
        (0.1 - P[0].mean() + 0.2 - P[3].mean()) / (0.5 - P[0].mean() + 0.6 - P[3].mean())
    )
    assert 0 < cr["capture"] < 1 and cr["at_19h"] == 0.0
    assert cr["ece"] > 0.05


def test_ceiling_column_and_share_of_ceiling():
    rows = _rows([2, 1, 1, 2], [0.1, 0.2, 0.1, 0.2], [10, 10, 12, 19], STATUS)
    est = P * 0.9  # an estimator that ranks like the truth
    out = judge.judge_frame(rows, P, heur=np.zeros(4), est=est)
    assert out["arms"]["ceiling"]["capture"] == pytest.approx(1.0)
    assert out["arms"]["contactrank"]["dead"] == 0.5
    assert out["arms"]["contactrank"]["of_ceiling"] == pytest.approx(out["arms"]["contactrank"]["capture"])


def test_score_over_truth_at_rank_1_and_below():
    # rank 1 promises half its truth, the rows below promise what they get
    rows = _rows([1, 2, 2, 1], [0.25, 0.0, 0.1, 0.3], [10, 10, 12, 19], STATUS)
    cr = judge.judge_frame(rows, P, heur=np.zeros(4), est=None)["arms"]["contactrank"]
    assert cr["score_over_truth_rank1"] == pytest.approx((0.25 + 0.3) / (0.5 + 0.6))
    assert cr["score_over_truth_below"] == pytest.approx(0.1 / 0.1)


def test_ece_bins():
    assert judge.ece(np.array([0.1, 0.1]), np.array([0.1, 0.1])) == 0.0
    assert judge.ece(np.array([0.2, 0.8]), np.array([0.1, 0.9])) == pytest.approx(0.1)


def test_the_ceiling_draws_an_address_position_the_contract_does_not_give():
    ceiling = bench_module("judge_ceiling")
    rng = np.random.default_rng(0)
    person = np.array(["a", "a", "b", "b", "c"])
    rank = np.array([0, 1, 0, 1, 1])
    in_book = np.array([True, True, True, True, False])  # c's address came later (enrichment)
    # b's book held four addresses, two of them neither published nor ever tried
    drawn = ceiling.positions_drawn(rng, person, rank, in_book, pd.Series({"a": 2, "b": 4}))
    assert drawn.shape == (5, ceiling.K)
    assert (np.sort(drawn[:2], axis=0) == [[0], [1]]).all()  # a permutation of a's two positions
    assert (drawn[2] != drawn[3]).all() and drawn[2:4].max() <= 3  # without replacement from b's four
    assert abs((drawn[2] == 0).mean() - 0.25) < 0.03  # each position equally likely
    assert (drawn[4] == 1).all()  # not in the first book: its rank as given


def test_spread_over_model_seeds():
    reports = [
        {"arms": {"contactrank": {"capture": c, "ece": e, "of_ceiling": float("nan")}}}
        for c, e in ((0.40, 0.01), (0.44, 0.02), (0.42, 0.03))
    ]
    s = judge.spread(reports)
    assert s["capture"] == pytest.approx((0.42, 0.02, 0.40, 0.44))
    assert s["ece"][0] == pytest.approx(0.02)
    assert "of_ceiling" not in s  # judged without the ceiling: no share of it
    assert np.isnan(judge.spread(reports[:1])["capture"][1])  # one run has no spread


def test_the_ceiling_told_buckets_keeps_each_hour_in_its_bucket():
    ceiling = bench_module("judge_ceiling")
    from contactrank.features.context import bucket_index

    hours = np.tile(np.arange(24), 200)
    told = ceiling.hour_in_bucket(hours, np.random.default_rng(0))
    assert (bucket_index(told.astype(float)) == bucket_index(hours.astype(float))).all()
    morning = told[(hours >= 8) & (hours <= 11)]
    assert set(morning) == {8, 9, 10, 11}  # redrawn over the whole bucket, not left in place
    assert (told != hours).mean() > 0.5
    again = ceiling.hour_in_bucket(hours, np.random.default_rng(0))
    assert (again == told).all()
    with pytest.raises(ValueError, match="told must be one of"):
        ceiling._history(None, None, told="hours")


def test_the_learned_ceiling_fits_on_a_fixed_draw_of_the_files_persons():
    rows = pd.DataFrame({"person_id": np.repeat([f"p{i}" for i in range(50)], 2), "contact_id": range(100)})
    assert judge.fit_sample(rows, 80) is rows  # fewer persons than asked: all of them
    drawn = judge.fit_sample(rows, 10)
    assert drawn["person_id"].nunique() == 10 and len(drawn) == 20  # every row of a drawn person
    assert drawn.equals(judge.fit_sample(rows, 10))
