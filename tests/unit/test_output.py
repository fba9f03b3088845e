"""Terminal discipline and the MLflow names: logs go to the home's log file, metrics fold in groups,
the model is stored as files rather than a pickled object."""

from __future__ import annotations

import logging
import warnings
from datetime import date
from pathlib import Path

import numpy as np
import pytest

from contactrank import console as out
from contactrank.ml.train_metrics import HEADLINE, metric_name, mlflow_metrics


@pytest.fixture
def output(tmp_path: Path):
    path = out.setup_output(tmp_path / "home", "run")
    yield path
    out.close_output()


def test_log_records_and_warnings_go_to_the_file_not_the_terminal(output: Path, capsys) -> None:
    logging.getLogger("mlflow.tracking.fluent").info("Validating input example against model signature")
    logging.getLogger("contactrank.pipeline").warning("nothing scored or published")
    warnings.warn("a library's warning", UserWarning, stacklevel=1)
    for handler in logging.getLogger().handlers:
        handler.flush()
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""
    text = output.read_text()
    assert "Validating input example" in text and "nothing scored" in text and "a library's warning" in text
    assert output.name == f"run-{date.today().isoformat()}.log" and output.parent.name == "logs"


def test_mlflow_keeps_its_loggers_to_the_setup(output: Path) -> None:
    import mlflow  # noqa: F401 - importing it must not give its loggers a terminal handler

    logger = logging.getLogger("mlflow")
    assert logger.handlers == [] and logger.propagate


def test_failure_is_one_line_naming_the_log(tmp_path: Path) -> None:
    lines = out.failure_lines("ingest", "no landing files", tmp_path / "logs" / "ingest.log")
    assert lines == [f"contactrank ingest: no landing files (log: {tmp_path / 'logs' / 'ingest.log'})"]
    assert out.failure_lines("ingest", "x", None) == ["contactrank ingest: x"]


def test_step_lines_say_what_happened_in_one_line() -> None:
    assert out.step_line("train", {"status": "trained", "version": 3, "metrics": {"auc": 0.71234}}) == (
        "train: version 3, test AUC 0.7123"
    )
    gate = {"status": "rejected", "challenger": 4, "reasons": ["ok: auc", "fail: ece 0.09 vs cap 0.05"]}
    assert out.step_line("gate", gate) == "gate: challenger v4 rejected (ece 0.09 vs cap 0.05)"
    held = {"status": "held", "challenger": 5, "reasons": ["ok: auc", "hold: not enough evidence"]}
    assert out.step_line("gate", held) == "gate: challenger v5 held (not enough evidence)"
    assert out.day_line("2026-09-11", {"gate": held}) == "2026-09-11: gate held"
    assert out.step_line("publish", {"rows": 12000, "persons": 4000, "date": "x"}) == (
        "publish: rows 12,000, persons 4,000"
    )
    assert out.step_line("train", {"status": "skipped", "reason": "not due"}) == "train: skipped (not due)"


def test_no_champion_is_said_once_for_many_days() -> None:
    reason = "model 'contactrank' has no 'champion' version yet"
    skipped = {"status": "skipped", "reason": reason, "not_ready": True}
    days = {
        f"2026-09-0{i}": {"ingest": {"rows": 10}, "score": skipped, "publish": skipped} for i in range(1, 7)
    }
    days["2026-09-07"] = {"ingest": {"rows": 10}, "score": {"rows": 5}, "publish": {"rows": 5}}
    line = out.not_ready_line(*out.not_ready_days(days))
    assert line is not None and line.count("champion") == 1
    assert "2026-09-01 to 2026-09-06 (6 days)" in line
    assert "champion" not in out.day_line("2026-09-01", days["2026-09-01"])
    assert out.not_ready_line(*out.not_ready_days({"2026-09-07": days["2026-09-07"]})) is None


def test_metrics_fold_in_groups_with_the_headline_first() -> None:
    flat = {
        "auc": 0.7,
        "ece": 0.01,
        "hit1": 0.5,
        "pr_auc": 0.3,
        "auc_voice": 0.72,
        "pr_auc_sms": 0.2,
        "ece_uncalibrated": 0.05,
        "auc_on_oracle_rows": 0.7,
        "baseline_heuristic_auc": 0.6,
        "baseline_random_hit1_email": 0.3,
        "baseline_oracle_auc": 0.8,
        "oracle_coverage": 1.0,
        "drift_max_psi": 0.1,
        "psi_f_c_n_attempts": 0.1,
        "rows_train": 1000,
        "rows_test": 100,
        "positives_train": 100,
        "best_iteration": 40,
        "fit_s": 1.0,
        "file_calibration_s": 1.0,
        "gate_champion_auc": 0.69,
    }
    named = mlflow_metrics(flat)
    assert all("/" in k for k in named), "a metric without a group lands in an unfolded section"
    assert list(named)[: len(HEADLINE)] == list(HEADLINE.values())
    expected = {
        "auc_voice": "channel/voice/auc",
        "pr_auc_sms": "channel/sms/pr_auc",
        "baseline_random_hit1_email": "channel/email/random_hit1",
        "baseline_oracle_auc": "baseline/oracle/auc",
        "ece_uncalibrated": "test/ece_uncalibrated",
        "psi_f_c_n_attempts": "drift/psi/f_c_n_attempts",
        "fit_s": "timing/fit_s",
        "file_calibration_s": "timing/file_calibration_s",
        "gate_champion_auc": "gate/champion_auc",
    }
    assert {k: metric_name(k) for k in expected} == expected
    # the chart view sorts its sections by name: the headline's section must sort first
    sections = sorted({k.rpartition("/")[0] for k in named})
    assert sections[0] == HEADLINE["auc"].rpartition("/")[0]
    assert len(set(named)) == len(flat), "two figures under one name"


def test_the_model_round_trips_through_files_without_pickle(tmp_path: Path) -> None:
    import lightgbm as lgb
    import pandas as pd

    from contactrank.ml.evaluate import IsotonicCalibrator, PlattCalibrator
    from contactrank.ml.model import ContactModel, load_model_files, save_model_files

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"f_x": rng.normal(size=400), "f_channel": rng.choice(["voice", "sms"], size=400)})
    y = (df["f_x"] + (df["f_channel"] == "voice") + rng.normal(size=400) > 0.5).astype(int)
    categories = {"f_channel": ["sms", "voice"]}
    from contactrank.ml.model import encode

    X = encode(df, ["f_x", "f_channel"], categories)
    booster = lgb.train(
        {"objective": "binary", "verbose": -1, "num_threads": 1}, lgb.Dataset(X, y), num_boost_round=5
    )
    raw = booster.predict(X)
    for calibrator in (
        PlattCalibrator.fit(raw, y.to_numpy()),
        IsotonicCalibrator.fit(raw, y.to_numpy()),
        None,
    ):
        meta = {"date": "x"}
        model = ContactModel(booster, ["f_x", "f_channel"], categories, calibrator, meta=meta)
        model.file_calibrator = calibrator
        files = save_model_files(model, tmp_path / type(calibrator).__name__)
        assert not any(Path(f).suffix in (".pkl", ".pickle") for f in files.values())
        back = load_model_files(Path(files["booster"]), Path(files["contract"]))
        np.testing.assert_array_equal(back.predict_proba(df), model.predict_proba(df))
        assert back.categories == categories and back.meta == {"date": "x"}
        assert type(back.file_calibrator) is type(calibrator)
        if calibrator is not None:
            np.testing.assert_array_equal(back.file_calibrator.predict(raw), calibrator.predict(raw))
