"""`contactrank train --date D`: fit the contact-success model on a rolling window, log it, register it.

Split (by business date, never by row): the newest day D is the test day, the ``valid_days``
labelled days before it validate (early stopping, calibration, operating threshold), every older
day of the window trains. The result is logged to MLflow as one run and registered as a new
version of ``settings.model_name`` carrying the alias ``challenger``; ``ml.registry.gate``
decides whether it becomes ``champion``.

Determinism: rows are sorted by (date, person_id, attempt_id), categories are frozen sorted,
and LightGBM runs with a seed, ``deterministic=True``, ``force_row_wise=True`` and a fixed
thread count, so the same partitions give the same model bytes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from contactrank.errors import ContactrankError, NotReady
from contactrank.features.lake import DATA_FILE, partition_dates, partition_dir, read_partition
from contactrank.features.schema import FEATURE_PREFIX, LABEL_COLUMNS
from contactrank.settings import Settings

log = logging.getLogger(__name__)

KIND = "training"
TAG_DATE = "contactrank.date"
TAG_FINGERPRINT = "contactrank.fingerprint"
TAG_CONFIG = "contactrank.train_config"
TAG_TEST_DAY = "contactrank.test_day"
TAG_DRIFT_BLOCKED = "contactrank.drift.blocked"
TAG_DRIFT_REASON = "contactrank.drift.reason."
# one value per day (calendar) or per population: their PSI between days is meaningless
_DRIFT_SKIP = ("f_dow", "f_month", "f_dom")

# Defaults chosen for 1e5-1e7 rows of ~100 mostly-count features on 2 cores; tuning overrides them.
# A slower fit (learning_rate 0.03, 31 leaves, ~270 trees) gained nothing on the simulator (+0.0007 AUC,
# -0.001 hit@1) for 3x the fit CPU, which the 5M-row budget cannot pay (docs/model.md, "Quality gap").
LGB_DEFAULTS: dict[str, Any] = {
    "learning_rate": 0.1,
    "num_leaves": 63,
    "min_data_in_leaf": 200,
    "feature_fraction": 0.7,  # per tree: histogram work scales with the sampled features
    "bagging_fraction": 0.7,  # and with the sampled rows (the 5M-row budget, docs/model.md)
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


# --------------------------------------------------------------------------------------------
# parameters
# --------------------------------------------------------------------------------------------
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


def lgb_params(settings: Settings, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The full LightGBM parameter set: defaults < ``overrides`` < the determinism switches."""
    params = {**LGB_DEFAULTS, **(overrides or {})}
    if settings.objective == "lambdarank":
        params.update(objective="lambdarank", metric="ndcg", eval_at=[1, 3], lambdarank_truncation_level=10)
    else:
        params.update(objective="binary", metric=["binary_logloss", "auc"])
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
# data
# --------------------------------------------------------------------------------------------
def label_column(settings: Settings) -> str:
    return LABEL_COLUMNS[settings.label]


def _read_day(settings: Settings, d: date, columns: list[str] | None = None) -> pd.DataFrame:
    """One training partition as a frame (features.features.load_training when it is available)."""
    try:
        from contactrank.features.features import load_training
    except ImportError:
        load_training = None
    if load_training is not None and columns is None:
        df = load_training(settings, d, d)
        if not isinstance(df, pd.DataFrame):
            df = df.to_pandas()
        return df
    table = read_partition(settings, KIND, d, columns=columns)
    if table is None:
        raise NotReady(f"training partition {partition_dir(settings, KIND, d)} does not exist")
    return table.to_pandas()


def _schema(settings: Settings, d: date):
    import pyarrow.parquet as pq

    return pq.read_schema(partition_dir(settings, KIND, d) / DATA_FILE)


def file_fingerprint(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class Window:
    """The days of one training run and what identifies their data."""

    test_day: date
    train_days: list[date]
    valid_days: list[date]
    labelled_days: int
    fingerprints: dict[str, str]
    fingerprint: str
    features: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)


