"""contact_daily on Airflow's CeleryExecutor: two workers that share no home, the lake on an object store.

Brought up natively like the compose ``celery`` profile: PostgreSQL (Airflow metadata and Celery
results), Redis (Celery broker), an MLflow server that stores the artifacts itself, the Airflow
scheduler, api-server and dag-processor, and two ``airflow celery worker`` processes. Each worker is
made to look like a machine of its own as far as one machine allows: its own AIRFLOW_HOME and
CONTACTRANK_HOME, its own Celery and host name; the lake and the exports are on the local S3 server.
The run for one day with ``CONTACTRANK_SHARDS=4`` must publish the export a single process publishes
for the same day from the same landing files into a local home, row for row.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from helpers.airflow_harness import BIN, CONTRACT_COLUMNS, QUICK_SETTINGS, ROOT, check_export, free_port
from helpers.celery_host import ENV as HOSTNAME_ENV
from helpers.s3 import aws_env, new_bucket, s3_uris, use_server
from helpers.topology import (
    Procs,
    http,
    native_env,
    run_to_end,
    sign_in,
    start_airflow,
    start_mlflow,
    unpause_when_parsed,
    wait_http,
)

from contactrank import storage
from contactrank.pipeline import run_step
from contactrank.settings import Settings, load_settings


def _installed(distribution: str) -> bool:
    """Without importing it (importing Airflow writes a default config into ~/airflow)."""
    try:
        importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


REDIS = shutil.which("redis-server")
pytestmark = [
    pytest.mark.topology,
    pytest.mark.slow,
    pytest.mark.skipif(REDIS is None, reason="redis-server is absent (`make system` installs it)"),
    pytest.mark.skipif(
        not _installed("apache-airflow-providers-celery"),
        reason="apache-airflow-providers-celery is absent (the `celery` extra; `make install`)",
    ),
]

START = date(2026, 11, 1)
HISTORY_DAYS = 2
RUN_DATE = START + timedelta(days=HISTORY_DAYS)
SHARDS = 4
WORKERS = ("worker-a", "worker-b")
SHARDED_TASKS = ("features", "score", "publish")
WAIT_SECONDS = 600
QUICK = {k.removeprefix("CONTACTRANK_").lower(): v for k, v in QUICK_SETTINGS.items()}

# The single-process run of the same day, in a process of its own so that it runs while Airflow starts.
REFERENCE = """
import sys
from datetime import date, timedelta
from contactrank.pipeline import run_date, run_step
from contactrank.settings import load_settings

start, days = date.fromisoformat(sys.argv[1]), int(sys.argv[2])
settings = load_settings()
for i in range(days):
    for step in ("ingest", "features"):
        run_step(step, settings, start + timedelta(days=i))
run_date(settings, start + timedelta(days=days))
"""


def _has_shards() -> bool:
    return "shards" in {f.name for f in dataclasses.fields(Settings)}


def _reference(home: Path, landing: Path) -> subprocess.Popen:
    """``run_step``/``run_date`` with one shard into a local home, MLflow on the home's SQLite store."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTACTRANK_", "AWS_", "MLFLOW_"))}
    env.update(QUICK_SETTINGS)
    env.update(
        {
            "CONTACTRANK_HOME": str(home),
            "CONTACTRANK_LANDING_DIR": str(landing),
            "CONTACTRANK_CONFIG": str(home.parent / "absent.toml"),
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "GIT_PYTHON_REFRESH": "quiet",
            **({"CONTACTRANK_SHARDS": "1"} if _has_shards() else {}),
        }
    )
    home.mkdir(parents=True)
    cmd = [sys.executable, "-c", REFERENCE, START.isoformat(), str(HISTORY_DAYS)]
    out = open(home.parent / "reference.log", "wb")  # noqa: SIM115 - closed once the process has it
    try:
        return subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        out.close()


def _wait_ready(procs: Procs, names: tuple[str, ...], seconds: float) -> None:
    """Wait until every Celery worker says it is ready (consumes its queue)."""
    deadline = time.monotonic() + seconds
    while not all(" ready." in procs.tail(name, 100_000) for name in names):
        procs.check_alive()
        assert time.monotonic() < deadline, f"Celery workers not ready after {seconds} s"
        time.sleep(1)


def _by_person_rank(rows: list[dict]) -> list[dict]:
    rows = [{c: r[c] for c in CONTRACT_COLUMNS} for r in rows]
    return sorted(rows, key=lambda r: (r["person_id"], r["rank"]))


