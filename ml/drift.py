"""Drift guard: per-feature PSI and the label rate of the recent (held-out) days against the training window.

Population Stability Index over quantile bins of the reference (window) distribution; categorical
features use their categories as bins. PSI < 0.1 is usually read as stable, 0.1–0.25 as a shift
worth watching, > 0.25 as a shift that invalidates the model's assumptions.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd
from scipy.stats import norm

from contactrank.ml.dataset import Window, labelled_days
from contactrank.ml.training_sample import sample_share
from contactrank.settings import Settings

_EPS = 1e-4
# the label rate is flagged only when even this wide an interval excludes the allowed range:
# the guard reports a shift, so a false alarm costs more than a late one
LABEL_RATE_CONFIDENCE = 0.99
# one value per day (calendar) or per population: their PSI between days is meaningless
DRIFT_SKIP = ("f_dow", "f_month", "f_dom")
DRIFT_REFERENCE_DAYS = 7
DRIFT_REFERENCE_ROWS = 200_000
# Features that move with the calendar by construction (ages, recencies) drift every day; they are
# left out of the guard rather than blocking every retrain.
CALENDAR_DRIFTING = ("age_days", "days_since")


def _round_sig(x: pd.Series, digits: int = 2) -> pd.Series:
    vals = x.to_numpy(dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(np.isfinite(vals) & (vals != 0), np.floor(np.log10(np.abs(vals))), 0.0)
        scale = 10.0 ** (digits - 1 - mag)
        out = np.round(vals * scale) / scale
    return pd.Series(np.where(np.isfinite(vals), out, np.nan), index=x.index)


def psi(reference: pd.Series, current: pd.Series, bins: int = 10) -> float:
    """Population Stability Index of ``current`` against ``reference`` (missing values are a bin)."""
    if len(reference) == 0 or len(current) == 0:
        return float("nan")
    categorical = not pd.api.types.is_numeric_dtype(reference) or pd.api.types.is_bool_dtype(reference)
    if categorical:
        ref = reference.astype("string").fillna("<NA>")
        cur = current.astype("string").fillna("<NA>")
        cats = sorted(set(ref.unique()) | set(cur.unique()))
        p = ref.value_counts(normalize=True).reindex(cats, fill_value=0.0).to_numpy()
        q = cur.value_counts(normalize=True).reindex(cats, fill_value=0.0).to_numpy()
    else:
        # two significant digits: a point mass (e.g. a smoothed rate sitting at its prior) that
        # moves by a rounding error between days must not jump a bin edge and read as drift
        ref = _round_sig(pd.to_numeric(reference, errors="coerce").replace([np.inf, -np.inf], np.nan))
        cur = _round_sig(pd.to_numeric(current, errors="coerce").replace([np.inf, -np.inf], np.nan))
        finite = ref.dropna().to_numpy(dtype="float64")
        edges = (
            np.unique(np.quantile(finite, np.linspace(0, 1, bins + 1))) if len(finite) else np.array([0.0])
        )
        inner = edges[1:-1]

        def hist(x: pd.Series) -> np.ndarray:
            vals = x.to_numpy(dtype="float64")
            nan = np.isnan(vals)
            counts = np.bincount(np.searchsorted(inner, vals[~nan], side="right"), minlength=len(inner) + 1)
            return np.append(counts, nan.sum()) / max(len(vals), 1)

        p, q = hist(ref), hist(cur)
    p = np.clip(p, _EPS, None)
    q = np.clip(q, _EPS, None)
    return float(np.sum((q - p) * np.log(q / p)))


def wilson_interval(positives: int, rows: int, confidence: float) -> tuple[float, float]:
    """Wilson score interval of a binomial rate (``(0, 1)`` without rows)."""
    if rows <= 0:
        return 0.0, 1.0
    z = float(norm.ppf(0.5 + confidence / 2))
    rate = positives / rows
    centre = (rate + z * z / (2 * rows)) / (1 + z * z / rows)
    half = z * np.sqrt(rate * (1 - rate) / rows + z * z / (4 * rows * rows)) / (1 + z * z / rows)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def drift_report(
    window: pd.DataFrame,
    recent: pd.DataFrame,
    features: list[str],
    label: str,
    psi_threshold: float,
    label_rate_ratio: float,
    min_rows: int = 500,
    confidence: float = LABEL_RATE_CONFIDENCE,
) -> dict[str, Any]:
    """PSI of every feature and the label rate of ``recent`` against ``window``.

    PSI only when both sides hold ``min_rows`` rows (below that its sampling noise alone exceeds
    the threshold). The label rate is flagged only when its Wilson interval at ``confidence``
    lies wholly outside [window rate / ratio, window rate * ratio]: a handful of rows never
    flags. ``shifted`` (also ``blocked``, the name of the run tag) says that a shift was found;
    the gate decides what it means for promotion.
    """
    measured = len(window) >= min_rows and len(recent) >= min_rows
    watched = [f for f in features if not any(tag in f for tag in CALENDAR_DRIFTING)]
    scores = (
        {f: psi(window[f], recent[f]) for f in watched if f in window.columns and f in recent.columns}
        if measured
        else {}
    )
    ref_rate = float(window[label].mean()) if len(window) else float("nan")
    positives = int(recent[label].sum()) if len(recent) else 0
    new_rate = positives / len(recent) if len(recent) else float("nan")
    ratio = new_rate / ref_rate if ref_rate and ref_rate > 0 else float("nan")
    lo, hi = wilson_interval(positives, len(recent), confidence)
    reasons = [
        f"PSI {f} = {v:.3f} > {psi_threshold} ({len(recent)} recent vs {len(window)} window rows)"
        for f, v in sorted(scores.items(), key=lambda kv: -np.nan_to_num(kv[1]))
        if v > psi_threshold
    ]
    if (
        np.isfinite(ref_rate)
        and ref_rate > 0
        and (lo > ref_rate * label_rate_ratio or hi < ref_rate / label_rate_ratio)
    ):
        reasons.append(
            f"label rate {new_rate:.4f} [{lo:.4f}, {hi:.4f}] ({positives} of {len(recent)})"
            f" vs window {ref_rate:.4f} (ratio {ratio:.2f}, limit {label_rate_ratio})"
        )
    return {
        "psi": scores,
        "psi_measured": measured,
        "rows_window": len(window),
        "rows_recent": len(recent),
        "max_psi": max((v for v in scores.values() if np.isfinite(v)), default=0.0),
        "label_rate_window": ref_rate,
        "label_rate_newest": new_rate,
        "label_rate_ratio": ratio,
        "label_rate_interval": (lo, hi),
        "shifted": bool(reasons),
        "blocked": bool(reasons),
        "reasons": reasons,
    }


def drift_reference(settings: Settings, window: Window) -> list[date]:
    """The newest fitted days: at least a week, more until they hold twice ``drift_min_rows`` rows."""
    days, rows = [], 0
    for x in reversed(window.train_days + window.valid_days):
        if len(days) >= DRIFT_REFERENCE_DAYS and rows >= 2 * settings.drift_min_rows:
            break
        days.append(x)
        rows += window.counts.get(x, (0, 0))[0]
    return days[::-1]


def measure_drift(
    settings: Settings, window: Window, test_df: pd.DataFrame, features: list[str], label: str
) -> dict[str, Any]:
    """PSI of each feature and the label rate of the held-out recent days against the newest fitted days.

    Like with like: a window of recent days (the test days, grown until the gate has evidence)
    against a window of the days before them, each with enough rows (``drift_min_rows``)."""
    watched = [f for f in features if f not in DRIFT_SKIP and not f.startswith("f_g_")]
    days = drift_reference(settings, window)
    # Whole persons, drawn before the days are converted and sorted, and the watched columns only:
    # sorting a week of rows to keep a sample of them cost more than the PSI. The row sample then
    # trims the persons' rows to the cap.
    share, _ = sample_share(settings, days, DRIFT_REFERENCE_ROWS, window.counts)
    frames = [df for _, df in labelled_days(settings, days, label, share=share, columns=watched)]
    reference = pd.concat(frames, ignore_index=True)
    if len(reference) > DRIFT_REFERENCE_ROWS:
        reference = reference.sample(DRIFT_REFERENCE_ROWS, random_state=settings.seed)
    report = drift_report(
        reference,
        test_df,
        watched,
        label,
        settings.drift_psi_threshold,
        settings.drift_label_rate_ratio,
        min_rows=settings.drift_min_rows,
    )
    history = len(window.train_days) + len(window.valid_days)
    if report["blocked"] and history < settings.drift_min_history_days:
        # every feature of a young lake shifts as its history fills up: measured, logged, not enforced
        report["reasons"] = [
            f"not enforced ({history} < {settings.drift_min_history_days} days of history): {r}"
            for r in report["reasons"]
        ]
        report["blocked"] = report["shifted"] = False
    return report


def drift_metrics(drift: dict[str, Any]) -> dict[str, float]:
    """The drift figures logged with the metrics: the summary and the ten largest PSIs."""
    out = {"drift_max_psi": drift["max_psi"], "drift_label_rate_ratio": drift["label_rate_ratio"]}
    for f, v in sorted(drift["psi"].items(), key=lambda kv: -np.nan_to_num(kv[1]))[:10]:
        out[f"psi_{f}"] = v
    return out
