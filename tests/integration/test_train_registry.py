"""Training, MLflow logging, the promotion gate and promote/rollback, on real LightGBM + MLflow."""

from __future__ import annotations

import json
from datetime import date, timedelta

import numpy as np
import pytest
from helpers.synth_training import make_day, write_days

from contactrank.errors import InputError, NotReady
from contactrank.ml import registry
from contactrank.ml.train import train
from contactrank.settings import Settings

D = date(2026, 11, 20)


def _client(settings: Settings):
    from contactrank.ml.tracking import client

    return client(settings)


def test_train_logs_run_artifacts_and_challenger_then_is_deterministic(settings: Settings) -> None:
    s = settings.replace(retrain_every_days=2)
    write_days(s, D, 11)
    first = train(s, D - timedelta(days=1))
    assert first["status"] == "trained" and first["version"] == 1
    m = first["metrics"]
    # the model learns the signal and beats both baselines; the oracle bounds it
    assert m["auc"] > m["baseline_heuristic_auc"] > m["baseline_random_auc"]
    assert m["auc"] < m["baseline_oracle_auc"] + 0.01
    assert {"pr_auc", "log_loss", "brier", "ece", "hit1", "ndcg3", "auc_voice", "hit1_sms"} <= set(m)

    client = _client(s)
    run = client.get_run(first["run_id"])
    assert run.data.tags["contactrank.date"] == "2026-11-19"
    assert run.data.tags["git_sha"]
    assert run.data.params["test_day"] == "2026-11-19" and run.data.params["label"] == "reach"
    metrics = run.data.metrics  # flat names, or grouped ones ("at_a_glance/rows_test") where logged so
    assert metrics.get("rows_test", metrics.get("at_a_glance/rows_test")) == 1500
    assert {"baseline_oracle_auc", "baseline/oracle/auc"} & set(metrics)
    assert {i.dataset.name.split()[0] for i in run.inputs.dataset_inputs} == {"training"}
    arts = {a.path for a in client.list_artifacts(first["run_id"], "evaluation")}
    for name in (
        "importance_gain.png",
        "shap_summary.png",
        "calibration.png",
        "lift_gain.png",
        "confusion.png",
        "fingerprints.json",
    ):
        assert f"evaluation/{name}" in arts
    assert str(client.get_model_version_by_alias(s.model_name, "challenger").version) == "1"

    # the logged pyfunc: no personal ids in the example or the signature, calibrated probabilities
    import mlflow

    mi = mlflow.models.get_model_info(f"models:/{s.model_name}/1")
    inputs = mi.signature.inputs.input_names()
    assert inputs and all(c.startswith("f_") for c in inputs)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{s.model_name}/1")
    df, _ = make_day(D, 300, seed=7)
    p = pyfunc.predict(df[inputs])
    assert np.all((p >= 0) & (p <= 1))
    model = pyfunc.unwrap_python_model().model
    np.testing.assert_allclose(p, model.predict_proba(df))

    # cadence: D is one day after the last training, every 2 days -> not due; then forced twice
    skipped = train(s, D)
    assert skipped["status"] == "skipped" and "not due" in skipped["reason"]
    a = train(s, D, force=True)
    b = train(s, D, force=True)
    assert (a["version"], b["version"]) == (2, 3)
    ma, mb = registry.load_version(s, 2), registry.load_version(s, 3)
    assert ma.booster.model_to_string() == mb.booster.model_to_string()
    assert a["metrics"] == b["metrics"]
    # same data, same date, not forced: already done
    again = train(s.replace(retrain_every_days=1), D)
    assert again["status"] == "skipped" and "already trained" in again["reason"]


def test_train_skips_without_enough_labelled_days(settings: Settings) -> None:
    write_days(settings, D, 5)
    out = train(settings, D)
    assert out == {"status": "skipped", "reason": "5 labelled day(s) in the window, need 7"}
    with pytest.raises(NotReady, match="training/date=2026-11-21"):
        train(settings, D + timedelta(days=1))


def test_gate_keeps_champion_against_degraded_challenger_and_promote_rolls_back(settings: Settings) -> None:
    with pytest.raises(NotReady, match="no 'champion'"):
        registry.load_champion(settings)
    assert registry.gate(settings, D)["status"] == "skipped"

    write_days(settings, D, 10)
    assert train(settings, D)["version"] == 1
    g1 = registry.gate(settings, D)
    assert g1["status"] == "promoted" and g1["champion"] == 1
    assert "ok: first model, floors only" in g1["reasons"]
    model, info = registry.load_champion(settings)
    assert info["version"] == 1 and info["name"] == settings.model_name and info["run_id"]

    # a challenger trained on shuffled labels (same attempts, same test day, corrupted history)
    write_days(settings, D - timedelta(days=1), 9, shuffle_labels=True, truth=False)
    bad = train(settings, D)
    assert bad["version"] == 2 and bad["metrics"]["auc"] < 0.6
    g2 = registry.gate(settings, D)
    assert g2["status"] == "rejected" and g2["champion"] == 1 and g2["previous_champion"] == 1
    failed = [r for r in g2["reasons"] if r.startswith("fail:")]
    assert any("vs champion" in r for r in failed)
    client = _client(settings)
    tags = client.get_run(bad["run_id"]).data.tags
    assert tags["contactrank.gate.decision"] == "rejected"
    logged = [v for k, v in sorted(tags.items()) if k.startswith("contactrank.gate.reason.")]
    assert logged == g2["reasons"]
    assert str(client.get_model_version_by_alias(settings.model_name, "champion").version) == "1"
    again = registry.gate(settings, D)
    assert again["status"] == "skipped" and "already gated: rejected" in again["reason"]

    # manual promotion (and rollback)
    assert registry.promote(settings, 2) == {
        "status": "promoted",
        "version": 2,
        "previous": 1,
        "run_id": bad["run_id"],
    }
    assert registry.gate(settings, D)["reason"].startswith("no challenger newer than the champion")
    assert registry.promote(settings, 1)["previous"] == 2
    assert registry.load_champion(settings)[1]["version"] == 1
    with pytest.raises(InputError, match="no version 9"):
        registry.promote(settings, 9)


