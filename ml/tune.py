"""`contactrank tune --date D --trials N`: Optuna search over LightGBM parameters.

The study lives in ``<home>/tuning/optuna.db`` (RDB storage, ``load_if_exists``): running the
same command again after a kill resumes it, finishing the trials that are missing (trials left
RUNNING by the killed process are marked FAIL first; one tuning process per study at a time).
Trials train on the train days and are scored on the validation days of D's window (the test
day D is never seen), with TPE (seeded) and median pruning fed by LightGBM's callback. Every
trial is a nested MLflow run under one parent run per invocation. The best parameters go to
``<home>/tuning/best_params.json``, which the next ``train`` uses. Search space: docs/model.md.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import date
from typing import Any

import lightgbm as lgb
import mlflow
import optuna
from optuna.trial import TrialState
from optuna_integration import LightGBMPruningCallback

from contactrank.ml.dataset import Window, build_matrix, freeze_categories, make_datasets, plan_window
from contactrank.ml.tracking import configure
from contactrank.ml.train import best_params_path, fit, lgb_params
from contactrank.settings import Settings

log = logging.getLogger(__name__)


def search_space(trial) -> dict[str, Any]:
    """The sampled LightGBM parameters of one trial (documented in docs/model.md)."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 0.02, 0.2, log=True),
        "num_leaves": trial.suggest_int("num_leaves", 15, 255, log=True),
        "min_data_in_leaf": trial.suggest_int("min_data_in_leaf", 20, 2000, log=True),
        "feature_fraction": trial.suggest_float("feature_fraction", 0.4, 1.0),
        "bagging_fraction": trial.suggest_float("bagging_fraction", 0.5, 1.0),
        "bagging_freq": 1,
        "lambda_l1": trial.suggest_float("lambda_l1", 1e-3, 10.0, log=True),
        "lambda_l2": trial.suggest_float("lambda_l2", 1e-3, 10.0, log=True),
        "min_gain_to_split": trial.suggest_float("min_gain_to_split", 0.0, 1.0),
        "cat_smooth": trial.suggest_float("cat_smooth", 1.0, 100.0, log=True),
    }


def storage_url(settings: Settings) -> str:
    return f"sqlite:///{(settings.home / 'tuning' / 'optuna.db').resolve()}"


def study_name(settings: Settings, d: date) -> str:
    return f"{settings.model_name}-{settings.label}-{settings.objective}-{d.isoformat()}"


def _fail_stale(study) -> int:
    """Mark trials a killed run left RUNNING as FAIL so they neither count nor block the sampler."""
    stale = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
    for t in stale:
        study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
    return len(stale)


def _write_best(settings: Settings, blob: dict[str, Any]) -> None:
    path = best_params_path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(blob, indent=2, sort_keys=True))
    os.replace(tmp, path)  # readers see the old file or the new one, never half of one


def _open_study(settings: Settings, name: str) -> optuna.Study:
    """The study in its RDB storage, created or loaded (a resumed study keeps its trials)."""
    (settings.home / "tuning").mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.create_study(
        study_name=name,
        storage=storage_url(settings),
        sampler=optuna.samplers.TPESampler(seed=settings.seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=20),
        direction="maximize",
        load_if_exists=True,
    )


def _datasets(settings: Settings, window: Window) -> tuple[lgb.Dataset, lgb.Dataset]:
    """The LightGBM datasets of the window's train and validation days, built once for every trial."""
    categories = freeze_categories(settings, window.train_days + window.valid_days, window.categorical)
    train = build_matrix(
        settings,
        window.train_days,
        window.features,
        categories,
        extras=False,
        max_rows=settings.train_max_rows,
    )
    valid = build_matrix(settings, window.valid_days, window.features, categories, extras=False)
    return make_datasets(lgb_params(settings), train, valid, window.features, window.categorical)


