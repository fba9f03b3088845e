"""bench/bank_marketing.py: the gate figures it reports against the issue's targets."""

from __future__ import annotations

from helpers.bench import bench_module


def test_share_of_challengers_promoted_or_held() -> None:
    bank = bench_module("bank_marketing")
    assert bank._not_rejected({"promoted": 2, "held": 1, "rejected": 3}) == 0.5
    assert bank._not_rejected({"promoted": 0, "held": 0, "rejected": 0}) is None


def test_gate_reasons_are_counted_by_rule() -> None:
    rule = bench_module("bank_marketing")._rule
    assert rule("hold: not enough evidence: auc 0.5 [0.4, 0.6] at 90% vs floor 0.55: ...") == "hold_floor"
    assert rule("hold: not enough evidence: auc 0.7 vs champion 0.7: the interval straddles -margin") == (
        "hold_interval"
    )
    assert rule("hold: not enough evidence: 40 rows, 3 positives, 37 negatives on d") == "hold_evidence"
    assert rule("fail: auc 0.3 [0.2, 0.4] at 90% vs floor 0.5500: below beyond doubt") == "auc_floor"
    assert rule("fail: log loss 0.3 vs champion 0.2: difference +0.1 [+0.05, +0.15]: worse") == "log_loss"
