"""ml.gate: the promotion rules one path at a time, and the DeLong interval's coverage."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from contactrank.ml.gate import (
    HELD,
    PROMOTED,
    REJECTED,
    Evidence,
    Scorecard,
    auc_interval,
    compare,
    decide,
    delong_interval,
)
from contactrank.settings import Settings


@pytest.fixture
def s(settings: Settings) -> Settings:
    return settings.replace(
        gate_auc_margin=0.005,
        gate_slice_drop=0.02,
        gate_ece_cap=0.05,
        gate_ece_margin=0.02,
        gate_auc_floor=0.55,
        gate_min_rows=300,
        gate_min_positives=30,
        max_champion_age_days=35,
    )


def card(auc: float = 0.75, ece: float = 0.01, ll: float = 0.40, brier: float = 0.12, **ch) -> Scorecard:
    return Scorecard(auc=auc, ece=ece, channels=dict(ch), log_loss=ll, brier=brier)


def evidence(
    ch: Scorecard,
    cp: Scorecard | None,
    lo: float,
    hi: float,
    rows: int = 2000,
    pos: int = 400,
    half: float = 0.002,
):
    """Evidence with the AUC interval [lo, hi]; the log loss, Brier and slice differences are the
    scorecards' differences +- ``half``."""
    out = Evidence(rows, pos, "2026-01-01..2026-01-07 (7 days)", ch, cp, (lo + hi) / 2, lo, hi)
    out.auc_ci = (ch.auc - half, ch.auc + half)
    if cp is not None:
        for name in ("log_loss", "brier"):
            d = getattr(ch, name) - getattr(cp, name)
            setattr(out, f"{name}_diff", (d, d - half, d + half))
        for c in sorted(set(ch.channels) & set(cp.channels)):
            d = ch.channels[c] - cp.channels[c]
            out.slices[c] = (d, d - half, d + half)
    return out


def test_first_model_needs_floors_only(s: Settings) -> None:
    decision, reasons = decide(s, evidence(card(), None, np.nan, np.nan))
    assert decision == PROMOTED and any("first model" in r for r in reasons)
    assert all(r.startswith("ok:") for r in reasons)


@pytest.mark.parametrize(("c", "needle"), [(card(auc=0.54), "vs floor"), (card(ece=0.051), "vs cap")])
def test_first_model_fails_a_floor(s: Settings, c: Scorecard, needle: str) -> None:
    decision, reasons = decide(s, evidence(c, None, np.nan, np.nan))
    failed = [r for r in reasons if r.startswith("fail:")]
    assert decision == REJECTED and len(failed) == 1 and needle in failed[0]


def test_the_floor_holds_within_the_noise_and_fails_beyond_doubt(s: Settings) -> None:
    # a weak challenger on a thin day (300 rows, ~30 positives): AUC 0.48, interval +- 0.09
    rng = np.random.default_rng(8)
    y = (rng.random(300) < 0.1).astype(int)
    weak = 0.1 + 0.01 * y + rng.normal(0, 0.05, 300)
    ev_ = compare(s, y, np.clip(weak, 0.01, 0.99), None, np.full(300, "voice"), "d")
    assert ev_.challenger.auc < s.gate_auc_floor < ev_.auc_ci[1]
    decision, reasons = decide(s, ev_)
    assert decision == HELD and reasons[0].startswith("hold: not enough evidence: auc")
    # a weak model on 20 times the rows (AUC 0.52 +- 0.02) is below the floor beyond doubt
    y, weak = np.tile(y, 20), 0.1 + 0.005 * np.tile(y, 20) + rng.normal(0, 0.05, 6000)
    ev_ = compare(s, y, np.clip(weak, 0.01, 0.99), None, np.full(6000, "voice"), "d")
    decision, reasons = decide(s, ev_)
    assert decision == REJECTED and reasons[0].endswith("below beyond doubt")


def test_auc_interval_of_one_model_matches_its_auc_and_narrows_with_rows() -> None:
    rng = np.random.default_rng(9)
    y = rng.random(2000) < 0.2
    p = y + rng.normal(0, 1.5, 2000)
    lo, hi = auc_interval(y, p, 0.9)
    assert lo < roc_auc_score(y, p) < hi and hi - lo < 0.06
    lo_small, hi_small = auc_interval(y[:200], p[:200], 0.9)
    assert hi_small - lo_small > 2 * (hi - lo)


def test_undefined_auc_is_held_never_failed(s: Settings) -> None:
    decision, reasons = decide(s, evidence(card(auc=np.nan), card(), np.nan, np.nan, rows=40, pos=0))
    assert decision == HELD and reasons[0].startswith("hold: not enough evidence: AUC undefined")
    assert not any(r.startswith("fail:") for r in reasons)


def test_too_few_rows_or_positives_hold_the_champion(s: Settings) -> None:
    decision, reasons = decide(s, evidence(card(auc=0.9), card(), 0.1, 0.2, rows=2000, pos=12))
    assert decision == HELD
    assert any(r.startswith("hold: not enough evidence: 2000 rows, 12 positives") for r in reasons)


