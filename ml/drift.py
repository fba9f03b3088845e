"""Drift guard: per-feature PSI and the label rate of the newest day against the training window.

Population Stability Index over quantile bins of the reference (window) distribution; categorical
features use their categories as bins. PSI < 0.1 is usually read as stable, 0.1–0.25 as a shift
worth watching, > 0.25 as a shift that invalidates the model's assumptions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

_EPS = 1e-4
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


def drift_report(
    window: pd.DataFrame,
    newest: pd.DataFrame,
    features: list[str],
    label: str,
    psi_threshold: float,
    label_rate_ratio: float,
) -> dict[str, Any]:
    """PSI of every feature and the label-rate ratio; ``blocked`` with reasons when a threshold is crossed."""
    watched = [f for f in features if not any(tag in f for tag in CALENDAR_DRIFTING)]
    scores = {f: psi(window[f], newest[f]) for f in watched if f in window.columns and f in newest.columns}
    ref_rate = float(window[label].mean()) if len(window) else float("nan")
    new_rate = float(newest[label].mean()) if len(newest) else float("nan")
    ratio = new_rate / ref_rate if ref_rate and ref_rate > 0 else float("nan")
    reasons = [
        f"PSI {f} = {v:.3f} > {psi_threshold}"
        for f, v in sorted(scores.items(), key=lambda kv: -np.nan_to_num(kv[1]))
        if v > psi_threshold
    ]
    if np.isfinite(ratio) and (ratio > label_rate_ratio or ratio < 1.0 / label_rate_ratio):
        reasons.append(
            f"label rate {new_rate:.4f} vs window {ref_rate:.4f}"
            f" (ratio {ratio:.2f}, limit {label_rate_ratio})"
        )
    return {
        "psi": scores,
        "max_psi": max((v for v in scores.values() if np.isfinite(v)), default=0.0),
        "label_rate_window": ref_rate,
        "label_rate_newest": new_rate,
        "label_rate_ratio": ratio,
        "blocked": bool(reasons),
        "reasons": reasons,
    }
