"""ml.registry.decide: the promotion rules, one failure path at a time."""

from __future__ import annotations

import pytest

from contactrank.ml.registry import Scorecard, decide
from contactrank.settings import Settings


@pytest.fixture
def s(settings: Settings) -> Settings:
    return settings.replace(
        gate_auc_margin=0.005, gate_slice_drop=0.02, gate_ece_cap=0.05, gate_auc_floor=0.55
    )


def good() -> Scorecard:
    return Scorecard(auc=0.75, ece=0.01, channels={"voice": 0.74, "sms": 0.70})


def test_first_model_needs_floors_only(s: Settings) -> None:
    ok, reasons = decide(s, good(), None)
    assert ok
    assert any("first model" in r for r in reasons)
    assert all(r.startswith("ok:") for r in reasons)


@pytest.mark.parametrize(
    ("card", "needle"),
    [
        (Scorecard(auc=0.54, ece=0.01), "vs floor"),
        (Scorecard(auc=float("nan"), ece=0.01), "vs floor"),
        (Scorecard(auc=0.80, ece=0.051), "vs cap"),
    ],
)
def test_first_model_fails_a_floor(s: Settings, card: Scorecard, needle: str) -> None:
    ok, reasons = decide(s, card, None)
    assert not ok
    failed = [r for r in reasons if r.startswith("fail:")]
    assert len(failed) == 1 and needle in failed[0]


def test_challenger_within_margin_is_promoted(s: Settings) -> None:
    champion = Scorecard(auc=0.754, ece=0.01, channels={"voice": 0.75, "sms": 0.71})
    ok, reasons = decide(s, good(), champion)
    assert ok, reasons
    assert any("slice voice" in r for r in reasons) and any("slice sms" in r for r in reasons)


def test_challenger_below_margin_keeps_champion(s: Settings) -> None:
    champion = Scorecard(auc=0.756, ece=0.01, channels={"voice": 0.74, "sms": 0.70})
    ok, reasons = decide(s, good(), champion)
    assert not ok
    assert [r for r in reasons if r.startswith("fail:")] == [
        "fail: auc 0.7500 vs champion 0.7560 (margin 0.0050)"
    ]


def test_one_channel_slice_dropping_too_much_blocks(s: Settings) -> None:
    challenger = Scorecard(auc=0.76, ece=0.01, channels={"voice": 0.78, "sms": 0.67})
    champion = Scorecard(auc=0.75, ece=0.01, channels={"voice": 0.74, "sms": 0.695, "email": 0.6})
    ok, reasons = decide(s, challenger, champion)
    assert not ok
    failed = [r for r in reasons if r.startswith("fail:")]
    assert len(failed) == 1 and failed[0].startswith("fail: slice sms")
    assert not any("email" in r for r in reasons)  # a slice only the champion has is not compared