def test_not_worse_and_better_proper_scores_promote(s: Settings) -> None:
    decision, reasons = decide(s, evidence(card(ll=0.39, brier=0.11), card(), -0.004, 0.02))
    assert decision == PROMOTED, reasons
    assert any("not worse" in r and "[-0.0040, +0.0200] at 90%" in r for r in reasons)


def test_interval_wholly_below_the_margin_rejects(s: Settings) -> None:
    decision, reasons = decide(s, evidence(card(ll=0.39, brier=0.11), card(), -0.05, -0.01))
    assert decision == REJECTED and any(r.startswith("fail: auc") and r.endswith("worse") for r in reasons)


def test_interval_straddling_the_margin_is_not_enough_evidence(s: Settings) -> None:
    # the log loss difference (-0.01 +- 0.02) straddles 0 as well: nothing is shown either way
    decision, reasons = decide(s, evidence(card(ll=0.39, brier=0.11), card(), -0.03, 0.01, half=0.02))
    assert decision == HELD and any("straddles -margin" in r for r in reasons)
    assert any(r.startswith("hold: not enough evidence: log loss") for r in reasons)
    assert not any(r.startswith("fail:") for r in reasons)


def test_straddling_auc_with_a_log_loss_better_beyond_doubt_promotes(s: Settings) -> None:
    # a moved base rate: the ranking is the same (AUC interval wide on thin days), the
    # calibration is not; the proper score shows the challenger better
    decision, reasons = decide(s, evidence(card(ll=0.39, brier=0.11), card(), -0.03, 0.01))
    assert decision == PROMOTED, reasons
    assert any("not shown worse, and the log loss is better beyond doubt" in r for r in reasons)


def test_a_challenger_both_point_estimates_favour_is_promoted_on_thin_evidence(s: Settings) -> None:
    # both intervals straddle (one thin day), but the AUC and the log loss lean the newer model's
    # way: holding it would keep an older champion on no evidence for it
    decision, reasons = decide(s, evidence(card(ll=0.39, brier=0.11), card(), -0.02, 0.03, half=0.02))
    assert decision == PROMOTED, reasons
    assert any("not shown worse, and better on both point estimates" in r for r in reasons)
    assert any("better on the point estimate, with the AUC" in r for r in reasons)
    assert not any(r.startswith("hold:") for r in reasons)
    # the same thin day leaning the champion's way on the AUC holds
    decision, reasons = decide(s, evidence(card(ll=0.39, brier=0.11), card(), -0.03, 0.02, half=0.02))
    assert decision == HELD and any("straddles -margin" in r for r in reasons)
    # and on the log loss as well
    decision, reasons = decide(s, evidence(card(ll=0.41, brier=0.13), card(), -0.02, 0.03, half=0.02))
    assert decision == HELD and any(r.startswith("hold: not enough evidence: log loss") for r in reasons)


def test_equal_models_on_thin_evidence_are_not_rejected_on_noise(s: Settings) -> None:
    # two models of the same quality on 400 rows over two channels: point comparisons of log loss,
    # Brier and slice AUCs rejected most of them (a coin flip each); with intervals a rejection
    # needs evidence, so it stays rare. Whether the newer one is promoted or held follows the
    # way the day leans: both happen, neither always
    rng = np.random.default_rng(5)
    decisions = []
    for _ in range(60):
        logit = rng.normal(-1.0, 1.0, 400)
        y = (rng.random(400) < 1 / (1 + np.exp(-logit))).astype(int)
        a, b = (1 / (1 + np.exp(-(logit + rng.normal(0, 0.5, 400)))) for _ in range(2))
        channels = np.where(rng.random(400) < 0.5, "voice", "sms")
        decisions.append(decide(s, compare(s, y, a, b, channels, "d"))[0])
    assert decisions.count(REJECTED) / len(decisions) < 0.25, decisions
    assert decisions.count(HELD) >= 10 and decisions.count(PROMOTED) >= 10, decisions


def test_a_recalibrated_challenger_replaces_a_champion_left_behind_by_the_base_rate(s: Settings) -> None:
    # 300 rows of one day after the rate doubled: the champion ranks as well but predicts half
    rng = np.random.default_rng(7)
    logit = rng.normal(-0.8, 1.2, 300)
    y = (rng.random(300) < 1 / (1 + np.exp(-logit))).astype(int)
    common = logit + rng.normal(0, 0.5, 300)  # what both models learned of the ranking
    challenger = 1 / (1 + np.exp(-(common + rng.normal(0, 0.2, 300))))
    champion = 1 / (1 + np.exp(-(common + rng.normal(0, 0.2, 300) - 1.0)))
    ev_ = compare(s, y, challenger, champion, np.full(300, "voice"), "d")
    assert ev_.auc_lo < -s.gate_auc_margin < ev_.auc_hi  # the ranking alone shows nothing
    decision, reasons = decide(s, ev_)
    assert decision == PROMOTED, reasons