def _objective(settings: Settings, dtrain: lgb.Dataset, dvalid: lgb.Dataset, metric: str):
    """One trial: fit with the sampled parameters as a nested MLflow run; the validation ``metric``."""

    def objective(trial: optuna.Trial) -> float:
        sampled = search_space(trial)
        params = lgb_params(settings, sampled, watch_auc=metric == "auc")
        mlflow.start_run(run_name=f"trial-{trial.number}", nested=True)
        status = "FAILED"
        try:
            mlflow.log_params({**sampled, "trial": trial.number})
            pruning = LightGBMPruningCallback(trial, metric, valid_name="valid")
            booster = fit(settings, params, dtrain, dvalid, [pruning])
            value = float(booster.best_score["valid"][metric])
            trial.set_user_attr("best_iteration", int(booster.best_iteration or booster.current_iteration()))
            mlflow.log_metrics(
                {f"valid_{metric.replace('@', '_at_')}": value, "best_iteration": booster.best_iteration}
            )
            status = "FINISHED"
            return value
        except optuna.TrialPruned:
            mlflow.set_tag("optuna.state", "pruned")
            status = "KILLED"
            raise
        finally:
            mlflow.end_run(status=status)

    return objective


def _store_best(settings: Settings, d: date, study: optuna.Study, metric: str) -> dict[str, Any]:
    """Write the best trial's parameters for ``train`` and log them on the active run."""
    best = study.best_trial
    blob = {
        "label": settings.label,
        "objective": settings.objective,
        "study": study.study_name,
        "date": d.isoformat(),
        "metric": metric,
        "value": best.value,
        "trial": best.number,
        "best_iteration": best.user_attrs.get("best_iteration"),
        "params": {**search_space(optuna.trial.FixedTrial(best.params))},
    }
    _write_best(settings, blob)
    mlflow.log_metric(f"best_valid_{metric.replace('@', '_at_')}", float(best.value))
    mlflow.log_dict(blob, "best_params.json")
    return blob


def tune(settings: Settings, d: date, trials: int = 20) -> dict[str, Any]:
    """Run (or resume) the study of date ``d`` up to ``trials`` finished trials; store the best params."""
    window = plan_window(settings, d)
    if isinstance(window, str):
        return {"status": "skipped", "reason": window}
    name = study_name(settings, d)
    study = _open_study(settings, name)
    stale = _fail_stale(study)
    finished = [
        t for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
    ]
    remaining = max(int(trials) - len(finished), 0)
    metric = "ndcg@3" if settings.objective == "lambdarank" else "auc"
    if remaining:
        dtrain, dvalid = _datasets(settings, window)

    configure(settings)
    with mlflow.start_run(run_name=f"tune-{d.isoformat()}") as parent:
        mlflow.set_tags(
            {
                "contactrank.tune.date": d.isoformat(),
                "contactrank.tune.study": name,
                "contactrank.tune.resumed": str(bool(finished)),
            }
        )
        mlflow.log_params(
            {"trials_target": trials, "trials_before": len(finished), "stale_failed": stale, "metric": metric}
        )
        if remaining:
            study.optimize(
                _objective(settings, dtrain, dvalid, metric), n_trials=remaining, gc_after_trial=True
            )
        complete = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
        if not complete:
            return {"status": "failed", "study": name, "reason": "no trial completed"}
        best = _store_best(settings, d, study, metric)
        n_pruned = sum(t.state == TrialState.PRUNED for t in study.get_trials(deepcopy=False))
        return {
            "status": "tuned",
            "study": name,
            "storage": storage_url(settings),
            "run_id": parent.info.run_id,
            "trials_total": len(complete) + n_pruned,
            "trials_run": remaining,
            "trials_pruned": n_pruned,
            "stale_failed": stale,
            "best_value": round(float(best["value"]), 6),
            "best_trial": best["trial"],
            "best_params": best["params"],
            "path": str(settings.home / "tuning" / "best_params.json"),
        }
