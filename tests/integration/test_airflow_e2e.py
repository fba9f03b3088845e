"""End to end through real Airflow: `airflow dags test contact_daily <date>` over consecutive days.

Airflow runs in a temp AIRFLOW_HOME with SQLite metadata; the DAG tasks call the real library
(DuckDB, LightGBM, MLflow on SQLite) against a temp CONTACTRANK_HOME filled by the simulator. The
first two days run through Airflow too: with no champion yet, `score` and `publish` are skipped
and the run still succeeds (with its report).
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from datetime import date, timedelta
from pathlib import Path

import pytest
from helpers.airflow_harness import BIN, QUICK_SETTINGS, ROOT, airflow_env, check_export, sorted_rows

from contactrank.settings import load_settings

pytestmark = pytest.mark.slow

START = date(2026, 11, 1)
HISTORY_DAYS = 2
AIRFLOW_DAYS = [START + timedelta(days=HISTORY_DAYS + i) for i in range(3)]
TASKS = [
    *("wait_for_attempts", "plan_shards", "ingest"),
    *("features.prepare", "features.state", "features.shared_rates", "features.rows", "features.done"),
    *("train", "gate", "score.shard", "publish.part", "publish.commit", "report"),
]
SHARDS = 2  # the mapped tasks run once per shard (the topology test runs the DAG unsharded)


def _airflow(env: dict[str, str], *args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "airflow"), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def _dags_test(env: dict[str, str], d: date, log_dir: Path) -> str:
    proc = _airflow(env, "dags", "test", "contact_daily", d.isoformat())
    out = proc.stdout + proc.stderr
    (log_dir / f"dags-test-{d}.log").write_text(out)
    assert proc.returncode == 0, f"dags test {d} failed (log {log_dir}/dags-test-{d}.log):\n{out[-4000:]}"
    return out


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from contactrank.features.simulate import simulate

    base = tmp_path_factory.mktemp("e2e")
    home = base / "home"
    env = airflow_env(base / "airflow", home, CONTACTRANK_SHARDS=str(SHARDS))
    simulate(home / "landing", START, HISTORY_DAYS + len(AIRFLOW_DAYS), persons=3000, seed=3)
    settings = load_settings(
        home=home,
        shards=SHARDS,
        **{k.removeprefix("CONTACTRANK_").lower(): v for k, v in QUICK_SETTINGS.items()},
    )
    migrate = _airflow(env, "db", "migrate")
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    history_logs = {
        START + timedelta(days=i): _dags_test(env, START + timedelta(days=i), base)
        for i in range(HISTORY_DAYS)
    }
    logs = {d: _dags_test(env, d, base) for d in AIRFLOW_DAYS}
    first_rows = check_export(settings.exports / "priority" / f"date={AIRFLOW_DAYS[-1]}", AIRFLOW_DAYS[-1])
    rerun_log = _dags_test(env, AIRFLOW_DAYS[-1], base)
    return {
        "base": base,
        "env": env,
        "settings": settings,
        "logs": logs,
        "rerun_log": rerun_log,
        "first_rows": first_rows,
        "history_logs": history_logs,
        "db": base / "airflow" / "airflow.db",
    }


def test_days_before_the_first_champion_skip_publishing_but_succeed(world: dict) -> None:
    settings = world["settings"]
    for d in world["history_logs"]:
        assert not (settings.exports / "priority" / f"date={d}").exists()
        assert (settings.exports / "reports" / f"date={d}" / "report.html").is_file()


def test_every_task_ran_for_every_date(world: dict) -> None:
    for d, out in world["logs"].items():
        ended = [t for t in TASKS if f"[DAG TEST] end task task_id={t}" in out]
        assert ended == TASKS, f"{d}: tasks that ran: {ended}"
        assert "Marking run" not in out or "failed" not in out.split("Marking run", 1)[1][:200]


def test_exports_are_published_and_valid(world: dict) -> None:
    exports = world["settings"].exports / "priority"
    for d in AIRFLOW_DAYS:
        rows = check_export(exports / f"date={d}", d)
        assert len({r["person_id"] for r in rows}) > 50


def test_rerunning_a_date_gives_the_same_rows(world: dict) -> None:
    d = AIRFLOW_DAYS[-1]
    again = check_export(world["settings"].exports / "priority" / f"date={d}", d)
    assert sorted_rows(again) == sorted_rows(world["first_rows"])


def test_asset_events_carry_ds_and_model_version(world: dict) -> None:
    with sqlite3.connect(world["db"]) as con:
        events = con.execute(
            "SELECT a.name, e.extra FROM asset_event e JOIN asset a ON a.id = e.asset_id ORDER BY e.id"
        ).fetchall()
    export_events = [json.loads(extra) for name, extra in events if name == "contactrank_export"]
    feature_events = [json.loads(extra) for name, extra in events if name == "contactrank_features"]
    assert [e["ds"] for e in export_events] == [d.isoformat() for d in AIRFLOW_DAYS] + [
        AIRFLOW_DAYS[-1].isoformat()
    ]
    # features are built on every day, exports only once a champion exists
    history = [d.isoformat() for d in world["history_logs"]]
    assert [e["ds"] for e in feature_events] == history + [e["ds"] for e in export_events]
    # features events name the champion that will score them (none before the first one)
    assert feature_events[0]["model_version"] is None
    assert all(e["model_version"] for e in feature_events[len(history) + 1 :])
    for e in export_events:
        manifest = json.loads((Path(e["path"]) / "_manifest.json").read_text())
        assert e["model_version"] == str(manifest["model"]["version"])
        assert e["rows"] == manifest["rows"]


def test_task_results_in_xcom_are_small(world: dict) -> None:
    with sqlite3.connect(world["db"]) as con:
        rows = con.execute("SELECT task_id, key, length(value) FROM xcom").fetchall()
    assert {t for t, k, _ in rows if k == "return_value"} >= set(TASKS)
    big = [(t, k, n) for t, k, n in rows if n > 4000]
    assert not big, f"XCom values over 4 kB: {big}"


_LINKS = r"""
import json, sys
from types import SimpleNamespace
from contactrank_links import MLflowRunLink, PublishedExportLink
out = {}
for task in sys.argv[2:]:
    key = SimpleNamespace(dag_id="contact_daily", task_id=task, run_id=sys.argv[1], map_index=-1)
    out[task] = {"mlflow": MLflowRunLink().get_link(None, ti_key=key),
                 "export": PublishedExportLink().get_link(None, ti_key=key)}
