"""Crash windows of train and gate (a kill -9 between two MLflow calls) are repaired by the rerun.

Each crash state is built directly with MlflowClient from a normal training, then the rerun of
the step must finish what the killed process left half done.
"""

from __future__ import annotations

import shutil
from datetime import date

from helpers.synth_training import write_days

from contactrank.ml import registry
from contactrank.ml.tracking import client as mlflow_client
from contactrank.ml.tracking import configure
from contactrank.ml.train import train
from contactrank.settings import load_settings

D = date(2026, 11, 20)
DECISION = "contactrank.gate.decision"


def _alias_version(client, settings, alias: str) -> str:
    return str(client.get_model_version_by_alias(settings.model_name, alias).version)


def test_version_registered_without_its_alias_is_finished_by_the_rerun(settings) -> None:
    write_days(settings, D, 10)
    first = train(settings, D)
    client = mlflow_client(settings)
    # killed right after register_model: no challenger alias, the run still RUNNING
    client.delete_registered_model_alias(settings.model_name, "challenger")
    client.update_run(first["run_id"], status="RUNNING")

    again = train(settings, D)
    assert again["status"] == "skipped" and "already trained" in again["reason"]
    assert _alias_version(client, settings, "challenger") == "1"
    assert client.get_run(first["run_id"]).info.status == "FINISHED"  # its model was complete
    assert registry.gate(settings, D)["status"] == "promoted"


def test_a_challenger_waiting_for_its_gate_is_left_alone(settings, caplog) -> None:
    """The listing of versions does not carry their aliases: the repair must not read that as a
    version registered without its alias and repeat itself on every train until the gate runs."""
    write_days(settings, D, 10)
    train(settings, D)
    with caplog.at_level("WARNING", logger="contactrank.ml.train"):
        again = train(settings, D)
    assert again["status"] == "skipped"
    assert not [r for r in caplog.records if "without its alias" in r.getMessage()]
    assert _alias_version(mlflow_client(settings), settings, "challenger") == "1"


def test_killed_runs_are_marked_failed_at_the_next_train(settings) -> None:
    write_days(settings, D, 10)
    exp_id = configure(settings)
    client = mlflow_client(settings)
    orphan = client.create_run(exp_id, run_name="train-2026-11-19")  # left RUNNING by a kill
    assert client.get_run(orphan.info.run_id).info.status == "RUNNING"
    out = train(settings, D)
    assert out["status"] == "trained"
    assert client.get_run(orphan.info.run_id).info.status == "FAILED"
    assert client.get_run(out["run_id"]).info.status == "FINISHED"


def test_half_done_promotions_are_finished_and_a_rollback_is_kept(settings) -> None:
    write_days(settings, D, 10)
    train(settings, D)
    assert registry.gate(settings, D)["status"] == "promoted"
    v2 = train(settings, D, force=True)
    client = mlflow_client(settings)
    name = settings.model_name

    # killed between tagging the decision and moving the alias (the order of earlier code)
    client.set_tag(v2["run_id"], DECISION, "promoted")
    client.set_model_version_tag(name, "2", DECISION, "promoted")
    out = registry.gate(settings, D)
    assert out["status"] == "promoted" and out["champion"] == 2, out
    assert _alias_version(client, settings, "champion") == "2"

    # a manual rollback afterwards is not undone by the next gate
    registry.promote(settings, 1)
    assert registry.gate(settings, D)["status"] == "skipped"
    assert _alias_version(client, settings, "champion") == "1"

    # killed between moving the alias and recording the decision: the rerun records it
    v3 = train(settings, D, force=True)
    client.set_tag(v3["run_id"], "contactrank.gate.reason.00", "ok: first model, floors only")
    client.set_model_version_tag(name, "3", "contactrank.gate.reason.00", "ok: first model, floors only")
    client.set_registered_model_alias(name, "champion", "3")
    assert registry.gate(settings, D)["status"] == "skipped"
    assert client.get_model_version(name, "3").tags[DECISION] == "promoted"
    assert client.get_run(v3["run_id"]).data.tags[DECISION] == "promoted"


def test_a_copied_home_writes_and_loads_artifacts_under_the_copy(settings, tmp_path, monkeypatch) -> None:
    a = settings.home
    write_days(settings, D, 10)
    train(settings, D)
    assert registry.gate(settings, D)["status"] == "promoted"
    b = tmp_path / "copy"
    shutil.copytree(a, b, symlinks=True)
    shutil.rmtree(a)
    # a fresh process for the copy: mlflow.set_tracking_uri exported the old home's store URI into
    # this process's environment, where Settings.tracking_uri would take it
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)

    s = load_settings(home=b)
    model, info = registry.load_champion(s)  # the version registered in A loads from B
    assert info["version"] == 1 and model.booster is not None
    out = train(s, D, force=True)
    client = mlflow_client(s)
    uri = client.get_run(out["run_id"]).info.artifact_uri
    assert uri.startswith((b / "mlartifacts").resolve().as_uri()), uri
    assert not a.exists()  # nothing recreated the old home
    registry.promote(s, out["version"])
    assert registry.load_champion(s)[1]["version"] == 2
