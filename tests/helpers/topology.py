"""A production-like topology brought up natively (no Docker engine): processes, PostgreSQL, Airflow.

Shared by the topology tests: a throw-away PostgreSQL cluster with the roles of the compose init
script, background processes stopped group-wide, and the Airflow REST calls that bring a DAG run to
its end (sign in, wait for the DAG to be parsed, unpause, trigger, wait).
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.airflow_harness import BIN, ROOT, airflow_env, free_port

PG_INIT = ROOT / "deploy" / "postgres" / "10-contactrank-roles.sh"
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)


class Procs:
    """Background processes, each in its own process group, stopped (group-wide) in reverse order."""

    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, cmd: list[str], env: dict[str, str]) -> subprocess.Popen:
        out = open(self.logs / f"{name}.log", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        out.close()
        self.started.append((name, proc))
        return proc

    def check_alive(self) -> None:
        for name, proc in self.started:
            assert proc.poll() is None, f"{name} exited with {proc.returncode}: {self.tail(name)}"

    def tail(self, name: str, n: int = 3000) -> str:
        path = self.logs / f"{name}.log"
        return path.read_text(errors="replace")[-n:] if path.exists() else ""

    def stop_all(self) -> None:
        for _, proc in reversed(self.started):
            stop_group(proc, signal.SIGINT)  # Airflow components shut their workers down on SIGINT
        for _, proc in reversed(self.started):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                stop_group(proc, signal.SIGKILL)
                proc.wait(timeout=10)
            stop_group(proc, signal.SIGKILL)  # stragglers left in the group (task runners, workers)


def stop_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


def postgres_cluster() -> Iterator[dict]:
    """A throw-away PostgreSQL cluster on a free port, run as the postgres user (initdb refuses root).

    TCP needs a password (scram-sha-256) as in the postgres image; the roles and databases come from
    the compose init script, run over TCP as the superuser the way the one-shot postgres-init runs it."""
    if PG_BIN is None or not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL binaries are absent (`make system` installs Debian's postgresql)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as the postgres user")
    base = Path(tempfile.mkdtemp(prefix="contactrank-pg-"))
    secrets = base / "secrets"
    secrets.mkdir()
    passwords = {
        name: base64.urlsafe_b64encode(os.urandom(18)).decode() + "/:@%"  # URL-unsafe on purpose
        for name in ("postgres_password", "airflow_db_password", "mlflow_db_password")
    }
    for name, value in passwords.items():
        (secrets / name).write_text(value + "\n")
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
        shutil.chown(secrets / "postgres_password", "postgres", "postgres")
    data, port = base / "data", free_port()
    env = {"PATH": f"{PG_BIN}{os.pathsep}{os.environ['PATH']}", "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    subprocess.run(
        as_postgres(
            [
                str(PG_BIN / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                f"--pwfile={secrets / 'postgres_password'}",
                "-E",
                "UTF8",
            ]
        ),
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    opts = (
        f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=60 "
        "-c shared_buffers=64MB -c fsync=off"
    )
    ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "postgres.log"), "-o", opts]
    try:
        subprocess.run(
            as_postgres([*ctl, "-w", "-t", "60", "start"]),
            env=env,
            check=True,
            capture_output=True,
            timeout=90,
        )
        init = {
            "PGHOST": "127.0.0.1",
            "PGPORT": str(port),
            "PGUSER": "postgres",
            "PGPASSWORD_FILE": str(secrets / "postgres_password"),
            "CONTACTRANK_SECRETS_DIR": str(secrets),
        }
        for _ in range(2):  # idempotent: the one-shot runs on every `docker-compose up`
            proc = subprocess.run(
                ["bash", str(PG_INIT)], env={**env, **init}, capture_output=True, text=True, timeout=60
            )
            assert proc.returncode == 0, proc.stderr
        owners = subprocess.run(
            [
                str(PG_BIN / "psql"),
                "-tA",
                "-F",
                " ",
                "-c",
                "SELECT d.datname, pg_get_userbyid(d.datdba), r.rolsuper, r.rolcreatedb, r.rolcreaterole "
                "FROM pg_database d JOIN pg_roles r ON r.oid = d.datdba "
                "WHERE d.datname IN ('airflow', 'mlflow', 'mlflow_auth') ORDER BY 1",
            ],
            env={**env, **init, "PGPASSWORD": passwords["postgres_password"], "PGDATABASE": "postgres"},
            check=True,
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.split("\n")
        assert [line for line in owners if line] == [
            "airflow airflow f f f",
            "mlflow mlflow f f f",
            "mlflow_auth mlflow f f f",
        ], owners
        quote = urllib.request.quote
        yield {
            "port": port,
            "airflow_url": f"postgresql+psycopg2://airflow:{quote(passwords['airflow_db_password'], safe='')}"
            f"@127.0.0.1:{port}/airflow",
            # the MLflow role's password comes from PGPASSWORD, as in the container
            "mlflow_url": f"postgresql+psycopg2://mlflow@127.0.0.1:{port}",
            "mlflow_password": passwords["mlflow_db_password"],
        }
    finally:
        subprocess.run(
            as_postgres([*ctl, "-m", "fast", "-w", "stop"]), env=env, capture_output=True, timeout=60
        )
        shutil.rmtree(base, ignore_errors=True)


def http(
    method: str,
    url: str,
    body: dict | None = None,
    token: str | None = None,
    timeout: float = 30,
    basic: tuple[str, str] | None = None,
) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    if basic:
        req.add_header("Authorization", "Basic " + base64.b64encode(":".join(basic).encode()).decode())
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        text = resp.read().decode()
    return json.loads(text) if text else {}


def wait_http(url: str, procs: Procs, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while True:
        procs.check_alive()
        try:
            urllib.request.urlopen(url, timeout=5).read()
            return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            if time.monotonic() > deadline:
                raise AssertionError(f"{url} did not answer within {seconds} s") from None
            time.sleep(1)


def task_states(run_url: str, token: str) -> dict[str, str]:
    try:
        tis = http("GET", f"{run_url}/taskInstances", token=token)["task_instances"]
    except Exception as exc:  # diagnostics only
        return {"error": str(exc)}
    return {ti["task_id"]: ti["state"] for ti in tis}


def native_env(
    airflow_home: Path, home: Path, db_url: str, api_port: int, mlflow_url: str, **extra: str
) -> dict[str, str]:
    """The environment of Airflow components on ``db_url`` whose api-server listens on ``api_port``,
    the tasks tracking to the MLflow server at ``mlflow_url``; quick heartbeats and parsing."""
    api_url = f"http://127.0.0.1:{api_port}"
    return airflow_env(
        airflow_home,
        home,
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=db_url,
        AIRFLOW__CORE__PARALLELISM="2",
        AIRFLOW__API__PORT=str(api_port),
        # the tasks reach the execution API through this URL (a changed port needs it)
        AIRFLOW__API__BASE_URL=api_url,
        AIRFLOW__API__WORKERS="1",
        AIRFLOW__API_AUTH__JWT_SECRET="contactrank-topology-test-secret",
        AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS="admin:admin",
        AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="True",
        AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC="2",
        AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL="5",
        AIRFLOW__SCHEDULER__MIN_FILE_PROCESS_INTERVAL="5",
        # No scheduled runs: the test triggers the one run it checks (catchup would start from here).
        CONTACTRANK_AIRFLOW_START_DATE="2100-01-01",
        MLFLOW_TRACKING_URI=mlflow_url,
        CONTACTRANK_MLFLOW_UI_URL=mlflow_url,
        MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",
        **extra,
    )


def start_mlflow(procs: Procs, postgres: dict, port: int, env: dict[str, str], *options: str) -> str:
    """``mlflow server --workers 1`` on the cluster's database ``mlflow`` as its role (the password in
    PGPASSWORD, as in the container), with more ``options``; return its URL."""
    cmd = [str(BIN / "mlflow"), "server", "--host=127.0.0.1", f"--port={port}", "--workers=1"]
    cmd += [f"--backend-store-uri={postgres['mlflow_url']}/mlflow", *options]
    procs.start("mlflow", cmd, {**env, "PGPASSWORD": postgres["mlflow_password"]})
    return f"http://127.0.0.1:{port}"


def start_airflow(procs: Procs, env: dict[str, str], api_port: int) -> None:
    """Migrate the metadata database, then start the api-server, dag-processor and scheduler."""
    migrate = subprocess.run(
        [str(BIN / "airflow"), "db", "migrate"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stderr[-3000:]
    procs.start(
        "api-server", [str(BIN / "airflow"), "api-server", "--port", str(api_port), "--workers", "1"], env
    )
    procs.start("dag-processor", [str(BIN / "airflow"), "dag-processor"], env)
    procs.start("scheduler", [str(BIN / "airflow"), "scheduler"], env)


def sign_in(procs: Procs, api_url: str, airflow_home: Path) -> str:
    """Wait for the api-server, then sign in as the simple auth manager's admin; return the token."""
    wait_http(f"{api_url}/api/v2/monitor/health", procs, 180)
    passwords = json.loads((airflow_home / "simple_auth_manager_passwords.json.generated").read_text())
    return http("POST", f"{api_url}/auth/token", {"username": "admin", "password": passwords["admin"]})[
        "access_token"
    ]