def test_contact_daily_on_celery_workers_equals_one_process(
    postgres: dict, s3_server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    from contactrank.features.simulate import simulate

    logs = tmp_path / "logs"
    logs.mkdir()
    # Landing is one local folder here, given to every worker: the deployment's landing zone is a
    # shared mount (or the ingest task's machine); the lake and the exports are on the object store.
    landing = tmp_path / "landing"
    simulate(landing, START, HISTORY_DAYS + 1, persons=3000, seed=5)
    reference = _reference(tmp_path / "reference" / "home", landing)
    procs = Procs(logs)
    try:
        # The days before RUN_DATE into the lake on S3 (history only: no model exists before it).
        endpoint = use_server(monkeypatch, s3_server)
        uris = s3_uris(new_bucket(endpoint))
        seeded = load_settings(home=tmp_path / "operator", landing_dir=landing, **uris, **QUICK)
        for i in range(HISTORY_DAYS):
            for step in ("ingest", "features"):
                run_step(step, seeded, START + timedelta(days=i))

        redis_port, mlflow_port, api_port = free_port(), free_port(), free_port()
        mlflow_url, api_url = f"http://127.0.0.1:{mlflow_port}", f"http://127.0.0.1:{api_port}"
        env = native_env(
            tmp_path / "airflow",
            tmp_path / "scheduler-home",
            postgres["airflow_url"],
            api_port,
            mlflow_url,
            AIRFLOW__CORE__EXECUTOR="CeleryExecutor",
            AIRFLOW__CELERY__BROKER_URL=f"redis://127.0.0.1:{redis_port}/0",
            AIRFLOW__CELERY__RESULT_BACKEND=f"db+{postgres['airflow_url']}",
            # sending a task to the broker times out after 1 s by default: too tight on a loaded machine
            AIRFLOW__CELERY__OPERATION_TIMEOUT="10",
            CONTACTRANK_LANDING_DIR=str(landing),
            CONTACTRANK_LAKE_URI=uris["lake_uri"],
            CONTACTRANK_EXPORTS_URI=uris["exports_uri"],
            # the per-shard tasks are mapped over this many shards (settings without `shards` ignore it)
            CONTACTRANK_SHARDS=str(SHARDS),
            **aws_env(s3_server),
        )
        procs.start(
            "redis",
            [REDIS, "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            {"PATH": os.environ["PATH"]},
        )
        # the server stores the artifacts (mlflow-artifacts:/): no worker reads another's disk
        artifacts = f"--artifacts-destination={(tmp_path / 'mlartifacts').as_uri()}"
        mlflow_url = start_mlflow(procs, postgres, mlflow_port, env, artifacts)
        start_airflow(procs, env, api_port)
        homes = {name: tmp_path / name / "home" for name in WORKERS}
        for name in WORKERS:
            worker_env = {
                **env,
                "AIRFLOW_HOME": str(tmp_path / name / "airflow"),
                "CONTACTRANK_HOME": str(homes[name]),
                # the task instances record this name as their hostname (helpers/celery_host.py)
                "AIRFLOW__CORE__HOSTNAME_CALLABLE": "helpers.celery_host.hostname",
                HOSTNAME_ENV: name,
                "PYTHONPATH": str(ROOT / "tests"),
            }
            # no log server: two on one machine would need two ports; the logs are read from the files
            cmd = ["celery", "worker", "--concurrency", "1", "--celery-hostname", f"{name}@topology"]
            cmd += ["--skip-serve-logs", "--without-mingle"]
            procs.start(name, [str(BIN / "airflow"), *cmd], worker_env)
        token = sign_in(procs, api_url, tmp_path / "airflow")
        wait_http(f"{mlflow_url}/health", procs, 180)
        # The experiment as a deployment creates it once: its artifacts on the server. Created by the
        # first training instead, it would point at that worker's home (ml/tracking.py, configure).
        MlflowClient(tracking_uri=mlflow_url).create_experiment(seeded.experiment_name)
        api = f"{api_url}/api/v2"
        unpause_when_parsed(procs, api, token, "contact_daily")
        _wait_ready(procs, WORKERS, 120)
        conf = {"date": RUN_DATE.isoformat()}
        run_url = run_to_end(procs, api, token, "contact_daily", conf, WAIT_SECONDS, ("scheduler", *WORKERS))

        # Every task ran on a Celery worker, none in the scheduler.
        tis = http("GET", f"{run_url}/taskInstances?limit=100", token=token)["task_instances"]
        assert {ti["hostname"] for ti in tis} <= set(WORKERS), [(ti["task_id"], ti["hostname"]) for ti in tis]
        # With the sharded DAG (the per-shard tasks of the features, score and publish groups mapped
        # over the shards), every shard ran and the shards ran on both workers. Checked only when
        # mapped task instances exist: with a DAG whose steps are single tasks, CONTACTRANK_SHARDS
        # maps nothing (and settings without `shards` ignore it).
        mapped = [ti for ti in tis if ti["map_index"] >= 0]
        if mapped:
            assert _has_shards()
            assert {ti["task_id"].split(".")[0] for ti in mapped} == set(SHARDED_TASKS), mapped
            for task_id in {ti["task_id"] for ti in mapped}:
                indexes = sorted(ti["map_index"] for ti in mapped if ti["task_id"] == task_id)
                assert indexes == list(range(SHARDS)), (task_id, indexes)
            # one task at a time per worker (concurrency 1, Celery prefetch 1): while one runs a
            # shard, the next shard queued goes to the other
            for group in SHARDED_TASKS:
                ran_on = {ti["hostname"] for ti in mapped if ti["task_id"].startswith(f"{group}.")}
                assert ran_on == set(WORKERS), [(t["task_id"], t["map_index"], t["hostname"]) for t in mapped]
        for name, home in homes.items():  # nothing of the lake, the exports or MLflow on a worker's disk
            kept = {p.name for p in home.iterdir()} if home.exists() else set()
            assert not kept & {"lake", "exports", "mlartifacts", "mlflow.db"}, (name, kept)

        # The export on S3 equals the single-process export of the same day, row for row.
        folder = storage.committed(seeded.exports / "priority" / f"date={RUN_DATE}")
        with storage.local_copy(folder) as local:
            rows = check_export(local, RUN_DATE)
        single = tmp_path / "reference"
        assert reference.wait(timeout=WAIT_SECONDS) == 0, (single / "reference.log").read_text()[-3000:]
        expected = check_export(single / "home" / "exports" / "priority" / f"date={RUN_DATE}", RUN_DATE)
        got, want = _by_person_rank(rows), _by_person_rank(expected)
        assert len(got) == len(want)
        differing = [(g, w) for g, w in zip(got, want, strict=True) if g != w]
        assert not differing, f"{len(differing)} of {len(want)} rows differ, first: {differing[0]}"
    finally:
        procs.stop_all()
        if reference.poll() is None:
            reference.kill()
            reference.wait(timeout=30)
