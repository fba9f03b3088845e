"""The promotion gate's decision: challenger and champion on the same held-out recent rows.

Pure computation (no MLflow): ``ml.registry.gate`` gathers the evidence (the labelled rows of the
challenger's test days that neither model trained on), scores both models on it and records what
:func:`decide` returns.

- **Floor**: the challenger's AUC (with its DeLong interval) at least ``gate_auc_floor``; below it
  beyond doubt fails, below it within the noise holds.
- **Evidence**: at least ``gate_min_rows`` rows and ``gate_min_positives`` of each class; less is
  "not enough evidence": the champion stays, and the challenger is held, not failed.
- **AUC**: the difference challenger - champion gets a DeLong interval (paired: both scores of
  every row) at ``gate_confidence``. Below ``-gate_auc_margin`` as a whole: worse, rejected; above
  it as a whole: not worse; straddling it: not enough evidence (held).
- **Proper scores**: the per-row differences of log loss and Brier (paired, same rows) get a
  normal interval at ``gate_confidence``. Worse beyond doubt on either: rejected. Log loss better
  beyond doubt: ok; its interval straddling 0: not enough evidence (held), never a failure.
- An AUC interval straddling ``-gate_auc_margin`` does not hold a challenger whose log loss is
  better beyond doubt: the AUC is not shown worse, and the proper score (ranking and calibration
  together) is shown better. A base-rate shift moves the calibration, not the ranking, so on
  thin days this is how a retrained model replaces a stale one.
- Nor do the two intervals hold a challenger that both point estimates favour (AUC difference at
  least 0, log loss lower): the challenger has seen more and newer days, and one thin day that
  leans its way is no reason to keep the older model. Holding it kept champions weeks older
  than the newest model on the judged worlds (docs/benchmarks.md).
- **Calibration** relative to the champion on the same rows (a moved base rate hurts both): ECE
  at most ``gate_ece_margin`` above the champion's. Only the first model meets ``gate_ece_cap``.
- **Channel slices**: the paired DeLong interval of each slice's AUC difference; a slice fails
  only when its whole interval lies below ``-gate_slice_drop`` (a thin slice's noise is not a drop).
- **Drift**: a shift found by the drift guard blocks only a challenger that is not better (log
  loss) on the recent rows; a model retrained on the shifted data is the remedy, not the victim.
- **Age**: a champion older than ``max_champion_age_days`` gives way to a challenger that passes
  the floors; the comparisons are then recorded as ``waived:``.

Every reason starts with ``ok:``, ``fail:``, ``hold:`` or ``waived:``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.stats import norm, rankdata

from contactrank.ml import evaluate as ev
from contactrank.settings import Settings

PROMOTED, REJECTED, HELD = "promoted", "rejected", "held"
PROB_EPS = 1e-6  # the clip of evaluate.binary_metrics: the intervals are about the figures it reports


@dataclass
class Scorecard:
    """One model on the gate's rows: AUC, proper scores, ECE, AUC per channel slice."""

    auc: float
    ece: float
    channels: dict[str, float] = field(default_factory=dict)
    log_loss: float = float("nan")
    brier: float = float("nan")


@dataclass
class Evidence:
    """The gate's rows and what both models scored on them."""

    rows: int
    positives: int
    days: str  # "first..last (n days)"
    challenger: Scorecard
    champion: Scorecard | None = None
    auc_diff: float = float("nan")
    auc_lo: float = float("nan")
    auc_hi: float = float("nan")
    # challenger - champion, mean per-row score and its interval (negative: the challenger better)
    log_loss_diff: tuple[float, float, float] = (float("nan"),) * 3
    brier_diff: tuple[float, float, float] = (float("nan"),) * 3
    slices: dict[str, tuple[float, float, float]] = field(default_factory=dict)  # AUC difference per channel
    auc_ci: tuple[float, float] = (float("nan"), float("nan"))  # the challenger's AUC interval (the floor)

    @property
    def negatives(self) -> int:
        return self.rows - self.positives


