"""``train_plots = false``: a backfill's trainings keep their tables and the same model, without the PNGs."""

from __future__ import annotations

from datetime import date, timedelta

from helpers.synth_training import write_days

from contactrank.ml.tracking import client
from contactrank.ml.train import train
from contactrank.settings import Settings

D = date(2026, 11, 20)
PNGS = {"importance_gain.png", "shap_summary.png", "calibration.png", "lift_gain.png", "confusion.png"}
TABLES = {"importance_gain.csv", "reliability.csv", "metrics.json", "fingerprints.json", "confusion.json"}


def test_training_without_plots_logs_the_tables_and_the_same_model(settings: Settings) -> None:
    quiet = settings.replace(train_plots=False)
    assert quiet.config_hash() == settings.config_hash()  # the published manifest does not change
    write_days(settings, D, 11)
    out = train(quiet, D - timedelta(days=1))
    assert out["status"] == "trained"
    names = {a.path.split("/")[-1] for a in client(quiet).list_artifacts(out["run_id"], "evaluation")}
    assert TABLES <= names and not PNGS & names
    # the same day again with plots: the same figures (the plots only draw what was computed)
    drawn = train(settings, D - timedelta(days=1), force=True)
    names = {a.path.split("/")[-1] for a in client(settings).list_artifacts(drawn["run_id"], "evaluation")}
    assert PNGS | TABLES <= names
    assert drawn["metrics"] == out["metrics"]
