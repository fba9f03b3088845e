"""Metrics, calibrators, baselines and plots for the contact-success model.

Everything here is pure computation on arrays/frames (no MLflow): training, the gate, tuning and
the benchmarks share it so a figure means the same thing wherever it is printed.

Conventions
- ``ece``: expected calibration error over 15 equal-width probability bins, weighted by bin size.
- ``hit1``: within each group (a person-day) that has >= 2 attempts and >= 1 success, the chance
  that the top-scored attempt succeeded; ties at the top count fractionally (random tie-break
  in expectation), so a constant score earns exactly the base rate of the group.
- ``ndcg3``: NDCG@3 with binary gains over the same groups; ties broken by a seeded random key.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

log = logging.getLogger(__name__)

ECE_BINS = 15
_EPS = 1e-6


# --------------------------------------------------------------------------------------------
# point metrics
# --------------------------------------------------------------------------------------------
def ece(y: np.ndarray, p: np.ndarray, n_bins: int = ECE_BINS) -> float:
    """Expected calibration error: sum over equal-width bins of |mean(p) - mean(y)| * share."""
    y = np.asarray(y, dtype="float64")
    p = np.clip(np.asarray(p, dtype="float64"), 0.0, 1.0)
    if len(y) == 0:
        return float("nan")
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
    sum_p = np.bincount(idx, weights=p, minlength=n_bins)
    sum_y = np.bincount(idx, weights=y, minlength=n_bins)
    return float(np.abs(sum_p - sum_y).sum() / len(y))


def reliability(y: np.ndarray, p: np.ndarray, n_bins: int = ECE_BINS) -> pd.DataFrame:
    """Reliability curve: per non-empty bin, the mean predicted probability and the success rate."""
    y = np.asarray(y, dtype="float64")
    p = np.clip(np.asarray(p, dtype="float64"), 0.0, 1.0)
    idx = np.minimum((p * n_bins).astype(int), n_bins - 1)
    df = pd.DataFrame({"bin": idx, "p": p, "y": y})
    out = df.groupby("bin").agg(mean_p=("p", "mean"), rate=("y", "mean"), n=("y", "size")).reset_index()
    return out


def _both_classes(y: np.ndarray) -> bool:
    return len(y) > 0 and 0 < np.sum(y) < len(y)


def binary_metrics(y: np.ndarray, p: np.ndarray, probabilistic: bool = True) -> dict[str, float]:
    """AUC and PR-AUC (any score); log loss, Brier and ECE too when ``p`` is a probability."""
    from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score

    y = np.asarray(y, dtype="int64")
    p = np.asarray(p, dtype="float64")
    nan = float("nan")
    out: dict[str, float] = {}
    ok = _both_classes(y)
    out["auc"] = float(roc_auc_score(y, p)) if ok else nan
    out["pr_auc"] = float(average_precision_score(y, p)) if ok else nan
    if probabilistic:
        pc = np.clip(p, _EPS, 1 - _EPS)
        out["log_loss"] = float(log_loss(y, pc, labels=[0, 1])) if len(y) else nan
        out["brier"] = float(brier_score_loss(y, pc, pos_label=1)) if len(y) else nan
        out["ece"] = ece(y, p)
    return out


# --------------------------------------------------------------------------------------------
# ranking within groups (person-day)
# --------------------------------------------------------------------------------------------
def _eligible(y: np.ndarray, groups: np.ndarray) -> pd.DataFrame:
    codes, _ = pd.factorize(pd.Series(groups), sort=False)
    df = pd.DataFrame({"g": codes, "y": np.asarray(y, dtype="float64")})
    size = df.groupby("g")["y"].transform("size")
    pos = df.groupby("g")["y"].transform("sum")
    return df.assign(_keep=(size >= 2) & (pos >= 1))


def hit_at_1(y: np.ndarray, score: np.ndarray, groups: np.ndarray) -> float:
    """Mean over eligible groups of P(top-scored attempt succeeded), ties counted fractionally."""
    df = _eligible(y, groups)
    df["s"] = np.asarray(score, dtype="float64")
    df = df[df["_keep"]]
    if df.empty:
        return float("nan")
    top = df["s"] == df.groupby("g")["s"].transform("max")
    agg = pd.DataFrame({"g": df["g"], "hit": df["y"] * top, "top": top.astype(float)}).groupby("g").sum()
    return float((agg["hit"] / agg["top"]).mean())


def ndcg_at_k(y: np.ndarray, score: np.ndarray, groups: np.ndarray, k: int = 3, seed: int = 0) -> float:
    """Mean NDCG@k (binary gains) over eligible groups; ties broken by a seeded random key."""
    df = _eligible(y, groups)
    df["s"] = np.asarray(score, dtype="float64")
    df["tie"] = np.random.default_rng(seed).random(len(df))
    df = df[df["_keep"]]
    if df.empty:
        return float("nan")
    df = df.sort_values(["g", "s", "tie"], ascending=[True, False, True], kind="mergesort")
    rank = df.groupby("g").cumcount().to_numpy()
    disc = 1.0 / np.log2(np.arange(k) + 2.0)
    gain = np.where(rank < k, df["y"].to_numpy() * disc[np.minimum(rank, k - 1)], 0.0)
    dcg = pd.Series(gain, index=df["g"].to_numpy()).groupby(level=0).sum()
    npos = df.groupby("g")["y"].sum().astype(int).clip(upper=k)
    ideal = np.concatenate([[0.0], np.cumsum(disc)])[npos.loc[dcg.index].to_numpy()]
    return float(np.mean(dcg.to_numpy() / ideal))


def evaluate(
    y: np.ndarray,
    score: np.ndarray,
    groups: np.ndarray,
    channels: np.ndarray | None = None,
    probabilistic: bool = True,
    seed: int = 0,
) -> dict[str, float]:
    """Every test-day metric of one scorer: overall, ranking within person-day, and by channel.

    Keys: ``auc, pr_auc, [log_loss, brier, ece], hit1, ndcg3`` and ``<metric>_<channel>``.
    """
    y = np.asarray(y, dtype="int64")
    score = np.asarray(score, dtype="float64")
    groups = np.asarray(groups)
    out = binary_metrics(y, score, probabilistic)
    out["hit1"] = hit_at_1(y, score, groups)
    out["ndcg3"] = ndcg_at_k(y, score, groups, seed=seed)
    if channels is not None:
        channels = np.asarray(channels).astype(str)
        for ch in sorted(set(channels)):
            m = channels == ch
            sub = binary_metrics(y[m], score[m], probabilistic)
            sub["hit1"] = hit_at_1(y[m], score[m], groups[m])
            sub["ndcg3"] = ndcg_at_k(y[m], score[m], groups[m], seed=seed)
            out.update({f"{k}_{ch}": v for k, v in sub.items()})
    return out


def channel_auc(
    y: np.ndarray, score: np.ndarray, channels: np.ndarray, min_rows: int = 50, min_pos: int = 5
) -> dict[str, float]:
    """AUC per channel, only for channels with enough rows and both classes (used by the gate)."""
    from sklearn.metrics import roc_auc_score

    y = np.asarray(y, dtype="int64")
    channels = np.asarray(channels).astype(str)
    out = {}
    for ch in sorted(set(channels)):
        m = channels == ch
        npos = int(y[m].sum())
        if m.sum() >= min_rows and min_pos <= npos <= m.sum() - min_pos:
            out[ch] = float(roc_auc_score(y[m], score[m]))
    return out


# --------------------------------------------------------------------------------------------
# calibration
# --------------------------------------------------------------------------------------------
def _logit(x: np.ndarray) -> np.ndarray:
    x = np.clip(np.asarray(x, dtype="float64"), _EPS, 1 - _EPS)
    return np.log(x / (1 - x))


@dataclass
class PlattCalibrator:
    """Logistic regression on the raw score (on its logit when the raw score is a probability)."""

    a: float
    b: float
    on_logit: bool = True

    def predict(self, x: np.ndarray) -> np.ndarray:
        z = _logit(x) if self.on_logit else np.asarray(x, dtype="float64")
        return 1.0 / (1.0 + np.exp(-(self.a * z + self.b)))

    @classmethod
    def fit(cls, raw: np.ndarray, y: np.ndarray, on_logit: bool = True) -> PlattCalibrator:
        from sklearn.linear_model import LogisticRegression

        z = _logit(raw) if on_logit else np.asarray(raw, dtype="float64")
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(z.reshape(-1, 1), np.asarray(y, dtype=int))
        return cls(float(lr.coef_[0, 0]), float(lr.intercept_[0]), on_logit)


@dataclass
class IsotonicCalibrator:
    """Isotonic regression, plus a 1e-6 share of a strictly increasing map of the raw score.

    Isotonic steps tie many scores; the tiny strictly increasing term keeps the model's order
    (AUC and within-person ranking unchanged) while moving probabilities by at most 1e-6.
    """

    x: np.ndarray
    y: np.ndarray
    on_logit: bool = True

    def predict(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw, dtype="float64")
        step = np.interp(raw, self.x, self.y)
        z = _logit(raw) if self.on_logit else raw
        mono = 1.0 / (1.0 + np.exp(-z))
        return (1 - _EPS) * step + _EPS * mono

    @classmethod
    def fit(cls, raw: np.ndarray, y: np.ndarray, on_logit: bool = True) -> IsotonicCalibrator:
        from sklearn.isotonic import IsotonicRegression

        iso = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(
            np.asarray(raw, dtype="float64"), np.asarray(y, dtype="float64")
        )
        return cls(np.asarray(iso.X_thresholds_), np.asarray(iso.y_thresholds_), on_logit)


def fit_calibrator(
    raw: np.ndarray, y: np.ndarray, folds: np.ndarray, raw_is_probability: bool = True
) -> tuple[Any, dict[str, Any]]:
    """Choose isotonic, Platt or nothing by out-of-fold ECE on held-out data; refit the winner on all.

    ``folds`` (0/1 per row, e.g. a hash of the person) gives a 2-fold cross-fit so the
    comparison is not made on the rows the calibrator saw. When the raw score is not a
    probability (lambdarank) a calibrator is always chosen.
    """
    raw = np.asarray(raw, dtype="float64")
    y = np.asarray(y, dtype="int64")
    folds = np.asarray(folds)
    report: dict[str, Any] = {}
    candidates = {"isotonic": IsotonicCalibrator, "platt": PlattCalibrator}
    scores: dict[str, float] = {}
    if raw_is_probability:
        scores["none"] = ece(y, raw)
    for name, cls in candidates.items():
        oof = np.full(len(raw), np.nan)
        ok = True
        for f in (0, 1):
            tr, te = folds != f, folds == f
            if not _both_classes(y[tr]) or te.sum() == 0:
                ok = False
                break
            oof[te] = cls.fit(raw[tr], y[tr], on_logit=raw_is_probability).predict(raw[te])
        if ok:
            scores[name] = ece(y, oof)
    report["cv_ece"] = scores
    best = min(scores, key=lambda k: (scores[k], k != "none")) if scores else "none"
    report["method"] = best
    if best == "none" or not _both_classes(y):
        return None, {**report, "method": "none"}
    return candidates[best].fit(raw, y, on_logit=raw_is_probability), report


def operating_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability threshold with the best F1 on held-out data (the confusion's operating point)."""
    from sklearn.metrics import precision_recall_curve

    if not _both_classes(np.asarray(y)):
        return 0.5
    prec, rec, thr = precision_recall_curve(y, p)
    f1 = 2 * prec * rec / np.maximum(prec + rec, 1e-12)
    return float(thr[int(np.argmax(f1[:-1]))])