def scorecard(y: np.ndarray, p: np.ndarray, channels: np.ndarray) -> Scorecard:
    m = ev.binary_metrics(y, p)
    return Scorecard(
        auc=m["auc"],
        ece=m["ece"],
        channels=ev.channel_auc(y, p, channels),
        log_loss=m["log_loss"],
        brier=m["brier"],
    )


def delong_interval(
    y: np.ndarray, p1: np.ndarray, p2: np.ndarray, confidence: float
) -> tuple[float, float, float]:
    """(AUC(p1) - AUC(p2), lower, upper): DeLong's variance of the paired difference, normal interval.

    Structural components with mid-ranks (ties count a half), as in DeLong, DeLong and
    Clarke-Pearson (1988); NaN without both classes.
    """
    y = np.asarray(y).astype(bool)
    m, n = int(y.sum()), int((~y).sum())
    nan = float("nan")
    if m < 2 or n < 2:
        return nan, nan, nan
    v01, v10, aucs = [], [], []
    for p in (np.asarray(p1, dtype="float64"), np.asarray(p2, dtype="float64")):
        rank_all = rankdata(p)
        rank_pos, rank_neg = rankdata(p[y]), rankdata(p[~y])
        aucs.append((rank_all[y].sum() - m * (m + 1) / 2) / (m * n))
        v01.append((rank_all[y] - rank_pos) / n)  # per positive: share of negatives scored lower
        v10.append(1.0 - (rank_all[~y] - rank_neg) / m)  # per negative: share of positives above
    s01, s10 = np.cov(np.vstack(v01)), np.cov(np.vstack(v10))
    var = (s01[0, 0] + s01[1, 1] - 2 * s01[0, 1]) / m + (s10[0, 0] + s10[1, 1] - 2 * s10[0, 1]) / n
    diff = float(aucs[0] - aucs[1])
    half = float(norm.ppf(0.5 + confidence / 2) * np.sqrt(max(var, 0.0)))
    return diff, diff - half, diff + half


def auc_interval(y: np.ndarray, p: np.ndarray, confidence: float) -> tuple[float, float]:
    """The interval of one model's AUC: DeLong's difference against a constant score, whose AUC is
    0.5 with no variance (every pair tied), shifted back by 0.5."""
    _, lo, hi = delong_interval(y, p, np.zeros(len(y)), confidence)
    return lo + 0.5, hi + 0.5


