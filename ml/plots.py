"""The project's charts: small pure functions from prepared data to PNG bytes or PNG files.

The daily report's charts return PNG bytes; the training artefacts (``plot_*``) write one file
each and return its path. Figures are built with ``matplotlib.figure.Figure`` and rendered by
the Agg canvas directly, so nothing here touches pyplot's global state or the process-wide
backend (safe in Airflow workers, in threads, and under a test runner that already chose
another backend).
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import LogLocator, NullFormatter, PercentFormatter, ScalarFormatter
from sklearn.calibration import calibration_curve

from contactrank.features.schema import OUTCOMES
from contactrank.ml.evaluate import ece, reliability

WIDTH, HEIGHT, DPI = 8.0, 3.6, 100
ARTEFACT_DPI = 72  # training artefacts: small files, the resolution they always had

# Reached outcomes in greens, dead ends in reds, the rest in greys/blues: the mix reads at a glance.
OUTCOME_COLOURS = {
    "no_answer": "#c7ccd1",
    "busy": "#9aa3ab",
    "voicemail": "#6f7b86",
    "rejected": "#f4a261",
    "invalid": "#d62828",
    "wrong_party": "#9d4edd",
    "right_party": "#52b788",
    "converted": "#1b7f4c",
    "opt_out": "#b7e4c7",
}
CHANNEL_COLOURS = {"voice": "#1f77b4", "sms": "#ff7f0e", "email": "#2ca02c", "whatsapp": "#17becf"}
SERIES_COLOURS = {"model": "#1f77b4", "last success": "#ff7f0e", "oracle": "#2ca02c", "random": "#7f7f7f"}


def _figure(ncols: int = 1, width: float = WIDTH, height: float = HEIGHT):
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    axes = fig.subplots(1, ncols)
    return fig, axes


def _png(fig) -> bytes:
    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def outcome_mix(counts: pd.DataFrame) -> bytes:
    """Stacked daily share of each outcome; ``counts`` has columns ``date, outcome, n``."""
    table = counts.pivot_table(
        index="date", columns="outcome", values="n", aggfunc="sum", fill_value=0
    ).sort_index()
    order = [o for o in OUTCOMES if o in table.columns] + sorted(set(table.columns) - set(OUTCOMES))
    table = table[order]
    totals = table.sum(axis=1)
    shares = table.div(totals.where(totals > 0, 1), axis=0)
    fig, ax = _figure(width=WIDTH + 1.6)
    x = pd.to_datetime(pd.Series(shares.index)).to_numpy()
    bottom = np.zeros(len(shares))
    width = 0.9 if len(shares) > 1 else 0.5
    for outcome in order:
        values = shares[outcome].to_numpy(dtype=float)
        ax.bar(
            x,
            values,
            bottom=bottom,
            width=width,
            color=OUTCOME_COLOURS.get(outcome, "#cccccc"),
            label=outcome,
        )
        bottom += values
    ax.set_ylim(0, 1)
    ax.set_ylabel("share of attempts")
    ax.yaxis.set_major_formatter(_percent())
    # outside the axes, right of the twin axis: the bars and the counts stay unobstructed
    handles, labels = ax.get_legend_handles_labels()
    fig.legend(handles[::-1], labels[::-1], loc="outside right center", fontsize=8, frameon=False)
    twin = ax.twinx()
    twin.plot(
        x, totals.to_numpy(dtype=float), color="black", linewidth=1.2, marker="." if len(x) < 40 else None
    )
    twin.set_ylabel("attempts per day (line)")
    twin.set_ylim(0, max(float(totals.max()), 1.0) * 1.15)
    fig.autofmt_xdate()
    return _png(fig)


def quarantine_rates(rates: pd.DataFrame, day_label: str, window_label: str) -> bytes:
    """Horizontal bars per ``label`` (kind: reason) with columns ``rate_day`` and ``rate_window``."""
    rates = rates.sort_values("rate_window", ascending=True)
    height = max(HEIGHT, 0.9 + 0.32 * len(rates))
    fig, ax = _figure(height=height)
    y = np.arange(len(rates))
    ax.barh(y + 0.2, rates["rate_day"], height=0.4, color="#d62828", label=day_label)
    ax.barh(y - 0.2, rates["rate_window"], height=0.4, color="#f4a261", label=window_label)
    ax.set_yticks(y, rates["label"], fontsize=8)
    ax.xaxis.set_major_formatter(_percent(decimals=1))
    ax.set_xlabel("quarantined rows / rows delivered")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    return _png(fig)


def reach_by_hour(stats: pd.DataFrame, min_attempts: int) -> bytes:
    """Reach rate per local hour, one line per channel; ``stats``: ``channel, local_hour, n, reached``.

    Hours with fewer than ``min_attempts`` attempts are drawn as faint hollow markers off the line,
    so a young lake still shows something without a few attempts pretending to be a trend.
    """
    fig, ax = _figure()
    for channel, part in stats.groupby("channel", sort=True):
        part = part.sort_values("local_hour")
        rate = part["reached"] / part["n"]
        enough = part["n"] >= min_attempts
        colour = CHANNEL_COLOURS.get(str(channel))
        ax.plot(
            part["local_hour"], rate.where(enough), marker="o", markersize=3, color=colour, label=str(channel)
        )
        ax.plot(
            part.loc[~enough, "local_hour"],
            rate[~enough],
            linestyle="none",
            marker="o",
            markersize=4,
            markerfacecolor="none",
            alpha=0.4,
            color=colour,
        )
    ax.set_xlim(-0.5, 23.5)
    ax.set_xticks(range(0, 24, 2))
    ax.set_xlabel("local hour of the attempt")
    ax.set_ylabel("reach rate")
    ax.yaxis.set_major_formatter(_percent())
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def calibration(y: np.ndarray, p: np.ndarray, n_bins: int = 10) -> bytes:
    """Reliability curve (quantile bins) with the score histogram beneath it."""
    frac, mean = calibration_curve(y, p, n_bins=n_bins, strategy="quantile")
    fig, (ax, hist) = _figure(ncols=2)
    top = (
        max(float(np.max(mean)) if len(mean) else 0.0, float(np.max(frac)) if len(frac) else 0.0, 0.05) * 1.1
    )
    top = min(top, 1.0)
    ax.plot([0, top], [0, top], linestyle="--", color="#7f7f7f", label="perfectly calibrated")
    ax.plot(mean, frac, marker="o", color=SERIES_COLOURS["model"], label="model")
    ax.set_xlim(0, top)
    ax.set_ylim(0, top)
    ax.set_xlabel("mean predicted probability")
    ax.set_ylabel("observed rate")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="upper left")
    hist.hist(p, bins=40, range=(0, top), color=SERIES_COLOURS["model"], alpha=0.8)
    hist.set_xlabel("predicted probability")
    hist.set_ylabel("attempts")
    return _png(fig)


def gains(y: np.ndarray, curves: Mapping[str, np.ndarray], deciles: Mapping[str, np.ndarray]) -> bytes:
    """Cumulative gain curves (share of successes vs share of attempts) and lift per decile.

    ``curves[name]`` is the cumulative share of successes after each attempt in that ranking's
    order; ``deciles[name]`` the success rate of each tenth divided by the overall rate.
    """
    fig, (ax, lift) = _figure(ncols=2, width=WIDTH + 1.0)
    n = len(y)
    x = np.arange(1, n + 1) / n
    ax.plot([0, 1], [0, 1], linestyle="--", color=SERIES_COLOURS["random"], label="random")
    for name, curve in curves.items():
        ax.plot(np.r_[0, x], np.r_[0, curve], color=SERIES_COLOURS.get(name), label=name)
    ax.set_xlabel("share of attempts, best first")
    ax.set_ylabel("share of successes")
    ax.xaxis.set_major_formatter(_percent())
    ax.yaxis.set_major_formatter(_percent())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    names = list(deciles)
    width = 0.8 / max(len(names), 1)
    for i, name in enumerate(names):
        values = deciles[name]
        pos = np.arange(1, len(values) + 1) + (i - (len(names) - 1) / 2) * width
        lift.bar(pos, values, width=width, color=SERIES_COLOURS.get(name), label=name)
    lift.axhline(1.0, color=SERIES_COLOURS["random"], linestyle="--", linewidth=1)
    lift.set_xticks(range(1, 11))
    lift.set_xlabel("decile (1 = best tenth)")
    lift.set_ylabel("lift over random")
    lift.legend(fontsize=8, frameon=False)
    return _png(fig)


def score_distribution(
    today: np.ndarray, window: np.ndarray | None, today_label: str, window_label: str
) -> bytes:
    """Overlaid density histograms of today's published scores and the training window's."""
    fig, ax = _figure()
    hi = max(float(np.nanquantile(today, 0.999)) if len(today) else 0.0, 0.05)
    if window is not None and len(window):
        hi = max(hi, float(np.nanquantile(window, 0.999)))
    hi = min(hi * 1.05, 1.0)
    bins = np.linspace(0, hi, 50)
    if window is not None and len(window):
        ax.hist(
            np.clip(window, 0, hi), bins=bins, density=True, color="#7f7f7f", alpha=0.5, label=window_label
        )
    ax.hist(
        np.clip(today, 0, hi),
        bins=bins,
        density=True,
        histtype="step",
        linewidth=1.8,
        color=SERIES_COLOURS["model"],
        label=today_label,
    )
    ax.set_xlabel("score (calibrated probability of reach)")
    ax.set_ylabel("density")
    ax.legend(fontsize=8, frameon=False)
    return _png(fig)


def drift(psi: pd.Series, threshold: float) -> bytes:
    """Horizontal bars of the largest PSI values, with the drift threshold marked."""
    psi = psi.sort_values(ascending=True)
    height = max(HEIGHT, 0.9 + 0.28 * len(psi))
    fig, ax = _figure(height=height)
    colours = ["#d62828" if v >= threshold else "#1f77b4" for v in psi.to_numpy()]
    ax.barh(np.arange(len(psi)), psi.to_numpy(), color=colours)
    ax.set_yticks(np.arange(len(psi)), list(psi.index), fontsize=8)
    ax.axvline(threshold, color="#d62828", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    ax.set_xlabel("population stability index (newest day vs window)")
    ax.legend(fontsize=8, frameon=False, loc="lower right")
    return _png(fig)


def exploration(shares: Sequence[tuple[str, float]], propensity: np.ndarray) -> bytes:
    """Bars of explored shares and the histogram of rank-1 propensities."""
    fig, (ax, hist) = _figure(ncols=2)
    labels = [s[0] for s in shares]
    values = [s[1] for s in shares]
    bars = ax.bar(labels, values, color=["#17becf", "#1f77b4", "#9467bd"][: len(values)])
    ax.bar_label(bars, labels=[f"{v:.1%}" for v in values], fontsize=8)
    ax.set_ylabel("share explored")
    ax.yaxis.set_major_formatter(_percent())
    ax.set_ylim(0, max([*values, 0.05]) * 1.25)
    ax.tick_params(axis="x", labelsize=8)
    counts, _, _ = hist.hist(propensity, bins=np.linspace(0, 1, 41), color="#1f77b4")
    positive = counts[counts > 0]
    if len(positive) and positive.max() / positive.min() > 50:
        # greedy rows pile up near 1 and explored ones are few: a log axis keeps both visible
        hist.set_yscale("log")
        hist.yaxis.set_major_locator(LogLocator(base=10))
        hist.yaxis.set_major_formatter(ScalarFormatter())
        hist.yaxis.set_minor_formatter(NullFormatter())
        hist.set_ylabel("persons (log scale)")
    else:
        hist.set_ylabel("persons")
    hist.set_xlabel("propensity of the rank-1 row")
    return _png(fig)


def _percent(decimals: int = 0):
    return PercentFormatter(xmax=1.0, decimals=decimals)


# --------------------------------------------------------------------------------------------
# training artefacts: one PNG file per chart, logged with the model run


def plot_calibration(y: np.ndarray, curves: dict[str, np.ndarray], path: Path) -> Path:
    """Reliability diagram of each probability vector in ``curves`` (with its ECE in the legend)."""
    fig, ax = _artefact_figure(5.5, 5)
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    for name, p in curves.items():
        rel = reliability(y, p)
        ax.plot(rel["mean_p"], rel["rate"], "o-", ms=3, label=f"{name} (ECE {ece(y, p):.4f})")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed success rate")
    ax.set_title("Calibration on the test day")
    ax.legend(fontsize=8)
    return _save_artefact(fig, path)


def plot_gains(y: np.ndarray, scores: dict[str, np.ndarray], path: Path) -> Path:
    """Cumulative gain and lift of each scorer: share of successes captured in the top x% of attempts."""
    y = np.asarray(y, dtype="float64")
    fig, (ax1, ax2) = _artefact_figure(10, 4.5, ncols=2)
    total = max(y.sum(), 1.0)
    x = np.arange(1, len(y) + 1) / max(len(y), 1)
    # at most ~500 points per curve: the picture is the same and drawing stays cheap
    pick = np.unique(np.linspace(0, max(len(y) - 1, 0), min(len(y), 500)).astype(int))
    start = pick[pick >= len(x) // 100]
    for name, s in scores.items():
        order = np.argsort(-np.asarray(s, dtype="float64"), kind="mergesort")
        gain = np.cumsum(y[order]) / total
        ax1.plot(x[pick], gain[pick], label=name)
        lift = gain / x
        ax2.plot(x[start], lift[start], label=name)
    ax1.plot([0, 1], [0, 1], "k--", lw=1)
    ax1.set_xlabel("share of attempts (ranked by score)")
    ax1.set_ylabel("share of successes captured")
    ax1.set_title("Cumulative gain, test day")
    ax2.axhline(1.0, color="k", ls="--", lw=1)
    ax2.set_xlabel("share of attempts")
    ax2.set_ylabel("lift")
    ax2.set_title("Lift vs baselines")
    ax1.legend(fontsize=8)
    return _save_artefact(fig, path)


def plot_importance(importance: pd.Series, path: Path, top: int = 25) -> Path:
    """Horizontal bar chart of the largest values (gain importance)."""
    imp = importance.sort_values(ascending=False).head(top)[::-1]
    fig, ax = _artefact_figure(7, 0.28 * len(imp) + 1.2)
    ax.barh(imp.index, imp.to_numpy())
    ax.set_xlabel("total gain")
    ax.set_title("Feature importance (gain)")
    ax.tick_params(axis="y", labelsize=7)
    return _save_artefact(fig, path)


def plot_shap_summary(
    contrib: pd.DataFrame, values: pd.DataFrame, path: Path, top: int = 20, seed: int = 0
) -> Path:
    """SHAP summary (beeswarm-like): per feature, each row's contribution coloured by its value rank."""
    contrib = contrib.drop(columns=["bias"], errors="ignore")
    order = contrib.abs().mean().sort_values(ascending=False).head(top).index[::-1]
    rng = np.random.default_rng(seed)
    fig, ax = _artefact_figure(7.5, 0.32 * len(order) + 1.5)
    for i, col in enumerate(order):
        c = contrib[col].to_numpy()
        v = values[col]
        if isinstance(v.dtype, pd.CategoricalDtype):
            v = pd.Series(v.cat.codes, index=v.index).where(v.cat.codes >= 0)
        v = pd.to_numeric(v, errors="coerce")
        colour = v.rank(pct=True).to_numpy()
        jitter = rng.uniform(-0.3, 0.3, len(c))
        sc = ax.scatter(
            c, i + jitter, c=colour, cmap="coolwarm", s=3, alpha=0.6, vmin=0, vmax=1, rasterized=True
        )
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels(order, fontsize=7)
    ax.axvline(0, color="k", lw=0.8)
    ax.set_xlabel("SHAP value (contribution to the raw score)")
    ax.set_title("SHAP summary, test day (colour: feature value rank)")
    if len(order):
        fig.colorbar(sc, ax=ax, label="feature value (low → high)")
    return _save_artefact(fig, path)


def plot_confusion(cm: dict[str, int], threshold: float, path: Path) -> Path:
    """The 2x2 confusion matrix at the operating threshold."""
    mat = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    fig, ax = _artefact_figure(4.2, 3.8)
    ax.imshow(mat, cmap="Blues")
    for (i, j), v in np.ndenumerate(mat):
        ax.text(j, i, f"{v:,}", ha="center", va="center", color="black")
    ax.set_xticks([0, 1], ["pred 0", "pred 1"])
    ax.set_yticks([0, 1], ["true 0", "true 1"])
    ax.set_title(f"Confusion at p >= {threshold:.3f}")
    return _save_artefact(fig, path)


def _artefact_figure(width: float, height: float, ncols: int = 1):
    # pyplot's default dpi and layout, so the files look as they did when pyplot drew them
    fig = Figure(figsize=(width, height))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, ncols)
    return fig, axes


def _save_artefact(fig: Figure, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=ARTEFACT_DPI)
    return path
