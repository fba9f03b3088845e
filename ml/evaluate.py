"""Metrics, calibrators and baselines for the contact-success model, and the test-day evaluation.

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
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from scipy.optimize import minimize
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import (
    average_precision_score,
    brier_score_loss,
    log_loss,
    precision_recall_curve,
    roc_auc_score,
)

from contactrank.ml.model import ContactModel
from contactrank.settings import Settings

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
    def fit(
        cls, raw: np.ndarray, y: np.ndarray, on_logit: bool = True, prior_rows: float = 0.0
    ) -> PlattCalibrator:
        """Maximum likelihood; with ``prior_rows`` > 0 (on the logit only), maximum a posteriori
        under a Gaussian prior centred on the identity map (a = 1, b = 0) whose precision on each
        parameter is ``prior_rows``: a fit on few rows moves the score less than the rows alone say.

        Why not scikit-learn here: its penalty pulls toward a = 0 (a constant), not toward leaving
        the score as it is, and it takes no offset to re-centre it.
        """
        z = _logit(raw) if on_logit else np.asarray(raw, dtype="float64")
        if prior_rows > 0 and on_logit:
            return cls(*_platt_toward_identity(z, np.asarray(y, dtype="float64"), prior_rows), on_logit)
        lr = LogisticRegression(C=1e6, max_iter=1000).fit(z.reshape(-1, 1), np.asarray(y, dtype=int))
        return cls(float(lr.coef_[0, 0]), float(lr.intercept_[0]), on_logit)


def _platt_toward_identity(z: np.ndarray, y: np.ndarray, prior: float) -> tuple[float, float]:
    """(a, b) maximising the Bernoulli log likelihood of sigmoid(a z + b) minus
    prior / 2 * ((a - 1)^2 + b^2)."""

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        a, b = theta
        t = a * z + b
        q = 1.0 / (1.0 + np.exp(-t))
        value = float(np.logaddexp(0.0, t).sum() - (y * t).sum()) + 0.5 * prior * ((a - 1.0) ** 2 + b**2)
        grad = np.array([((q - y) * z).sum() + prior * (a - 1.0), (q - y).sum() + prior * b])
        return value, grad

    theta = minimize(loss, np.array([1.0, 0.0]), jac=True, method="L-BFGS-B").x
    return float(theta[0]), float(theta[1])


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
    col = "p_reach" if label == "reach" else "p_conversion"
    truth = pq.read_table(truth_path, columns=["attempt_id", col]).to_pandas()
    truth = truth.drop_duplicates("attempt_id").set_index("attempt_id")[col]
    return truth.reindex(attempt_ids.astype(str).to_numpy()).to_numpy(dtype="float64")


# --------------------------------------------------------------------------------------------
# the test day: the model and the baselines on the same attempts
# --------------------------------------------------------------------------------------------
@dataclass
class DayEvaluation:
    """The test day: the model's scores, every metric, and the baselines it is compared to."""

    y: np.ndarray
    raw: np.ndarray  # uncalibrated model output
    p: np.ndarray  # calibrated probability
    threshold: float
    confusion: dict[str, int]
    metrics: dict[str, float]
    baselines: dict[str, np.ndarray] = field(default_factory=dict)


def evaluate_test_day(
    settings: Settings, model: ContactModel, test_df: pd.DataFrame, label: str, day: date, threshold: float
) -> DayEvaluation:
    """Metrics of the model and of the random, heuristic and (simulated worlds) oracle baselines."""
    y = test_df[label].astype(int).to_numpy()
    # person-days: the test rows may span several days (a thin lake's test window)
    days = test_df["date"].astype(str) if "date" in test_df else day.isoformat()
    groups = (test_df["person_id"].astype(str) + "|" + days).to_numpy()
    channels = test_df["channel"].astype(str).to_numpy()
    raw = model.raw_score(test_df, num_threads=settings.num_threads)
    p = model.calibrate(raw)
    metrics = evaluate(y, p, groups, channels, seed=settings.seed)
    if settings.objective != "lambdarank":
        metrics["ece_uncalibrated"] = ece(y, raw)
    metrics["threshold"] = threshold
    baselines: dict[str, np.ndarray] = {
        "random": random_score(len(test_df), settings.seed),
        "heuristic": heuristic_score(test_df),
    }
    oracle = None
    if "attempt_id" in test_df:
        oracle = oracle_probabilities(
            settings.landing / "truth_attempts.parquet", test_df["attempt_id"], settings.label
        )
    for name, s in baselines.items():
        m = evaluate(y, s, groups, channels, probabilistic=False, seed=settings.seed)
        metrics.update({f"baseline_{name}_{k}": v for k, v in m.items()})
    if oracle is not None and np.isfinite(oracle).any():
        known = np.isfinite(oracle)
        m = evaluate(y[known], oracle[known], groups[known], channels[known], seed=settings.seed)
        metrics.update({f"baseline_oracle_{k}": v for k, v in m.items()})
        metrics["oracle_coverage"] = float(known.mean())
        # the model on exactly the oracle's rows, so the gap is like for like
        metrics["auc_on_oracle_rows"] = binary_metrics(y[known], p[known])["auc"]
        baselines["oracle"] = np.where(known, oracle, np.nanmean(oracle))
    return DayEvaluation(y, raw, p, threshold, confusion(y, p, threshold), metrics, baselines)