def plan_window(settings: Settings, d: date) -> Window | str:
    """The split for date ``d``, or the reason there is nothing to train on yet."""
    start = d - timedelta(days=settings.train_window_days - 1)
    days = [x for x in partition_dates(settings, KIND) if start <= x <= d]
    if d not in days:
        raise NotReady(
            f"training partition {partition_dir(settings, KIND, d)} does not exist (run features first)"
        )
    label = label_column(settings)
    labelled = []
    for x in days:
        t = read_partition(settings, KIND, x, columns=[label])
        if t is not None and t.num_rows and t.column(label).null_count < t.num_rows:
            labelled.append(x)
    if d not in labelled:
        return f"test day {d} has no labelled attempts"
    need = max(settings.min_train_days, settings.valid_days + 2)
    if len(labelled) < need:
        return f"{len(labelled)} labelled day(s) in the window, need {need}"
    test = labelled[-1]
    valid = labelled[-1 - settings.valid_days : -1]
    train = labelled[: -1 - settings.valid_days]
    fps = {x.isoformat(): file_fingerprint(partition_dir(settings, KIND, x) / DATA_FILE) for x in labelled}
    fingerprint = hashlib.sha256(json.dumps(fps, sort_keys=True).encode()).hexdigest()
    schema = _schema(settings, d)
    import pyarrow as pa

    features = [n for n in schema.names if n.startswith(FEATURE_PREFIX)]
    categorical = [
        n
        for n in features
        if pa.types.is_string(schema.field(n).type)
        or pa.types.is_large_string(schema.field(n).type)
        or pa.types.is_dictionary(schema.field(n).type)
    ]
    if not features:
        raise ContactrankError(f"training partition of {d} has no f_* feature columns")
    return Window(test, train, valid, len(labelled), fps, fingerprint, features, categorical)


def freeze_categories(settings: Settings, days: list[date], categorical: list[str]) -> dict[str, list[str]]:
    """Sorted categories of each categorical feature over ``days`` (reads only those columns)."""
    seen: dict[str, set[str]] = {c: set() for c in categorical}
    for x in days:
        schema = _schema(settings, x)
        cols = [c for c in categorical if c in schema.names]
        if not cols:
            continue
        t = read_partition(settings, KIND, x, columns=cols)
        for c in cols:
            seen[c].update(str(v) for v in t.column(c).unique().to_pylist() if v is not None)
    return {c: sorted(v) for c, v in seen.items()}


def _person_sample(person: pd.Series, share: float, seed: int) -> np.ndarray:
    """Rows of the persons whose seeded hash falls in the first ``share`` of the hash range."""
    h = pd.util.hash_array(person.astype(str).to_numpy(dtype=object), hash_key=f"{seed:016d}"[:16])
    return h < np.uint64(min(share, 1.0) * float(np.iinfo(np.uint64).max))


@dataclass
class Matrix:
    """Encoded rows of some days: features, label, person-day groups, channels."""

    X: np.ndarray
    y: np.ndarray
    group_sizes: np.ndarray  # contiguous person-day groups (for lambdarank)
    groups: np.ndarray  # person-day key per row
    channels: np.ndarray
    folds: np.ndarray  # 0/1 by a hash of the person (calibration cross-fit)


def _sort_rows(df: pd.DataFrame) -> pd.DataFrame:
    keys = [c for c in ("date", "person_id", "attempt_id") if c in df.columns]
    return df.sort_values(keys, kind="mergesort").reset_index(drop=True) if keys else df


def _labelled(df: pd.DataFrame, label: str) -> pd.DataFrame:
    df = df[df[label].notna()]
    return _sort_rows(df)