def paired_interval(d: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """(mean, lower, upper) of per-row differences: normal interval of the mean (NaN below 2 rows)."""
    d = np.asarray(d, dtype="float64")
    if len(d) < 2:
        return (float("nan"),) * 3
    mean = float(d.mean())
    half = float(norm.ppf(0.5 + confidence / 2) * d.std(ddof=1) / np.sqrt(len(d)))
    return mean, mean - half, mean + half


def _row_scores(y: np.ndarray, p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-row log loss and Brier score (probabilities clipped as ``evaluate.binary_metrics`` does)."""
    pc = np.clip(np.asarray(p, dtype="float64"), PROB_EPS, 1 - PROB_EPS)
    return -(y * np.log(pc) + (1 - y) * np.log(1 - pc)), (pc - y) ** 2


def compare(
    settings: Settings,
    y: np.ndarray,
    p_challenger: np.ndarray,
    p_champion: np.ndarray | None,
    channels: np.ndarray,
    days: str,
) -> Evidence:
    """Both models' scorecards on the same rows and the interval of their AUC difference."""
    y = np.asarray(y).astype(int)
    out = Evidence(len(y), int(y.sum()), days, scorecard(y, p_challenger, channels))
    out.auc_ci = auc_interval(y, p_challenger, settings.gate_confidence)
    if p_champion is not None:
        conf = settings.gate_confidence
        out.champion = scorecard(y, p_champion, channels)
        out.auc_diff, out.auc_lo, out.auc_hi = delong_interval(y, p_challenger, p_champion, conf)
        (ll_ch, br_ch), (ll_cp, br_cp) = _row_scores(y, p_challenger), _row_scores(y, p_champion)
        out.log_loss_diff = paired_interval(ll_ch - ll_cp, conf)
        out.brier_diff = paired_interval(br_ch - br_cp, conf)
        channels = np.asarray(channels).astype(str)
        for c in sorted(set(out.challenger.channels) & set(out.champion.channels)):
            m = channels == c
            out.slices[c] = delong_interval(
                y[m], np.asarray(p_challenger)[m], np.asarray(p_champion)[m], conf
            )
    return out


def _fmt(x: float) -> str:
    return f"{x:.4f}" if np.isfinite(x) else "nan"


def _interval(diff: tuple[float, float, float]) -> str:
    return f"difference {diff[0]:+.4f} [{diff[1]:+.4f}, {diff[2]:+.4f}]"


def _comparisons(settings: Settings, ev_: Evidence, reasons: list[str]) -> None:
    """The challenger against the champion on the same rows (enough evidence assumed)."""
    ch, cp = ev_.challenger, ev_.champion
    margin, conf = settings.gate_auc_margin, f"at {settings.gate_confidence:.0%}"
    ll_diff, ll_lo, ll_hi = ev_.log_loss_diff
    ll_better = bool(ll_hi < 0)
    # thin evidence that points the challenger's way on both: not a reason to keep the older model
    leans = bool(ev_.auc_diff >= 0 and ll_diff < 0)
    interval = (
        f"auc {_fmt(ch.auc)} vs champion {_fmt(cp.auc)}: {_interval((ev_.auc_diff, ev_.auc_lo, ev_.auc_hi))}"
        f" {conf} (margin {margin:.4f})"
    )
    if ev_.auc_lo >= -margin:
        reasons.append(f"ok: {interval}: not worse")
    elif ev_.auc_hi < -margin:
        reasons.append(f"fail: {interval}: worse")
    elif ll_better:
        reasons.append(f"ok: {interval}: not shown worse, and the log loss is better beyond doubt")
    elif leans:
        reasons.append(f"ok: {interval}: not shown worse, and better on both point estimates")
    else:
        reasons.append(f"hold: not enough evidence: {interval}: the interval straddles -margin")
    ll = (
        f"log loss {_fmt(ch.log_loss)} vs champion {_fmt(cp.log_loss)}: {_interval(ev_.log_loss_diff)} {conf}"
    )
    if ll_better:
        reasons.append(f"ok: {ll}: better")
    elif ll_lo > 0:
        reasons.append(f"fail: {ll}: worse")
    elif leans:
        reasons.append(f"ok: {ll}: better on the point estimate, with the AUC")
    else:
        reasons.append(f"hold: not enough evidence: {ll}: the interval straddles 0")
    brier = f"brier {_fmt(ch.brier)} vs champion {_fmt(cp.brier)}: {_interval(ev_.brier_diff)} {conf}"
    worse = bool(ev_.brier_diff[1] > 0)
    reasons.append(f"fail: {brier}: worse" if worse else f"ok: {brier}: not worse")
    ece_ok = bool(np.isfinite(ch.ece)) and ch.ece <= cp.ece + settings.gate_ece_margin
    reasons.append(
        f"{'ok' if ece_ok else 'fail'}: ece {_fmt(ch.ece)} vs champion {_fmt(cp.ece)}"
        f" (margin {settings.gate_ece_margin:.4f})"
    )
    for c, (diff, lo, hi) in sorted(ev_.slices.items()):
        ok = not hi < -settings.gate_slice_drop  # NaN (one class in the slice): nothing shown
        reasons.append(
            f"{'ok' if ok else 'fail'}: slice {c}: auc {ch.channels[c]:.4f} vs champion {cp.channels[c]:.4f}:"
            f" {_interval((diff, lo, hi))} {conf} (max drop {settings.gate_slice_drop:.4f})"
        )


def _drift(ev_: Evidence, drift_reasons: list[str], reasons: list[str]) -> None:
    """A reported shift blocks only a challenger that is not better on the recent rows."""
    cp = ev_.champion
    better = cp is not None and bool(ev_.challenger.log_loss < cp.log_loss)
    for r in drift_reasons:
        if better:
            reasons.append(f"ok: drift: {r} (challenger better on the recent rows: retraining is the remedy)")
        else:
            reasons.append(f"fail: drift: {r} (challenger not better on the recent rows)")


def _floor(settings: Settings, ev_: Evidence) -> str:
    """The AUC floor judged with the challenger's interval: below it beyond doubt fails; a point
    estimate below it whose interval reaches it is not enough evidence (thin days are noisy)."""
    auc, (lo, hi), floor = ev_.challenger.auc, ev_.auc_ci, settings.gate_auc_floor
    text = f"auc {auc:.4f} [{lo:.4f}, {hi:.4f}] at {settings.gate_confidence:.0%} vs floor {floor:.4f}"
    if auc >= floor:
        return f"ok: {text}"
    if hi < floor:
        return f"fail: {text}: below beyond doubt"
    return f"hold: not enough evidence: {text}: the interval reaches the floor"


def decide(
    settings: Settings,
    ev_: Evidence,
    drift_reasons: list[str] | None = None,
    champion_age_days: int | None = None,
) -> tuple[str, list[str]]:
    """(``promoted`` / ``rejected`` / ``held``, every reason). See the module docstring."""
    reasons: list[str] = []
    ch, cp = ev_.challenger, ev_.champion
    counts = f"{ev_.rows} rows, {ev_.positives} positives, {ev_.negatives} negatives on {ev_.days}"
    if not np.isfinite(ch.auc):
        return HELD, [f"hold: not enough evidence: AUC undefined ({counts})"]
    floor_ok = ch.auc >= settings.gate_auc_floor
    reasons.append(_floor(settings, ev_))
    if cp is None:
        ece_ok = bool(np.isfinite(ch.ece)) and ch.ece <= settings.gate_ece_cap
        reasons.append(f"{'ok' if ece_ok else 'fail'}: ece {_fmt(ch.ece)} vs cap {settings.gate_ece_cap:.4f}")
        reasons.append("ok: first model, floors only")
        if floor_ok and ece_ok:
            return PROMOTED, reasons
        return (REJECTED if any(r.startswith("fail:") for r in reasons) else HELD), reasons
    enough = ev_.rows >= settings.gate_min_rows and min(ev_.positives, ev_.negatives) >= (
        settings.gate_min_positives
    )
    if enough:
        reasons.append(f"ok: evidence {counts}")
        _comparisons(settings, ev_, reasons)
        _drift(ev_, list(drift_reasons or []), reasons)
    else:
        reasons.append(
            f"hold: not enough evidence: {counts} (need {settings.gate_min_rows} rows and"
            f" {settings.gate_min_positives} of each class)"
        )
    old = champion_age_days is not None and champion_age_days > settings.max_champion_age_days
    if old and floor_ok:
        # the comparisons no longer protect anything worth keeping: a stale champion goes
        reasons = reasons[:1] + [
            r if r.startswith("ok:") else "waived: " + r.split(": ", 1)[1] for r in reasons[1:]
        ]
        reasons.append(
            f"ok: champion is {champion_age_days} days old (max {settings.max_champion_age_days}):"
            " replaced by a challenger that passes the floors"
        )
        return PROMOTED, reasons
    if any(r.startswith("fail:") for r in reasons):
        return REJECTED, reasons
    if any(r.startswith("hold:") for r in reasons):
        return HELD, reasons
    return PROMOTED, reasons