def test_worse_log_loss_or_calibration_relative_to_the_champion_rejects(s: Settings) -> None:
    decision, reasons = decide(s, evidence(card(ll=0.41, brier=0.11), card(), 0.0, 0.02))
    assert decision == REJECTED and any(r.startswith("fail: log loss") for r in reasons)
    # an ECE far above any cap passes when the champion is as badly calibrated on the same rows
    decision, _ = decide(s, evidence(card(ece=0.12, ll=0.39, brier=0.11), card(ece=0.11), 0.0, 0.02))
    assert decision == PROMOTED
    decision, reasons = decide(s, evidence(card(ece=0.12, ll=0.39, brier=0.11), card(ece=0.05), 0.0, 0.02))
    assert decision == REJECTED and any(r.startswith("fail: ece") for r in reasons)


def test_one_channel_slice_dropping_too_much_blocks(s: Settings) -> None:
    ch = card(ll=0.39, brier=0.11, voice=0.78, sms=0.67)
    cp = card(voice=0.74, sms=0.695, email=0.6)
    decision, reasons = decide(s, evidence(ch, cp, 0.0, 0.02))
    failed = [r for r in reasons if r.startswith("fail:")]
    assert decision == REJECTED and len(failed) == 1 and failed[0].startswith("fail: slice sms")
    assert not any("email" in r for r in reasons)  # a slice only the champion has is not compared


def test_drift_blocks_only_a_challenger_that_is_not_better(s: Settings) -> None:
    drift = ["PSI f_x = 0.900 > 0.25"]
    better = evidence(card(ll=0.39, brier=0.11), card(), 0.0, 0.02)
    decision, reasons = decide(s, better, drift)
    assert decision == PROMOTED and any(r.startswith("ok: drift: PSI f_x") for r in reasons)
    worse = evidence(card(ll=0.41, brier=0.11), card(), 0.0, 0.02)
    decision, reasons = decide(s, worse, drift)
    assert decision == REJECTED and any(r.startswith("fail: drift: PSI f_x") for r in reasons)


def test_an_old_champion_gives_way_to_a_challenger_passing_the_floors(s: Settings) -> None:
    ev_ = evidence(card(ll=0.41, brier=0.13), card(), -0.03, 0.01, rows=100, pos=10)
    assert decide(s, ev_, champion_age_days=20)[0] == HELD
    decision, reasons = decide(s, ev_, champion_age_days=36)
    assert decision == PROMOTED and reasons[-1].startswith("ok: champion is 36 days old")
    assert not any(r.startswith(("fail:", "hold:")) for r in reasons)
    assert any(r.startswith("waived: not enough evidence") for r in reasons)
    # the floors still hold
    assert decide(s, evidence(card(auc=0.5), card(), -0.3, -0.2), champion_age_days=99)[0] == REJECTED


def test_delong_matches_sklearn_auc_and_is_nan_without_both_classes() -> None:
    rng = np.random.default_rng(0)
    y = rng.random(500) < 0.3
    a, b = y + rng.normal(0, 1, 500), y + rng.normal(0, 2, 500)
    diff, lo, hi = delong_interval(y, a, b, 0.9)
    assert diff == pytest.approx(roc_auc_score(y, a) - roc_auc_score(y, b))
    assert lo < diff < hi
    assert np.isnan(delong_interval(np.zeros(50), a[:50], b[:50], 0.9)[0])


def test_delong_interval_covers_zero_as_often_as_stated_when_the_models_are_equal() -> None:
    # two models of the same quality (independent noise of the same size on the true logit):
    # the 90% interval of their AUC difference must contain 0 about 90% of the time
    rng = np.random.default_rng(1)
    covered, trials = 0, 400
    for _ in range(trials):
        logit = rng.normal(-1.5, 1.2, 800)
        y = rng.random(800) < 1 / (1 + np.exp(-logit))
        a, b = logit + rng.normal(0, 1, 800), logit + rng.normal(0, 1, 800)
        _, lo, hi = delong_interval(y, a, b, 0.9)
        covered += lo <= 0 <= hi
    assert 0.85 <= covered / trials <= 0.95


def test_compare_scores_both_models_on_the_same_rows(s: Settings) -> None:
    rng = np.random.default_rng(2)
    y = (rng.random(1000) < 0.2).astype(int)
    p = np.clip(0.2 + 0.3 * (y - 0.2) + rng.normal(0, 0.1, 1000), 0.01, 0.99)
    ev_ = compare(s, y, p, np.full(1000, 0.2), np.array(["voice"] * 1000), "d")
    assert ev_.rows == 1000 and ev_.positives == y.sum()
    assert ev_.champion.auc == 0.5 and ev_.auc_lo > 0
    assert ev_.challenger.log_loss < ev_.champion.log_loss