def build_matrix(
    settings: Settings,
    days: list[date],
    features: list[str],
    categories: dict[str, list[str]],
    extras: bool = True,
    max_rows: int | None = None,
) -> Matrix:
    """Encode the labelled rows of ``days`` into one float32 matrix, reading one day at a time.

    ``extras=False`` skips the per-row group keys, channels and folds (not needed to fit; they
    cost more memory than the matrix on millions of rows). With more than ``max_rows`` rows,
    the same share of persons is kept on every day (whole person-days, chosen by a seeded hash
    of person_id: the same persons every run).
    """
    from contactrank.ml.model import encode

    label = label_column(settings)
    counts = []
    for x in days:
        t = read_partition(settings, KIND, x, columns=[label])
        counts.append(t.num_rows - t.column(label).null_count)
    share = 1.0 if max_rows is None or sum(counts) <= max_rows else max_rows / sum(counts)
    if share < 1.0:
        counts = []
        for x in days:
            t = read_partition(settings, KIND, x, columns=[label, "person_id"]).to_pandas()
            counts.append(int(_person_sample(t[t[label].notna()]["person_id"], share, settings.seed).sum()))
        log.info("training rows sampled over %d days: a %.3f share of persons, %d rows (train_max_rows %d)",
                 len(days), share, sum(counts), max_rows)  # fmt: skip
    n = int(sum(counts))
    X = np.empty((n, len(features)), dtype=np.float32, order="F")
    y = np.empty(n, dtype=np.float32)
    m = n if extras else 0
    groups = np.empty(m, dtype=object)
    channels = np.empty(m, dtype=object)
    folds = np.empty(m, dtype=np.int8)
    sizes: list[np.ndarray] = []
    row = 0
    for x in days:
        df = _read_day(settings, x)
        df = _labelled(df, label)
        if share < 1.0:
            df = df[_person_sample(df["person_id"], share, settings.seed)].reset_index(drop=True)
        k = len(df)
        encode(df, features, categories, out=X, row=row)
        y[row : row + k] = df[label].astype("float32").to_numpy()
        person = df["person_id"].astype(str).to_numpy() if "person_id" in df else np.arange(k).astype(str)
        if extras:
            groups[row : row + k] = np.char.add(person.astype(str), "|" + x.isoformat())
            channels[row : row + k] = df["channel"].astype(str).to_numpy() if "channel" in df else "all"
            folds[row : row + k] = (pd.util.hash_array(person.astype(object)) % 2).astype(np.int8)
        # rows are sorted by person within the day: consecutive runs are the person-day groups
        codes, _ = pd.factorize(person, sort=False)
        starts = np.flatnonzero(np.diff(codes, prepend=-1) != 0)
        sizes.append(np.diff(np.append(starts, k)))
        row += k
        del df
    return Matrix(X, y, np.concatenate(sizes) if sizes else np.zeros(0, int), groups, channels, folds)


# --------------------------------------------------------------------------------------------
# fitting
# --------------------------------------------------------------------------------------------
def make_datasets(
    params: dict[str, Any], train: Matrix, valid: Matrix, features: list[str], categorical: list[str]
):
    """LightGBM datasets of the train and validation days (built once; reusable across trials)."""
    import lightgbm as lgb

    lambdarank = params.get("objective") == "lambdarank"
    dtrain = lgb.Dataset(
        train.X,
        label=train.y,
        group=train.group_sizes if lambdarank else None,
        feature_name=features,
        categorical_feature=categorical,
        free_raw_data=True,
        params=params,
    )
    dvalid = lgb.Dataset(
        valid.X,
        label=valid.y,
        group=valid.group_sizes if lambdarank else None,
        reference=dtrain,
        free_raw_data=True,
    )
    return dtrain, dvalid


def fit(settings: Settings, params: dict[str, Any], dtrain, dvalid, callbacks: list | None = None):
    """LightGBM with early stopping on the validation days; the booster keeps its best iteration."""
    import lightgbm as lgb

    cbs = [lgb.early_stopping(settings.early_stopping_rounds, first_metric_only=True, verbose=False)]
    return lgb.train(
        params,
        dtrain,
        num_boost_round=settings.num_boost_round,
        valid_sets=[dvalid],
        valid_names=["valid"],
        callbacks=cbs + list(callbacks or []),
    )


