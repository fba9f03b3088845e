"""`train_engine = "dask"`: LightGBM's distributed mode on a LocalCluster of 2 worker processes.

Same synthetic days as the single-process model; the distributed model must be as good on the
test rows (AUC within 0.005), go through the same MLflow logging and registry path, and come
back as an ordinary booster.
"""

from __future__ import annotations

from datetime import date

import numpy as np
import pytest
from helpers.synth_training import make_day, write_days
from sklearn.metrics import roc_auc_score

from contactrank.ml import registry
from contactrank.ml.dataset import build_matrix, freeze_categories, plan_window
from contactrank.ml.train import fit_model, lgb_params, load_data, train
from contactrank.ml.training_sample import label_column, sampled_counts
from contactrank.settings import Settings

pytest.importorskip("distributed")  # the optional `dask` extra (make install installs it)

from contactrank.ml.train_dask import load_part  # noqa: E402  (after the skip: needs no dask itself)

D = date(2026, 11, 20)


def _world(settings: Settings) -> Settings:
    # a person sample (train_max_rows) and recency weights: both engines must apply them alike
    s = settings.replace(train_max_rows=24_000, train_halflife_days=20.0, num_threads=2)
    write_days(s, D, 12, rows=4000)
    return s


def test_workers_encode_the_rows_the_local_matrix_holds(settings: Settings) -> None:
    s = _world(settings)
    window = plan_window(s, D)
    categories = freeze_categories(s, window.train_days + window.valid_days, window.categorical)
    local = build_matrix(s, window.train_days, window.features, categories, extras=False, max_rows=24_000)
    share, counts = sampled_counts(s, window.train_days, 24_000)
    assert share < 1.0
    whole = [load_part(s, x, 0, 1, window.features, categories, share, 1.0) for x in window.train_days]
    assert [len(y) for _, y, _ in whole] == counts
    np.testing.assert_array_equal(np.vstack([X for X, _, _ in whole]), local.X)
    np.testing.assert_array_equal(np.concatenate([y for _, y, _ in whole]), local.y)
    # person buckets split a day without losing, repeating or cutting a person's rows
    day = window.train_days[-1]
    buckets = [load_part(s, day, b, 3, window.features, categories, share, 0.5) for b in range(3)]
    assert sum(len(y) for _, y, _ in buckets) == counts[-1]
    rows = lambda X: sorted(map(tuple, np.nan_to_num(X, nan=-1.0)))  # noqa: E731
    assert rows(np.vstack([X for X, _, _ in buckets])) == rows(whole[-1][0])
    assert all((w == 0.5).all() for _, _, w in buckets)


@pytest.mark.slow
def test_a_two_worker_cluster_trains_a_model_as_good_as_the_local_one(settings: Settings) -> None:
    s = _world(settings)
    # the single-process model, fitted as train() fits it (without logging it: the test stays short)
    window = plan_window(s, D)
    data = load_data(s, window)
    local, _, (rows, positives) = fit_model(s, lgb_params(s), window, data, {"load_s": 0.0})

    dask = train(s.replace(train_engine="dask", dask_workers=2), D, force=True)
    assert dask["status"] == "trained"
    # the same rows reached the workers; the model differs only by distributed binning and sums
    assert (dask["counts"]["rows_train"], dask["counts"]["positives_train"]) == (rows, positives)
    assert dask["counts"]["rows_test"] == len(data.test_df)
    # early stopping ran on the validation days (it stopped before the last round)
    assert 0 < dask["counts"]["best_iteration"] < s.num_boost_round
    assert dask["metrics"]["auc"] > dask["metrics"]["baseline_heuristic_auc"]

    from contactrank.ml.tracking import client as mlflow_client

    client = mlflow_client(s)
    run = client.get_run(dask["run_id"])
    assert run.data.params["lgb_tree_learner"] == "data" and run.data.params["lgb_num_machines"] == "2"
    assert str(client.get_model_version_by_alias(s.model_name, "challenger").version) == str(dask["version"])
    # the registered version is an ordinary single-machine model: it loads and scores like any other
    model = registry.load_version(s, dask["version"])
    assert model.categories == data.categories
    X, y = model.matrix(data.test_df), data.test_df[label_column(s)].to_numpy()
    auc_dask = roc_auc_score(y, model.booster.predict(X))
    auc_local = roc_auc_score(y, local.predict(X))
    assert abs(auc_dask - auc_local) <= 0.005, (auc_local, auc_dask)
    p = model.predict_proba(make_day(D, 300, seed=7)[0])
    assert p.shape == (300,) and np.all((p >= 0) & (p <= 1))
