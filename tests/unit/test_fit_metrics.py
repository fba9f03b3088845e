"""The daily fit computes only the metric early stopping reads; tuning also watches the AUC."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np

from contactrank.ml.train import fit, lgb_params


def _datasets(params: dict) -> tuple[lgb.Dataset, lgb.Dataset]:
    rng = np.random.default_rng(3)
    X = rng.normal(size=(4000, 6)).astype("float32")
    y = (rng.random(4000) < 1 / (1 + np.exp(-(X[:, 0] - 0.5 * X[:, 1])))).astype("float32")
    dtrain = lgb.Dataset(X[:3000], label=y[:3000], params=params, free_raw_data=False)
    return dtrain, lgb.Dataset(X[3000:], label=y[3000:], reference=dtrain, free_raw_data=False)


def _trees(booster: lgb.Booster) -> str:
    return booster.model_to_string().split("end of trees")[0]


def test_the_daily_fit_watches_the_log_loss_only_and_grows_the_same_trees(settings) -> None:
    s = settings.replace(num_boost_round=200, early_stopping_rounds=5)
    daily, tuning = lgb_params(s), lgb_params(s, watch_auc=True)
    assert daily["metric"] == "binary_logloss"
    assert tuning["metric"] == ["binary_logloss", "auc"]
    fitted = {}
    for name, params in (("daily", daily), ("tuning", tuning)):
        booster = fit(s, params, *_datasets(params))
        fitted[name] = booster
    assert set(fitted["daily"].best_score["valid"]) == {"binary_logloss"}
    assert set(fitted["tuning"].best_score["valid"]) == {"binary_logloss", "auc"}
    # the stopping metric is the same, so the same iteration is kept and the trees are identical
    assert fitted["daily"].best_iteration == fitted["tuning"].best_iteration < 200
    assert _trees(fitted["daily"]) == _trees(fitted["tuning"])