def fit_booster(
    settings: Settings,
    params: dict[str, Any],
    train: Matrix,
    valid: Matrix,
    features: list[str],
    categorical: list[str],
    callbacks: list | None = None,
):
    """Build the datasets and :func:`fit` once."""
    dtrain, dvalid = make_datasets(params, train, valid, features, categorical)
    return fit(settings, params, dtrain, dvalid, callbacks)


def _last_trained(client, settings: Settings) -> list[Any]:
    from mlflow.exceptions import MlflowException

    try:
        return list(client.search_model_versions(f"name='{settings.model_name}'"))
    except MlflowException:
        return []


def _train_config(settings: Settings, params: dict[str, Any]) -> str:
    blob = {
        "params": params,
        "label": settings.label,
        "objective": settings.objective,
        "window": settings.train_window_days,
        "max_rows": settings.train_max_rows,
        "valid_days": settings.valid_days,
        "rounds": settings.num_boost_round,
        "early": settings.early_stopping_rounds,
    }
    return hashlib.sha256(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _cadence(settings: Settings, versions: list[Any], d: date, fingerprint: str, config: str) -> str | None:
    """Why training is not due for ``d`` (None when it is)."""
    dated = []
    for v in versions:
        tag = (v.tags or {}).get(TAG_DATE)
        if tag:
            dated.append((date.fromisoformat(tag), v))
    for when, v in dated:
        if when == d and v.tags.get(TAG_FINGERPRINT) == fingerprint and v.tags.get(TAG_CONFIG) == config:
            return f"already trained on the same data for {d}: version {v.version}"
    earlier = [when for when, _ in dated if when < d]
    if earlier:
        last = max(earlier)
        if (d - last).days < settings.retrain_every_days:
            return f"not due: last trained for {last}, retrain every {settings.retrain_every_days} day(s)"
    return None


def train(settings: Settings, d: date, force: bool = False) -> dict[str, Any]:
    """Train, evaluate, log and register a challenger for date ``d`` (see the module docstring)."""
    import mlflow

    from contactrank.ml import evaluate as ev
    from contactrank.ml.model import ContactModel
    from contactrank.ml.tracking import client as mlflow_client
    from contactrank.ml.tracking import git_sha

    t0 = time.perf_counter()
    window = plan_window(settings, d)
    if isinstance(window, str):
        log.info("train %s skipped: %s", d, window)
        return {"status": "skipped", "reason": window}
    tuned = load_best_params(settings)
    params = lgb_params(settings, tuned)
    config = _train_config(settings, params)
    client = mlflow_client(settings)
    if not force:
        reason = _cadence(settings, _last_trained(client, settings), d, window.fingerprint, config)
        if reason:
            log.info("train %s skipped: %s", d, reason)
            return {"status": "skipped", "reason": reason}

    label = label_column(settings)
    categories = freeze_categories(settings, window.train_days + window.valid_days, window.categorical)
    features = window.features
    mtrain = build_matrix(settings, window.train_days, features, categories, extras=False, max_rows=settings.train_max_rows)
    mvalid = build_matrix(settings, window.valid_days, features, categories)
    test_df = _labelled(_read_day(settings, window.test_day), label)
    if len(mtrain.y) == 0 or len(mvalid.y) == 0:
        return {"status": "skipped", "reason": "no labelled rows in the training or validation days"}
    t_load = time.perf_counter() - t0

    t1 = time.perf_counter()
    booster = fit_booster(settings, params, mtrain, mvalid, features, window.categorical)
    t_fit = time.perf_counter() - t1
    n_train, n_valid = len(mtrain.y), len(mvalid.y)
    pos_train, pos_valid = float(mtrain.y.sum()), float(mvalid.y.sum())
    del mtrain

    # calibration on the validation days (2-fold by person to choose, then refit on all)
    t2 = time.perf_counter()
    lambdarank = settings.objective == "lambdarank"
    raw_valid = np.asarray(booster.predict(mvalid.X, num_threads=settings.num_threads), dtype="float64")
    calibrator, cal_report = ev.fit_calibrator(
        raw_valid, mvalid.y, mvalid.folds, raw_is_probability=not lambdarank
    )
    model = ContactModel(
        booster=booster,
        features=features,
        categories=categories,
        calibrator=calibrator,
        label=settings.label,
        meta={"date": d.isoformat(), "objective": settings.objective, "calibration": cal_report["method"]},
    )
    p_valid = calibrator.predict(raw_valid) if calibrator is not None else raw_valid
    threshold = ev.operating_threshold(mvalid.y, p_valid)

    # the test day: model and baselines on the same attempts
    y_test = test_df[label].astype(int).to_numpy()
    groups = (test_df["person_id"].astype(str) + "|" + d.isoformat()).to_numpy()
    channels = test_df["channel"].astype(str).to_numpy()
    raw_test = model.raw_score(test_df, num_threads=settings.num_threads)
    p_test = model.predict_proba(test_df, num_threads=settings.num_threads)
    metrics = ev.evaluate(y_test, p_test, groups, channels, seed=settings.seed)
    if not lambdarank:
        metrics["ece_uncalibrated"] = ev.ece(y_test, raw_test)
    metrics["threshold"] = threshold
    baselines: dict[str, np.ndarray] = {
        "random": ev.random_score(len(test_df), settings.seed),
        "heuristic": ev.heuristic_score(test_df),
    }
    oracle = None
    if "attempt_id" in test_df:
        oracle = ev.oracle_probabilities(
            settings.landing / "truth_attempts.parquet", test_df["attempt_id"], settings.label
        )
    for name, s in baselines.items():
        m = ev.evaluate(y_test, s, groups, channels, probabilistic=False, seed=settings.seed)
        metrics.update({f"baseline_{name}_{k}": v for k, v in m.items()})
    if oracle is not None and np.isfinite(oracle).any():
        known = np.isfinite(oracle)
        m = ev.evaluate(y_test[known], oracle[known], groups[known], channels[known], seed=settings.seed)
        metrics.update({f"baseline_oracle_{k}": v for k, v in m.items()})
        metrics["oracle_coverage"] = float(known.mean())
        # the model on exactly the oracle's rows, so the gap is like for like
        metrics["auc_on_oracle_rows"] = ev.binary_metrics(y_test[known], p_test[known])["auc"]
        baselines["oracle"] = np.where(known, oracle, np.nanmean(oracle))
    cm = ev.confusion(y_test, p_test, threshold)
    drift = _drift(settings, window, test_df, features, label)
    metrics["drift_max_psi"] = drift["max_psi"]
    metrics["drift_label_rate_ratio"] = drift["label_rate_ratio"]
    for f, v in sorted(drift["psi"].items(), key=lambda kv: -np.nan_to_num(kv[1]))[:10]:
        metrics[f"psi_{f}"] = v
    t_eval = time.perf_counter() - t2

    counts = {
        "rows_train": n_train,
        "rows_valid": n_valid,
        "rows_test": len(test_df),
        "positives_train": pos_train,
        "positives_valid": pos_valid,
        "positives_test": float(y_test.sum()),
        "best_iteration": booster.best_iteration or booster.current_iteration(),
    }
    timings = {"load_s": t_load, "fit_s": t_fit, "evaluate_s": t_eval}

    # --- MLflow: one run, artifacts, model, registry ---------------------------------------
    t3 = time.perf_counter()
    run_params = {
        **{f"lgb_{k}": v for k, v in params.items()},
        "label": settings.label,
        "objective": settings.objective,
        "window_days": settings.train_window_days,
        "train_max_rows": settings.train_max_rows,
        "window_start": (window.train_days or window.valid_days)[0].isoformat(),
        "window_end": d.isoformat(),
        "train_days": f"{window.train_days[0]}..{window.train_days[-1]} ({len(window.train_days)})"
        if window.train_days
        else "",
        "valid_days": ",".join(x.isoformat() for x in window.valid_days),
        "test_day": window.test_day.isoformat(),
        "n_features": len(features),
        "calibration": cal_report["method"],
        "tuned_params": bool(tuned),
        "config_hash": settings.config_hash(),
    }
    sha = git_sha()
    tags = {
        TAG_DATE: d.isoformat(),
        TAG_TEST_DAY: window.test_day.isoformat(),
        TAG_FINGERPRINT: window.fingerprint,
        TAG_CONFIG: config,
        "mlflow.source.git.commit": sha or "unknown",
        "git_sha": sha or "unknown",
        TAG_DRIFT_BLOCKED: str(drift["blocked"]).lower(),
        **{f"{TAG_DRIFT_REASON}{i:02d}": r[:250] for i, r in enumerate(drift["reasons"][:20])},
    }
    with mlflow.start_run(run_name=f"train-{d.isoformat()}") as run:
        mlflow.set_tags(tags)
        mlflow.log_params(run_params)
        _log_datasets(settings, window)
        # The model first, then every metric in one batch linked to it: logging a model after
        # the metrics makes MLflow re-read each metric's history to link it (one query each).
        info = _log_model(settings, model, test_df, features)
        mlflow.log_metrics(
            {k: float(v) for k, v in {**metrics, **counts, **timings}.items() if np.isfinite(v)},
            model_id=info.model_id,
        )
        with tempfile.TemporaryDirectory() as tmp:
            _write_artifacts(
                Path(tmp),
                model,
                test_df,
                y_test,
                raw_test,
                p_test,
                baselines,
                cm,
                threshold,
                cal_report,
                window,
                metrics,
                params,
            )
            mlflow.log_artifacts(tmp, artifact_path="evaluation")
        version = _register(client, settings, run.info.run_id, info, tags)
        timings["mlflow_s"] = time.perf_counter() - t3
        mlflow.log_metric("mlflow_s", timings["mlflow_s"])
    log.info("trained version %s for %s: auc %.4f", version, d, metrics.get("auc", float("nan")))
    return {
        "status": "trained",
        "run_id": run.info.run_id,
        "version": int(version),
        "metrics": {k: round(float(v), 6) for k, v in metrics.items() if np.isfinite(v)},
        "counts": counts,
        "timings": {k: round(v, 3) for k, v in timings.items()},
        "calibration": cal_report,
        "drift": {"blocked": drift["blocked"], "reasons": drift["reasons"][:5], "max_psi": round(drift["max_psi"], 4)},
    }


def _drift(settings: Settings, window: Window, test_df: pd.DataFrame, features: list[str], label: str) -> dict[str, Any]:
    """PSI of each feature and the label rate of the test day against the last week of the window."""
    from contactrank.ml.drift import drift_report

    ref_days = (window.train_days + window.valid_days)[-7:]
    ref = pd.concat([_labelled(_read_day(settings, x), label) for x in ref_days], ignore_index=True)
    if len(ref) > 200_000:
        ref = ref.sample(200_000, random_state=settings.seed)
    feats = [f for f in features if f not in _DRIFT_SKIP and not f.startswith("f_g_")]
    report = drift_report(ref, test_df, feats, label, settings.drift_psi_threshold, settings.drift_label_rate_ratio)
    history = len(window.train_days) + len(window.valid_days)
    if report["blocked"] and history < settings.drift_min_history_days:
        # every feature of a young lake shifts as its history fills up: measured, logged, not enforced
        report["reasons"] = [f"not enforced ({history} < {settings.drift_min_history_days} days of history): {r}" for r in report["reasons"]]
        report["blocked"] = False
    return report


def _log_datasets(settings: Settings, window: Window) -> None:
    """Each split as an MLflow dataset input whose digest is the fingerprint of its partitions."""
    import mlflow
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    root = (settings.lake / KIND).resolve().as_uri()
    for ctx, days in (
        ("training", window.train_days),
        ("validation", window.valid_days),
        ("test", [window.test_day]),
    ):
        if not days:
            continue
        fp = hashlib.sha256("".join(window.fingerprints[x.isoformat()] for x in days).encode()).hexdigest()
        with warnings.catch_warnings():  # two registered local sources match a file URI; either is right
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(root)
        ds = MetaDataset(
            source=source,
            name=f"training {days[0]}..{days[-1]}",
            digest=fp[:32],
        )
        mlflow.log_input(ds, context=ctx)


def _example(test_df: pd.DataFrame, features: list[str], categorical: dict[str, list[str]]) -> pd.DataFrame:
    """A few rows of the test day with the model's f_* columns only (no ids), in serving dtypes."""
    ex = test_df[features].head(5).copy()
    for c in features:
        if c in categorical:
            ex[c] = ex[c].astype("string").fillna("none").astype(object)
        else:
            ex[c] = pd.to_numeric(ex[c], errors="coerce").astype("float64")
    return ex.reset_index(drop=True)


def _log_model(settings: Settings, model, test_df: pd.DataFrame, features: list[str]):
    import lightgbm as lgb
    import mlflow
    import sklearn
    from mlflow.models import infer_signature

    from contactrank.ml.model import ContactPyfunc

    example = _example(test_df, features, model.categories)
    signature = infer_signature(example, model.predict_proba(example))
    reqs = [
        f"lightgbm=={lgb.__version__}",
        f"pandas=={pd.__version__}",
        f"numpy=={np.__version__}",
        f"scikit-learn=={sklearn.__version__}",
        f"mlflow=={mlflow.__version__}",
    ]
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=ContactPyfunc(model),
        signature=signature,
        input_example=example,
        pip_requirements=reqs,
    )