print(json.dumps(out))
"""


def test_extra_links_resolve_from_the_metadata_db(world: dict) -> None:
    d = AIRFLOW_DAYS[0]
    with sqlite3.connect(world["db"]) as con:
        [(run_id,)] = con.execute(
            "SELECT run_id FROM dag_run WHERE dag_id='contact_daily' AND date(logical_date)=?",
            (d.isoformat(),),
        ).fetchall()
    env = {
        **world["env"],
        "CONTACTRANK_MLFLOW_UI_URL": "http://mlflow.test:5000",
        "PYTHONPATH": str(ROOT / "plugins"),
    }
    proc = subprocess.run(
        [str(BIN / "python"), "-c", _LINKS, run_id, "train", "publish.commit", "ingest"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=str(world["base"]),
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    links = json.loads(proc.stdout.strip().splitlines()[-1])
    assert links["train"]["mlflow"].startswith("http://mlflow.test:5000/#/runs/")
    assert links["publish.commit"]["mlflow"].startswith("http://mlflow.test:5000/#/")
    export = world["settings"].exports / "priority" / f"date={d}"
    assert links["publish.commit"]["export"] == export.resolve().as_uri() + "/"
    assert links["ingest"] == {"mlflow": "", "export": ""}


def _xcom(db: Path, dag_id: str, task_id: str) -> dict:
    with sqlite3.connect(db) as con:
        [(value,)] = con.execute(
            "SELECT value FROM xcom WHERE dag_id=? AND task_id=? AND key='return_value'", (dag_id, task_id)
        ).fetchall()
    value = json.loads(value)
    return json.loads(value) if isinstance(value, str) else value


def test_tuning_dag_runs_the_study(world: dict) -> None:
    d = AIRFLOW_DAYS[-1]
    proc = _airflow(world["env"], "dags", "test", "contact_tuning", d.isoformat(), "--conf", '{"trials": 2}')
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    out = _xcom(world["db"], "contact_tuning", "tune")
    assert out["ds"] == d.isoformat() and out["trials"] == 2
    assert out["status"] == "tuned", out
    assert (world["settings"].home / "tuning" / "best_params.json").is_file()


def test_erasure_dag_removes_the_person(world: dict) -> None:
    """Last in this module: it rewrites the exports the tests above read."""
    export = world["settings"].exports / "priority" / f"date={AIRFLOW_DAYS[-1]}"
    person = world["first_rows"][0]["person_id"]
    from contactrank.erase import request_erasure

    conf = json.dumps(request_erasure(world["settings"], person))
    proc = _airflow(
        world["env"], "dags", "test", "contact_erasure", AIRFLOW_DAYS[-1].isoformat(), "--conf", conf
    )
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    rows = check_export(export, AIRFLOW_DAYS[-1])
    assert person not in {r["person_id"] for r in rows}
    assert len(rows) < len(world["first_rows"])
    out = _xcom(world["db"], "contact_erasure", "erase")
    assert out["rows_removed"] > 0
    assert person not in json.dumps(out)
    # nothing under Airflow's home (metadata DB, task logs) holds the raw id of the erased person
    airflow_home = world["base"] / "airflow"
    holders = [p for p in airflow_home.rglob("*") if p.is_file() and person.encode() in p.read_bytes()]
    assert holders == [], holders
    assert not list((world["settings"].home / "erasure-requests").glob("*"))
