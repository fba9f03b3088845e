"""Off-policy estimators on toy logs whose true values are known, and the lake/export plumbing."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contactrank.errors import InputError, NotReady
from contactrank.features.lake import write_partition
from contactrank.ml import policy_eval as pe
from contactrank.ml.publish import publish
from contactrank.ml.score import HOUR_LOG_FILE, REPORT_FILE, SCORES_SCHEMA


def toy_log(n: int, seed: int = 0):
    """Two addresses per person; logging policy: epsilon-greedy (0.8 on a, 0.2 on b).

    Reach probabilities: a 0.3, b 0.6. True values: always-b 0.6, always-a 0.3, uniform 0.45.
    """
    rng = np.random.default_rng(seed)
    took_b = rng.random(n) < 0.2
    prop = np.where(took_b, 0.2, 0.8)
    reward = (rng.random(n) < np.where(took_b, 0.6, 0.3)).astype(float)
    return took_b, prop, reward


@pytest.mark.parametrize("target,truth", [("b", 0.6), ("a", 0.3), ("uniform", 0.45)])
def test_ips_and_snips_recover_the_true_value(target, truth):
    took_b, prop, reward = toy_log(40000)
    pi = {"b": took_b.astype(float), "a": (~took_b).astype(float), "uniform": np.full(len(prop), 0.5)}[target]
    out = pe.estimate(reward, prop, pi)
    for name in ("ips", "snips"):
        lo, hi = out[f"{name}_ci"]
        assert lo < truth < hi
        assert abs(out[name] - truth) < 0.02
        assert hi - lo < 0.05


def test_confidence_intervals_cover_the_truth_at_the_nominal_rate():
    covered = {"ips": 0, "snips": 0}
    runs = 200
    for seed in range(runs):
        took_b, prop, reward = toy_log(2000, seed=seed)
        out = pe.estimate(reward, prop, took_b.astype(float))
        for name in covered:
            lo, hi = out[f"{name}_ci"]
            covered[name] += lo < 0.6 < hi
    for name, hits in covered.items():
        assert 0.90 <= hits / runs <= 0.99, (name, hits)


def test_logging_policy_estimate_is_the_on_policy_mean():
    took_b, prop, reward = toy_log(5000)
    out = pe.estimate(reward, prop, prop)
    assert out["ips"] == pytest.approx(reward.mean()) and out["snips"] == pytest.approx(reward.mean())
    assert out["ess"] == pytest.approx(5000)


def test_estimate_refuses_bad_propensities():
    with pytest.raises(ValueError, match="propensities"):
        pe.estimate(np.array([1.0]), np.array([0.0]), np.array([1.0]))


D = date(2026, 11, 20)


def publish_day(settings, d: date, rows: list[tuple], extra: dict[str, bytes] | None = None) -> None:
    """rows: (person_id, contact_id, rank, score, propensity, explore); ``extra``: more files."""
    n = len(rows)
    table = pa.table(
        {
            "person_id": [r[0] for r in rows],
            "contact_id": [r[1] for r in rows],
            "channel": ["voice"] * n,
            "rank": [r[2] for r in rows],
            "score": [r[3] for r in rows],
            "best_hour": [10] * n,
            "reason": ["x"] * n,
            "explore": [r[5] for r in rows],
            "propensity": [r[4] for r in rows],
            "model_version": ["1"] * n,
            "_raw": [0.0] * n,
            "_invalid": [False] * n,
            "_n_attempts": [0] * n,
            "_greedy_rank": [1] * n,
        },
        schema=SCORES_SCHEMA,
    )
    write_partition(
        settings,
        "scores",
        d,
        table,
        extra_files={REPORT_FILE: json.dumps({"model": {"version": "1"}}).encode(), **(extra or {})},
    )
    publish(settings, d)


def attempts(settings, d: date, rows: list[tuple[str, str, str]]) -> None:
    n = len(rows)
    write_partition(
        settings,
        "attempts",
        d,
        pa.table(
            {
                "attempt_id": [f"{d}-{i}" for i in range(n)],
                "person_id": [r[0] for r in rows],
                "contact_id": [r[1] for r in rows],
                "channel": ["voice"] * n,
                "attempted_at": pa.array(
                    [datetime(d.year, d.month, d.day, 10, tzinfo=UTC)] * n, pa.timestamp("us", tz="UTC")
                ),
                "local_hour": pa.array([10] * n, pa.int8()),
                "outcome": [r[2] for r in rows],
            }
        ),
    )


def test_evaluate_policy_joins_rank1_rows_to_next_day_outcomes(settings):
    # p1: greedy a, explored b (logged b with propensity 0.1), b reached
    # p2: greedy c logged (propensity 0.9), not reached; p3: logged but never attempted (no feedback)
    publish_day(
        settings,
        D,
        [
            ("p1", "b", 1, 0.2, 0.1, True),
            ("p1", "a", 2, 0.7, 0.9, False),
            ("p2", "c", 1, 0.5, 0.9, False),
            ("p2", "d", 2, 0.1, 0.1, False),
            ("p3", "e", 1, 0.5, 1.0, False),
        ],
    )
    attempts(
        settings,
        D + timedelta(days=1),
        [("p1", "b", "right_party"), ("p2", "c", "no_answer"), ("p2", "c", "busy")],
    )
    model = pe.evaluate_policy(settings, D, D, policy="model")
    assert model["n"] == 2 and model["days"] == 1
    # model picks a for p1 (pi=0 on the logged b) and c for p2 (pi=1, reward 0): IPS = 0
    assert model["ips"] == 0.0
    rnd = pe.evaluate_policy(settings, D, D, policy="random")
    # w = 0.5/0.1 = 5 (reward 1) and 0.5/0.9 (reward 0)
    assert rnd["ips"] == pytest.approx((5 * 1 + 0) / 2)
    assert rnd["snips"] == pytest.approx(5 / (5 + 0.5 / 0.9))
    logging_ = pe.evaluate_policy(settings, D, D, policy="logging")
    assert logging_["ips"] == pytest.approx(0.5)
    with pytest.raises(InputError, match="policy"):
        pe.evaluate_policy(settings, D, D, policy="nope")
    with pytest.raises(NotReady):
        pe.evaluate_policy(settings, D + timedelta(days=5), D + timedelta(days=6))


def test_evaluate_policy_says_how_much_of_the_target_the_log_supports(settings):
    # b was never a possible rank 1 (propensity 0): a uniform target puts half its mass there
    publish_day(settings, D, [("p1", "a", 1, 0.7, 1.0, False), ("p1", "b", 2, 0.2, 0.0, False)])
    attempts(settings, D + timedelta(days=1), [("p1", "a", "right_party")])
    assert pe.evaluate_policy(settings, D, D, policy="model")["support"] == 1.0
    rnd = pe.evaluate_policy(settings, D, D, policy="random")
    assert rnd["support"] == 0.5 and rnd["ips"] == pytest.approx(0.5)


UTC_MICROS = pa.timestamp("us", tz="UTC")


def test_hour_policies_are_valued_from_the_hour_log_at_the_logged_hour(settings):
    # p1 kept its greedy 10h and was reached at 10h; p2 explored 15h (greedy 19h) and was reached
    # at 15h; p3 was called at another hour than logged: no feedback
    log = pa.table(
        {
            "person_id": ["p1", "p2", "p3"],
            "contact_id": ["a", "b", "c"],
            "best_hour": pa.array([10, 15, 19], pa.int32()),
            "greedy_hour": pa.array([10, 19, 19], pa.int32()),
            "hour_explore": [False, True, False],
            "hour_propensity": [0.9, 0.05, 0.9],
            "less_tried_hours": pa.array([2, 2, 1], pa.int32()),
        }
    )
    sink = pa.BufferOutputStream()
    pq.write_table(log, sink)
    publish_day(settings, D, [("p1", "a", 1, 0.5, 1.0, False)], {HOUR_LOG_FILE: sink.getvalue().to_pybytes()})
    n = 3
    write_partition(
        settings,
        "attempts",
        D + timedelta(days=1),
        pa.table(
            {
                "attempt_id": [f"h{i}" for i in range(n)],
                "person_id": ["p1", "p2", "p3"],
                "contact_id": ["a", "b", "c"],
                "channel": ["voice"] * n,
                "attempted_at": pa.array([datetime(2026, 11, 21, 13, tzinfo=UTC)] * n, UTC_MICROS),
                "local_hour": pa.array([10, 15, 12], pa.int8()),
                "outcome": ["right_party", "right_party", "no_answer"],
            }
        ),
    )
    greedy = pe.evaluate_policy(settings, D, D, policy="greedy_hour")
    assert greedy["n"] == 2 and greedy["ips"] == pytest.approx((1 / 0.9) / 2)
    less_tried = pe.evaluate_policy(settings, D, D, policy="less_tried_hour")
    assert less_tried["ips"] == pytest.approx((0.5 / 0.05) / 2) and less_tried["snips"] == pytest.approx(1.0)
    assert pe.evaluate_policy(settings, D, D, policy="logging_hour")["ips"] == pytest.approx(1.0)
    with pytest.raises(NotReady):
        pe.evaluate_policy(settings, D + timedelta(days=3), D + timedelta(days=4), policy="greedy_hour")
