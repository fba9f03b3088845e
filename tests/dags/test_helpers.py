"""The pieces the DAG tasks rely on: the business date of a run, small XCom values, the sensor's
check, the export facts of the asset event, the failure callback and the extra links' URLs."""

from __future__ import annotations

import json
import logging
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from contactrank_airflow import (
    attempts_ready,
    business_date,
    default_args,
    export_facts,
    on_failure,
    small,
    start_date,
)
from contactrank_links import export_link, mlflow_link

from contactrank.errors import InputError


def _run(run_after: datetime) -> SimpleNamespace:
    return SimpleNamespace(run_after=run_after)


def test_business_date_is_the_logical_date() -> None:
    ctx = {
        "logical_date": datetime(2026, 11, 20, tzinfo=UTC),
        "dag_run": _run(datetime(2026, 11, 21, tzinfo=UTC)),
    }
    assert business_date(ctx) == date(2026, 11, 20)


def test_business_date_is_taken_in_utc() -> None:
    # 2026-11-20 22:00 at UTC-3 is already the 21st in UTC, the timetable's zone.
    brt = timezone(timedelta(hours=-3))
    ctx = {
        "logical_date": datetime(2026, 11, 20, 22, 0, tzinfo=brt),
        "dag_run": _run(datetime(2026, 11, 22, tzinfo=UTC)),
    }
    assert business_date(ctx) == date(2026, 11, 21)


@pytest.mark.parametrize("logical", [None, "absent"])
def test_run_without_logical_date_processes_the_day_before_run_after(logical) -> None:
    """Airflow 3 manual runs with logical_date null and asset-triggered runs carry no logical date."""
    ctx = {"dag_run": _run(datetime(2026, 11, 21, 9, 30, tzinfo=UTC)), "params": {"date": None}}
    if logical is None:
        ctx["logical_date"] = None
    assert business_date(ctx) == date(2026, 11, 20)


def test_naive_run_after_is_read_as_utc() -> None:
    assert business_date({"dag_run": _run(datetime(2026, 11, 21, 0, 5))}) == date(2026, 11, 20)


def test_date_param_wins() -> None:
    ctx = {
        "params": {"date": "2026-10-02"},
        "logical_date": datetime(2026, 11, 20, tzinfo=UTC),
        "dag_run": _run(datetime(2026, 11, 21, tzinfo=UTC)),
    }
    assert business_date(ctx) == date(2026, 10, 2)


@pytest.mark.parametrize("bad", ["2026-13-01", "../../etc", "20261120"])
def test_bad_date_param_is_refused(bad: str) -> None:
    with pytest.raises(InputError, match="invalid date"):
        business_date({"params": {"date": bad}, "dag_run": _run(datetime(2026, 11, 21, tzinfo=UTC))})


def test_small_keeps_only_small_figures() -> None:
    out = small(
        {
            "rows": 10,
            "auc": float("nan"),
            "path": Path("/x/y"),
            "reasons": ["auc ok", "ece ok"],
            "big": list(range(100)),
            "frame": object(),
            "ok": True,
            "model": {"version": 3, "run_id": "r1", "params": {"lr": 0.1}},
            "metrics": {f"auc_{i}": 0.5 for i in range(50)},
        }
    )
    assert out == {
        "rows": 10,
        "auc": None,
        "path": "/x/y",
        "reasons": ["auc ok", "ece ok"],
        "ok": True,
        "model_version": 3,
        "model_run_id": "r1",
    }
    json.dumps(out)
    assert small(Path("/r.html")) == {"path": "/r.html"}
    assert len(small({"msg": "x" * 5000})["msg"]) < 600


def test_attempts_ready(tmp_path: Path) -> None:
    d = date(2026, 11, 20)
    assert attempts_ready(tmp_path, d) == []
    folder = tmp_path / "attempts" / "date=2026-11-20"
    folder.mkdir(parents=True)
    (folder / ".part-0.csv.tmp").write_text("partial")
    (folder / "_SUCCESS").write_text("")
    assert attempts_ready(tmp_path, d) == []  # an upload in progress does not count
    (folder / "a.csv").write_text("attempt_id\n")
    (folder / "b.parquet").write_bytes(b"PAR1")
    assert attempts_ready(tmp_path, d) == ["a.csv", "b.parquet"]
    assert attempts_ready(tmp_path, date(2026, 11, 21)) == []