def confusion(y: np.ndarray, p: np.ndarray, threshold: float) -> dict[str, int]:
    """Counts of the 2x2 confusion matrix at ``threshold`` (predicted positive: p >= threshold)."""
    y = np.asarray(y, dtype=bool)
    pred = np.asarray(p) >= threshold
    return {
        "tp": int(np.sum(pred & y)),
        "fp": int(np.sum(pred & ~y)),
        "fn": int(np.sum(~pred & y)),
        "tn": int(np.sum(~pred & ~y)),
    }


# --------------------------------------------------------------------------------------------
# baselines
# --------------------------------------------------------------------------------------------
def random_score(n: int, seed: int) -> np.ndarray:
    """Random order: a seeded uniform score per attempt."""
    return np.random.default_rng(seed).random(n)


def heuristic_score(df: pd.DataFrame) -> np.ndarray:
    """ "Last successful address first, else the customer's own": most recent reach wins,
    addresses never reached come after, the customer-provided ones first among them."""
    n = len(df)
    days = (
        pd.to_numeric(df["f_c_days_since_reach"], errors="coerce").to_numpy(dtype="float64")
        if "f_c_days_since_reach" in df
        else np.full(n, np.nan)
    )
    customer = (
        (df["f_source"].astype("string") == "customer").fillna(False).to_numpy(dtype=bool)
        if "f_source" in df
        else np.zeros(n, dtype=bool)
    )
    reached = np.isfinite(days)
    return np.where(reached, 2.0 + 1.0 / (1.0 + np.maximum(np.nan_to_num(days), 0.0)), customer.astype(float))