def test_calibration_fixes_a_base_rate_shift(settings: Settings) -> None:
    # the base rate doubles on the last four days (validation + test): the raw model is too low there
    shifted = {D - timedelta(days=i): -0.6 for i in range(4)}
    write_days(settings, D, 12, intercepts=shifted)
    out = train(settings, D)
    assert out["calibration"]["method"] in {"isotonic", "platt"}
    m = out["metrics"]
    assert m["ece_uncalibrated"] > 0.05
    assert m["ece"] < m["ece_uncalibrated"] / 2
    assert registry.load_version(settings, 1).calibrator is not None


@pytest.mark.slow
def test_lambdarank_objective_scores_calibrated_probabilities(settings: Settings) -> None:
    s = settings.replace(objective="lambdarank")
    write_days(s, D, 10)
    out = train(s, D)
    assert out["status"] == "trained"
    assert out["calibration"]["method"] in {"isotonic", "platt"}
    assert out["metrics"]["auc"] > out["metrics"]["baseline_heuristic_auc"]
    assert 0 < out["metrics"]["ece"] < 0.1


def test_best_params_file_is_used_when_it_matches(settings: Settings) -> None:
    write_days(settings, D, 8)
    path = settings.home / "tuning" / "best_params.json"
    path.parent.mkdir(parents=True)
    path.write_text(
        json.dumps({"label": "reach", "objective": "binary", "params": {"num_leaves": 7, "bogus": 1}})
    )
    out = train(settings, D)
    run = _client(settings).get_run(out["run_id"])
    assert run.data.params["lgb_num_leaves"] == "7" and run.data.params["tuned_params"] == "True"
    assert "lgb_bogus" not in run.data.params


def test_loading_a_version_checks_its_pins_without_scanning_every_distribution(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import importlib.metadata

    import lightgbm
    from mlflow.utils import requirements_utils

    write_days(settings, D, 10)
    assert train(settings, D)["version"] == 1

    def scan(*args, **kwargs):
        raise AssertionError("MLflow's scan of every installed distribution ran")

    # the scan costs seconds in every fresh task process; the pins are looked up by name instead
    monkeypatch.setattr(requirements_utils, "_init_packages_to_modules_map", scan)
    with caplog.at_level("WARNING", logger="contactrank.ml.registry"):
        assert registry.load_version(settings, 1).booster is not None
    assert not [r for r in caplog.records if "package versions" in r.getMessage()]

    real_version = importlib.metadata.version
    registry._LOADED.clear()  # a fresh process: the environment is checked when a model is loaded
    monkeypatch.setattr(
        importlib.metadata,
        "version",
        lambda name: "0.0.1" if name == "lightgbm" else real_version(name),
    )
    with caplog.at_level("WARNING", logger="contactrank.ml.registry"):
        registry.load_version(settings, 1)
    warned = [r.getMessage() for r in caplog.records if "package versions" in r.getMessage()]
    assert warned and f"lightgbm=={lightgbm.__version__} (installed 0.0.1)" in warned[0]


def test_a_version_is_loaded_once_and_a_new_model_of_the_same_number_again(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mlflow.pyfunc

    write_days(settings, D, 10)
    assert train(settings, D)["version"] == 1
    loads = []  # loads of registered versions (a training also loads the model it logs, from a path)
    real_load = mlflow.pyfunc.load_model

    def counted(uri, *args, **kwargs):
        if str(uri).startswith("models:/"):
            loads.append(uri)
        return real_load(uri, *args, **kwargs)

    monkeypatch.setattr(mlflow.pyfunc, "load_model", counted)
    first = registry.load_version(settings, 1)
    assert registry.load_version(settings, 1) is first and len(loads) == 1

    # the same store, the same version number, another model (the registered model deleted and
    # trained again): its run tells them apart
    _client(settings).delete_registered_model(settings.model_name)
    write_days(settings, D, 10, seed=8)
    assert train(settings, D)["version"] == 1
    second = registry.load_version(settings, 1)
    assert second is not first and len(loads) == 2