def test_sensor_pokes_the_landing_folder_of_the_run(
    dagbag, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sensor body itself, called with a run context: not done, then done once a file lands."""
    monkeypatch.setenv("CONTACTRANK_HOME", str(tmp_path / "home"))
    sensor = dagbag.dags["contact_daily"].get_task("wait_for_attempts")
    ctx = {
        "params": {"date": None, "landing": str(tmp_path / "landing")},
        "logical_date": None,
        "dag_run": _run(datetime(2026, 11, 21, 3, 0, tzinfo=UTC)),
    }
    first = sensor.python_callable(**ctx)
    assert not first.is_done
    folder = tmp_path / "landing" / "attempts" / "date=2026-11-20"
    folder.mkdir(parents=True)
    (folder / "attempts.csv").write_text("attempt_id\n")
    second = sensor.python_callable(**ctx)
    assert second.is_done and second.xcom_value == {"ds": "2026-11-20", "files": 1}


def test_export_facts_read_the_manifest(settings) -> None:
    d = date(2026, 11, 20)
    folder = settings.exports / "priority" / "date=2026-11-20"
    folder.mkdir(parents=True)
    (folder / "_manifest.json").write_text(
        json.dumps({"model": {"name": "contactrank", "version": 3, "run_id": "r"}, "rows": 1234})
    )
    facts = export_facts(settings, d, {"model_version": "2"})
    assert facts == {"ds": "2026-11-20", "model_version": "3", "rows": 1234, "path": str(folder.resolve())}


def test_export_facts_without_manifest_fall_back_to_the_result(settings) -> None:
    facts = export_facts(settings, date(2026, 11, 20), {"model_version": "7", "rows": 5})
    assert facts["model_version"] == "7" and facts["rows"] == 5 and facts["ds"] == "2026-11-20"


def test_failure_callback_logs_one_clear_line(caplog: pytest.LogCaptureFixture) -> None:
    ti = SimpleNamespace(
        dag_id="contact_daily", task_id="score", run_id="scheduled__2026-11-20", try_number=3
    )
    ctx = {
        "ti": ti,
        "logical_date": datetime(2026, 11, 20, tzinfo=UTC),
        "exception": RuntimeError("no champion model\nregistered yet"),
    }
    with caplog.at_level(logging.ERROR, logger="contactrank.airflow"):
        on_failure(ctx)
    [rec] = caplog.records
    msg = rec.getMessage()
    assert rec.levelno == logging.ERROR
    assert msg == (
        "contactrank contact_daily.score FAILED for business date 2026-11-20 "
        "(run scheduled__2026-11-20, try 3): RuntimeError: no champion model registered yet"
    )


def test_failure_callback_never_raises(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.ERROR, logger="contactrank.airflow"):
        on_failure({"params": {"date": "bad"}})
    assert "business date ?" in caplog.records[0].getMessage()


def test_default_args_back_off_exponentially() -> None:
    args = default_args()
    assert args["retries"] >= 2 and args["retry_exponential_backoff"] > 1
    assert "retry_delay" not in args  # Airflow's [core] default_task_retry_delay applies
    assert default_args(retry_delay=timedelta(minutes=10))["retry_delay"] == timedelta(minutes=10)


def test_links(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("CONTACTRANK_MLFLOW_UI_URL", "http://mlflow.example:5000/")
    assert mlflow_link({"mlflow_run_id": "abc", "mlflow_experiment_id": "1"}) == (
        "http://mlflow.example:5000/#/experiments/1/runs/abc"
    )
    assert mlflow_link({"model_version": "4"}) == "http://mlflow.example:5000/#/models/contactrank/versions/4"
    assert mlflow_link({}) == ""
    export = tmp_path / "exports" / "priority" / "date=2026-11-20"
    assert export_link({"export_path": str(export)}) == export.resolve().as_uri() + "/"
    monkeypatch.setenv("CONTACTRANK_EXPORT_URL", "https://files.example/exports")
    assert (
        export_link({"export_path": str(export)}) == "https://files.example/exports/priority/date=2026-11-20/"
    )
    assert export_link({}) == ""


def test_start_date_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CONTACTRANK_AIRFLOW_START_DATE", raising=False)
    assert start_date() == datetime(2026, 1, 1, tzinfo=UTC)
    monkeypatch.setenv("CONTACTRANK_AIRFLOW_START_DATE", "2027-03-05")
    assert start_date() == datetime(2027, 3, 5, tzinfo=UTC)
    monkeypatch.setenv("CONTACTRANK_AIRFLOW_START_DATE", "March 5")
    with pytest.raises(ValueError, match="CONTACTRANK_AIRFLOW_START_DATE"):
        start_date()