def _register(client, settings: Settings, run_id: str, info, tags: dict[str, str]) -> str:
    """Register the logged model as a new version of ``settings.model_name`` with alias challenger."""
    import mlflow

    mv = mlflow.register_model(info.model_uri, settings.model_name, tags=tags)
    client.set_registered_model_alias(settings.model_name, "challenger", mv.version)
    return mv.version


def _write_artifacts(
    out: Path,
    model,
    test_df: pd.DataFrame,
    y: np.ndarray,
    raw: np.ndarray,
    p: np.ndarray,
    baselines: dict[str, np.ndarray],
    cm: dict[str, int],
    threshold: float,
    cal_report: dict[str, Any],
    window: Window,
    metrics: dict[str, float],
    params: dict[str, Any],
) -> None:
    from contactrank.ml import evaluate as ev

    gain = pd.Series(
        model.booster.feature_importance(importance_type="gain"), index=model.features, name="gain"
    )
    gain.sort_values(ascending=False).to_frame().to_csv(out / "importance_gain.csv", index_label="feature")
    ev.plot_importance(gain, out / "importance_gain.png")
    sample = test_df.sample(n=min(len(test_df), 1000), random_state=0) if len(test_df) else test_df
    if len(sample):
        ev.plot_shap_summary(model.contributions(sample), model.prepare(sample), out / "shap_summary.png")
    curves = {"model (calibrated)": p}
    if model.calibrator is not None and model.meta.get("objective") != "lambdarank":
        curves["model (raw)"] = raw
    ev.plot_calibration(y, curves, out / "calibration.png")
    ev.reliability(y, p).to_csv(out / "reliability.csv", index=False)
    ev.plot_gains(y, {"model": p, **baselines}, out / "lift_gain.png")
    ev.plot_confusion(cm, threshold, out / "confusion.png")
    (out / "confusion.json").write_text(json.dumps({"threshold": threshold, **cm}, indent=2))
    (out / "calibration.json").write_text(json.dumps(cal_report, indent=2, default=float))
    (out / "fingerprints.json").write_text(json.dumps(window.fingerprints, indent=2))
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2, default=float))
    (out / "params.json").write_text(json.dumps(params, indent=2, default=str))