def oracle_probabilities(truth_path: Path, attempt_ids: pd.Series, label: str) -> np.ndarray | None:
    """The simulator's true probability of each attempt (NaN where unknown), or None without truth."""
    if not truth_path.is_file():
        return None
    import pyarrow.parquet as pq

    col = "p_reach" if label == "reach" else "p_conversion"
    truth = pq.read_table(truth_path, columns=["attempt_id", col]).to_pandas()
    truth = truth.drop_duplicates("attempt_id").set_index("attempt_id")[col]
    return truth.reindex(attempt_ids.astype(str).to_numpy()).to_numpy(dtype="float64")


# --------------------------------------------------------------------------------------------
# plots (matplotlib, Agg backend, one figure per file)
# --------------------------------------------------------------------------------------------
def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def plot_calibration(y: np.ndarray, curves: dict[str, np.ndarray], path: Path) -> Path:
    """Reliability diagram of each probability vector in ``curves`` (with its ECE in the legend)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.5, 5))
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="perfect")
    for name, p in curves.items():
        rel = reliability(y, p)
        ax.plot(rel["mean_p"], rel["rate"], "o-", ms=3, label=f"{name} (ECE {ece(y, p):.4f})")
    ax.set_xlabel("predicted probability")
    ax.set_ylabel("observed success rate")
    ax.set_title("Calibration on the test day")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


def plot_gains(y: np.ndarray, scores: dict[str, np.ndarray], path: Path) -> Path:
    """Cumulative gain and lift of each scorer: share of successes captured in the top x% of attempts."""
    plt = _plt()
    y = np.asarray(y, dtype="float64")
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 4.5))
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
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


def plot_importance(importance: pd.Series, path: Path, top: int = 25) -> Path:
    """Horizontal bar chart of the largest values (gain importance)."""
    plt = _plt()
    imp = importance.sort_values(ascending=False).head(top)[::-1]
    fig, ax = plt.subplots(figsize=(7, 0.28 * len(imp) + 1.2))
    ax.barh(imp.index, imp.to_numpy())
    ax.set_xlabel("total gain")
    ax.set_title("Feature importance (gain)")
    ax.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


def plot_shap_summary(
    contrib: pd.DataFrame, values: pd.DataFrame, path: Path, top: int = 20, seed: int = 0
) -> Path:
    """SHAP summary (beeswarm-like): per feature, each row's contribution coloured by its value rank."""
    plt = _plt()
    contrib = contrib.drop(columns=["bias"], errors="ignore")
    order = contrib.abs().mean().sort_values(ascending=False).head(top).index[::-1]
    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(order) + 1.5))
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
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path


def plot_confusion(cm: dict[str, int], threshold: float, path: Path) -> Path:
    """The 2x2 confusion matrix at the operating threshold."""
    plt = _plt()
    mat = np.array([[cm["tn"], cm["fp"]], [cm["fn"], cm["tp"]]])
    fig, ax = plt.subplots(figsize=(4.2, 3.8))
    ax.imshow(mat, cmap="Blues")
    for (i, j), v in np.ndenumerate(mat):
        ax.text(j, i, f"{v:,}", ha="center", va="center", color="black")
    ax.set_xticks([0, 1], ["pred 0", "pred 1"])
    ax.set_yticks([0, 1], ["true 0", "true 1"])
    ax.set_title(f"Confusion at p >= {threshold:.3f}")
    fig.tight_layout()
    fig.savefig(path, dpi=72)
    plt.close(fig)
    return path
