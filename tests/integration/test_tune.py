"""ml.tune: a persistent Optuna study that resumes, nested MLflow runs, best params used by train."""

from __future__ import annotations

import json
from datetime import date

import optuna
from helpers.synth_training import write_days

from contactrank.ml.train import train
from contactrank.ml.tune import storage_url, study_name, tune
from contactrank.settings import Settings

D = date(2026, 11, 20)


def test_tune_resumes_a_killed_study_and_feeds_train(settings: Settings) -> None:
    s = settings.replace(num_boost_round=60, early_stopping_rounds=10)
    write_days(s, D, 8, rows=800, truth=False)
    first = tune(s, D, trials=2)
    assert first["status"] == "tuned" and first["trials_run"] == 2 and first["trials_total"] == 2

    # a process killed mid-trial leaves a RUNNING trial behind in the RDB storage
    study = optuna.load_study(study_name=study_name(s, D), storage=storage_url(s))
    study.ask()
    resumed = tune(s, D, trials=4)
    assert resumed["stale_failed"] == 1
    assert resumed["trials_run"] == 2 and resumed["trials_total"] == 4
    states = [
        t.state.name for t in optuna.load_study(study_name=study_name(s, D), storage=storage_url(s)).trials
    ]
    assert states.count("FAIL") == 1 and len(states) == 5
    # asking again for 4 trials runs nothing
    assert tune(s, D, trials=4)["trials_run"] == 0

    # nested MLflow runs under one parent per invocation
    from contactrank.ml.tracking import client

    c = client(s)
    children = c.search_runs(
        [c.get_run(resumed["run_id"]).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{resumed['run_id']}'",
    )
    assert len(children) == 2 and all(r.data.params.get("learning_rate") for r in children)

    blob = json.loads((s.home / "tuning" / "best_params.json").read_text())
    assert blob["label"] == "reach" and blob["study"] == study_name(s, D)
    assert blob["params"] == resumed["best_params"]
    out = train(s, D)
    run = c.get_run(out["run_id"])
    assert run.data.params["tuned_params"] == "True"
    assert run.data.params["lgb_num_leaves"] == str(blob["params"]["num_leaves"])