def unpause_when_parsed(procs: Procs, api: str, token: str, dag_id: str) -> None:
    """Wait (bounded) until the dag-processor has parsed ``dag_id`` with no import errors; unpause it."""
    deadline = time.monotonic() + 180
    while True:
        procs.check_alive()
        try:
            http("GET", f"{api}/dags/{dag_id}", token=token)
            break
        except urllib.error.HTTPError as err:
            if err.code != 404 or time.monotonic() > deadline:
                raise
            time.sleep(2)
    errors = http("GET", f"{api}/importErrors", token=token)
    assert errors["total_entries"] == 0, errors
    http("PATCH", f"{api}/dags/{dag_id}", {"is_paused": False}, token=token)


def run_to_end(
    procs: Procs, api: str, token: str, dag_id: str, conf: dict, seconds: float, logs: tuple[str, ...]
) -> str:
    """Trigger ``dag_id`` with ``conf`` and no logical date (Airflow 3), wait for it to succeed; return
    the run's URL. A failure names the task states and the end of the ``logs`` of those processes."""
    run = http("POST", f"{api}/dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf}, token=token)
    run_url = f"{api}/dags/{dag_id}/dagRuns/{urllib.request.quote(run['dag_run_id'], safe='')}"
    deadline, state = time.monotonic() + seconds, run["state"]
    while state not in {"success", "failed"}:
        procs.check_alive()
        assert time.monotonic() < deadline, (
            f"run still {state} after {seconds} s: {task_states(run_url, token)}"
        )
        time.sleep(3)
        state = http("GET", run_url, token=token)["state"]
    tails = "\n".join(f"--- {name}\n{procs.tail(name)}" for name in logs)
    assert state == "success", f"run {state}: {task_states(run_url, token)}\n{tails}"
    return run_url
