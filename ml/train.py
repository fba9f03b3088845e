"""`contactrank train --date D`: fit the contact-success model on a rolling window, log it, register it.

The window and its split come from ``ml.dataset`` (train days, validation days, the test day D).
Training fits LightGBM with early stopping on the validation days, calibrates on them, evaluates
the test day against baselines, measures drift, and records everything as one MLflow run whose
model becomes a new version with the alias ``challenger`` (``ml.train_logging``);
``ml.registry.gate`` decides whether it becomes ``champion``.

Determinism: LightGBM runs with a seed, ``deterministic=True``, ``force_row_wise=True`` and a
fixed thread count on deterministic matrices, so the same partitions give the same model bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
from mlflow.exceptions import MlflowException

from contactrank.errors import NotReady
from contactrank.features.lake import partition_dir, partition_files_of
from contactrank.features.sql import quote_literal
from contactrank.lock import home_lock
from contactrank.ml import evaluate as ev
from contactrank.ml.dataset import (
    KIND,
    Matrix,
    Window,
    build_matrix,
    freeze_categories,
    label_column,
    labelled_days,
    make_datasets,
    plan_window,
)
from contactrank.ml.drift import drift_metrics, measure_drift
from contactrank.ml.file_calibration import fit_file_calibrator
from contactrank.ml.model import ContactModel
from contactrank.ml.tracking import client as mlflow_client
from contactrank.ml.tracking import configure
from contactrank.ml.train_dask import fit_on_cluster
from contactrank.ml.train_logging import (
    TAG_CONFIG,
    TAG_DATE,
    TAG_FINGERPRINT,
    TrainingRun,
    finish_interrupted,
    log_training_run,
)
from contactrank.settings import Settings

log = logging.getLogger(__name__)

# Defaults chosen for 1e5-1e7 rows of ~100 mostly-count features on 2 cores; tuning overrides them.
# A slower fit (smaller learning rate, fewer leaves, more trees) gained nothing measurable on the
# simulator for several times the fit CPU, which the row budget cannot pay (docs/model.md, "Quality gap").
LGB_DEFAULTS: dict[str, Any] = {
    "learning_rate": 0.1,
    "num_leaves": 63,
    "min_data_in_leaf": 200,
    "feature_fraction": 0.7,  # per tree: histogram work scales with the sampled features
    "bagging_fraction": 0.7,  # and with the sampled rows (the row budget, docs/model.md)
    "bagging_freq": 1,
    "lambda_l2": 1.0,
    "max_bin": 63,
    "cat_smooth": 10.0,
    "max_cat_to_onehot": 8,
}
TUNABLE = (
    "learning_rate",
    "num_leaves",
    "min_data_in_leaf",
    "feature_fraction",
    "bagging_fraction",
    "bagging_freq",
    "lambda_l1",
    "lambda_l2",
    "min_gain_to_split",
    "max_bin",
    "cat_smooth",
    "max_cat_to_onehot",
)


def best_params_path(settings: Settings) -> Path:
    return settings.home / "tuning" / "best_params.json"


def load_best_params(settings: Settings) -> dict[str, Any]:
    """Tuned parameters for the current label and objective, or {} (unreadable file: warn, ignore)."""
    path = best_params_path(settings)
    if not path.is_file():
        return {}
    try:
        blob = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("ignoring %s: %s", path, exc)
        return {}
    if blob.get("label") != settings.label or blob.get("objective") != settings.objective:
        log.info(
            "ignoring %s: tuned for label=%s objective=%s", path, blob.get("label"), blob.get("objective")
        )
        return {}
    return {k: v for k, v in blob.get("params", {}).items() if k in TUNABLE}


def lgb_params(
    settings: Settings, overrides: dict[str, Any] | None = None, watch_auc: bool = False
) -> dict[str, Any]:
    """The full LightGBM parameter set: defaults < ``overrides`` < the determinism switches.

    Early stopping reads the first metric only. ``watch_auc`` (tuning's objective) adds the
    validation AUC, which sorts every validation row at every iteration: a daily fit that
    reads nothing from it does not pay for it."""
    params = {**LGB_DEFAULTS, **(overrides or {})}
    if settings.objective == "lambdarank":
        params.update(objective="lambdarank", metric="ndcg", eval_at=[1, 3], lambdarank_truncation_level=10)
    else:
        params.update(objective="binary", metric=["binary_logloss", "auc"] if watch_auc else "binary_logloss")
    params.update(
        seed=settings.seed,
        deterministic=True,
        force_row_wise=True,
        num_threads=settings.num_threads,
        verbose=-1,
        feature_pre_filter=False,  # so tuning min_data_in_leaf does not need a rebuilt dataset
    )
    return params


# --------------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------------
def fit(
    settings: Settings, params: dict[str, Any], dtrain, dvalid, callbacks: list | None = None
) -> lgb.Booster:
    """LightGBM with early stopping on the validation days; the booster keeps its best iteration."""
    stopping = [lgb.early_stopping(settings.early_stopping_rounds, first_metric_only=True, verbose=False)]
    return lgb.train(
        params,
        dtrain,
        num_boost_round=settings.num_boost_round,
        valid_sets=[dvalid],
        valid_names=["valid"],
        callbacks=stopping + list(callbacks or []),
    )


def fit_booster(
    settings: Settings,
    params: dict[str, Any],
    train: Matrix,
    valid: Matrix,
    features: list[str],
    categorical: list[str],
    callbacks: list | None = None,
) -> lgb.Booster:
    """Build the datasets and :func:`fit` once."""
    dtrain, dvalid = make_datasets(params, train, valid, features, categorical)
    return fit(settings, params, dtrain, dvalid, callbacks)


# --------------------------------------------------------------------------------------------
# cadence: whether a training for D is due
# --------------------------------------------------------------------------------------------
def registered_versions(client, settings: Settings) -> list[Any]:
    """Every registered version of the model ([] before the first one)."""
    try:
        return list(client.search_model_versions(f"name={quote_literal(settings.model_name)}"))
    except MlflowException:
        return []


def train_config(settings: Settings, params: dict[str, Any]) -> str:
    """A short hash of everything besides the data that shapes the model."""
    blob = {
        "params": params,
        "label": settings.label,
        "objective": settings.objective,
        "window": settings.train_window_days,
        "max_rows": settings.train_max_rows,
        "valid_days": settings.valid_days,
        "rounds": settings.num_boost_round,
        "early": settings.early_stopping_rounds,
        "min_rows": settings.train_min_rows,
        "halflife": settings.train_halflife_days,
        "valid_min_positives": settings.valid_min_positives,
        "gate_window": [settings.gate_window_days, settings.gate_min_rows, settings.gate_min_positives],
    }
    if settings.train_engine != "local":  # a distributed fit is another model (the local hash is unchanged)
        blob["engine"] = settings.train_engine
    # a model without the file map is another model; the default keeps the hash models had before
    if settings.file_calibration != "first_tries":
        blob["file_calibration"] = settings.file_calibration
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _dated(versions: list[Any]) -> list[tuple[date, Any]]:
    return [(date.fromisoformat(v.tags[TAG_DATE]), v) for v in versions if (v.tags or {}).get(TAG_DATE)]


def not_due(settings: Settings, versions: list[Any], d: date) -> str | None:
    """Why training is not due for ``d`` by the calendar alone (no partition read), or None.

    None also when a version for ``d`` exists: whether it saw the same data needs the fingerprint
    (:func:`cadence`)."""
    dated = _dated(versions)
    if any(when == d for when, _ in dated):
        return None
    earlier = [when for when, _ in dated if when < d]
    if earlier:
        last = max(earlier)
        if (d - last).days < settings.retrain_every_days:
            return f"not due: last trained for {last}, retrain every {settings.retrain_every_days} day(s)"
    return None


def cadence(settings: Settings, versions: list[Any], d: date, fingerprint: str, config: str) -> str | None:
    """Why training is not due for ``d`` (None when it is)."""
    for when, v in _dated(versions):
        if when == d and v.tags.get(TAG_FINGERPRINT) == fingerprint and v.tags.get(TAG_CONFIG) == config:
            return f"already trained on the same data for {d}: version {v.version}"
    earlier = [when for when, _ in _dated(versions) if when < d]
    if earlier:
        last = max(earlier)
        if (d - last).days < settings.retrain_every_days:
            return f"not due: last trained for {last}, retrain every {settings.retrain_every_days} day(s)"
    return None


# --------------------------------------------------------------------------------------------
# the steps of one training
# --------------------------------------------------------------------------------------------
@dataclass
class TrainingData:
    """The encoded train and validation days and the test day's labelled rows."""

    categories: dict[str, list[str]]
    train: Matrix | None  # dropped once the booster is fitted (the largest object of a run)
    valid: Matrix
    test_df: pd.DataFrame


def load_data(settings: Settings, window: Window) -> TrainingData:
    """The categories, validation and test rows; the training matrix too unless a cluster reads it."""
    categories = freeze_categories(settings, window.train_days + window.valid_days, window.categorical)
    features = window.features
    train = None
    if settings.train_engine == "local":
        train = build_matrix(
            settings,
            window.train_days,
            features,
            categories,
            extras=False,
            max_rows=settings.train_max_rows,
            day_weights=window.weights,
            known_counts=window.counts,
        )
    valid = build_matrix(settings, window.valid_days, features, categories, known_counts=window.counts)
    label = label_column(settings)
    frames = [df for _, df in labelled_days(settings, window.test_days or [window.test_day], label)]
    test_df = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    return TrainingData(categories, train, valid, test_df)


def calibrate(
    settings: Settings,
    d: date,
    booster: lgb.Booster,
    valid: Matrix,
    features: list[str],
    categories: dict[str, list[str]],
) -> tuple[ContactModel, dict[str, Any], float]:
    """The model with the calibrator chosen on the validation days (2-fold by person, then refit on all),
    its calibration report and the operating threshold."""
    raw_valid = np.asarray(booster.predict(valid.X, num_threads=settings.num_threads), dtype="float64")
    lambdarank = settings.objective == "lambdarank"
    calibrator, report = ev.fit_calibrator(raw_valid, valid.y, valid.folds, raw_is_probability=not lambdarank)
    model = ContactModel(
        booster=booster,
        features=features,
        categories=categories,
        calibrator=calibrator,
        label=settings.label,
        meta={"date": d.isoformat(), "objective": settings.objective, "calibration": report["method"]},
    )
    return model, report, ev.operating_threshold(valid.y, model.calibrate(raw_valid))


def fit_file_calibration(
    settings: Settings,
    model: ContactModel,
    calibration: dict[str, Any],
    window: Window,
    timings: dict[str, float],
) -> None:
    """Give ``model`` its file calibrator (``ml.file_calibration``) when the settings ask for one;
    its report goes to ``calibration["file"]`` and its time to ``timings["file_calibration_s"]``."""
    if settings.file_calibration != "first_tries":
        return
    started = time.perf_counter()
    model.file_calibrator, calibration["file"] = fit_file_calibrator(
        settings, model, window.valid_days, window.counts
    )
    model.meta["file_calibration"] = calibration["file"]["method"]
    timings["file_calibration_s"] = time.perf_counter() - started


def fit_model(
    settings: Settings, params: dict[str, Any], window: Window, data: TrainingData, timings: dict[str, float]
) -> tuple[lgb.Booster, dict[str, Any], tuple[int, float]] | None:
    """The booster, its parameters as run and (training rows, positives), by ``train_engine``
    (None: no training rows). Adds ``fit_s`` (and the workers' reading to ``load_s``) to ``timings``."""
    if settings.train_engine == "dask":
        cluster = fit_on_cluster(settings, params, window, data.categories)
        if cluster is None:
            return None
        timings["load_s"] += cluster.load_s
        timings["fit_s"] = cluster.fit_s
        ran = {**params, "tree_learner": "data", "num_machines": cluster.workers}
        return cluster.booster, ran, (cluster.rows, cluster.positives)
    if len(data.train.y) == 0:
        return None
    fit_started = time.perf_counter()
    booster = fit_booster(settings, params, data.train, data.valid, window.features, window.categorical)
    timings["fit_s"] = time.perf_counter() - fit_started
    return booster, params, (len(data.train.y), float(data.train.y.sum()))


def train(settings: Settings, d: date, force: bool = False) -> dict[str, Any]:
    """Train, evaluate, log and register a challenger for date ``d`` (see the module docstring).

    Under the home lock (re-entrant), so that a run found ``RUNNING`` belongs to a dead process."""
    with home_lock(settings, f"train {d.isoformat()}"):
        return _train(settings, d, force)


def _train(settings: Settings, d: date, force: bool) -> dict[str, Any]:
    started = time.perf_counter()
    if not partition_files_of(settings, KIND, d):
        raise NotReady(
            f"training partition {partition_dir(settings, KIND, d)} does not exist (run features first)"
        )
    client = mlflow_client(settings)
    known = registered_versions(client, settings)  # one listing for both: the repair moves an alias only
    for repaired in finish_interrupted(settings, client, configure(settings), known):
        log.warning("train %s: %s", d, repaired)
    versions = [] if force else known
    # the calendar first: on the days between retrainings no partition is read
    reason = None if force else not_due(settings, versions, d)
    if reason:
        log.info("train %s skipped: %s", d, reason)
        return {"status": "skipped", "reason": reason}
    window = plan_window(settings, d)
    if isinstance(window, str):
        log.info("train %s skipped: %s", d, window)
        return {"status": "skipped", "reason": window}
    tuned = load_best_params(settings)
    params = lgb_params(settings, tuned)
    config = train_config(settings, params)
    if not force:
        reason = cadence(settings, versions, d, window.fingerprint, config)
        if reason:
            log.info("train %s skipped: %s", d, reason)
            return {"status": "skipped", "reason": reason}

    data = load_data(settings, window)
    timings = {"load_s": time.perf_counter() - started}
    fitted = None if len(data.valid.y) == 0 else fit_model(settings, params, window, data, timings)
    if fitted is None:
        return {"status": "skipped", "reason": "no labelled rows in the training or validation days"}
    booster, params, (rows, positives) = fitted
    counts = {
        "rows_train": rows,
        "rows_valid": len(data.valid.y),
        "rows_test": len(data.test_df),
        "test_days": len(window.test_days),
        "train_days": len(window.train_days),
        "valid_days": len(window.valid_days),
        "positives_train": positives,
        "positives_valid": float(data.valid.y.sum()),
    }
    data.train = None

    evaluate_started = time.perf_counter()
    label = label_column(settings)
    model, calibration, threshold = calibrate(
        settings, d, booster, data.valid, window.features, data.categories
    )
    fit_file_calibration(settings, model, calibration, window, timings)
    test = ev.evaluate_test_day(settings, model, data.test_df, label, d, threshold)
    drift = measure_drift(settings, window, data.test_df, window.features, label)
    test.metrics.update(drift_metrics(drift))
    timings["evaluate_s"] = time.perf_counter() - evaluate_started
    counts["positives_test"] = float(test.y.sum())
    counts["best_iteration"] = booster.best_iteration or booster.current_iteration()

    run = TrainingRun(
        d, window, model, params, config, bool(tuned), calibration, test, drift, counts, timings
    )
    run_id, version = log_training_run(settings, client, run, data.test_df)
    metrics = test.metrics
    log.info("trained version %s for %s: auc %.4f", version, d, metrics.get("auc", float("nan")))
    return {
        "status": "trained",
        "run_id": run_id,
        "version": int(version),
        "metrics": {k: round(float(v), 6) for k, v in metrics.items() if np.isfinite(v)},
        "counts": counts,
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "calibration": calibration,
        "drift": {
            "blocked": drift["blocked"],
            "reasons": drift["reasons"][:5],
            "max_psi": round(drift["max_psi"], 4),
        },
    }
