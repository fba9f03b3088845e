"""The production topology of docker-compose.yml, checked without a Docker engine.

1. ``docker-compose config -q`` validates the file (Debian's docker-compose 1.29).
2. The same topology is brought up natively: PostgreSQL from Debian's packages on a free local port
   in a temp dir (Airflow metadata + MLflow backend), ``mlflow server --workers 1`` on it, and the
   Airflow scheduler, api-server and dag-processor on it with LocalExecutor. ``contact_daily`` is
   triggered through Airflow's REST API, the test waits (bounded) for success, then checks the
   export, the MLflow run and model on the server, and the plugin's extra links through the API.
   Everything started is stopped in finalizers, whatever happens.
"""

from __future__ import annotations

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
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from airflow_harness import BIN, QUICK_SETTINGS, ROOT, airflow_env, check_export, free_port

from contactrank.pipeline import run_step
from contactrank.settings import load_settings

COMPOSE = ROOT / "docker-compose.yml"
PG_BIN = next(iter(sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)), None)
START = date(2026, 11, 1)
HISTORY_DAYS = 2
RUN_DATE = START + timedelta(days=HISTORY_DAYS)
WAIT_SECONDS = 600


# --- docker-compose.yml ------------------------------------------------------------------------------


def _compose(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed (`make system` installs Debian's package)")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "POSTGRES", "MLFLOW", "CONTACTRANK"))
    }
    return subprocess.run(
        [exe, "-f", str(COMPOSE), *args], capture_output=True, text=True, timeout=60, check=False, env=env
    )


def test_compose_file_is_valid() -> None:
    for profile in ([], ["--profile", "celery"]):
        proc = _compose(*profile, "config", "-q")
        assert proc.returncode == 0, proc.stderr


def test_compose_topology() -> None:
    proc = _compose("--profile", "celery", "config")
    assert proc.returncode == 0, proc.stderr
    services = yaml.safe_load(proc.stdout)["services"]
    assert {
        "postgres",
        "mlflow",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "redis",
        "airflow-worker",
    } <= set(services)
    long_running = [n for n, s in services.items() if s.get("restart") != "no"]
    for name in long_running:
        assert "healthcheck" in services[name], f"{name} has no healthcheck"
    for name, svc in services.items():
        for dep, cond in (svc.get("depends_on") or {}).items():
            expected = (
                "service_completed_successfully"
                if services[dep].get("restart") == "no"
                else "service_healthy"
            )
            assert cond["condition"] == expected, f"{name} -> {dep}: {cond}"
    for name in (
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-apiserver",
        "airflow-worker",
        "mlflow",
    ):
        mounts = [v["target"] if isinstance(v, dict) else v.split(":")[1] for v in services[name]["volumes"]]
        assert "/data/contactrank" in mounts, f"{name} does not mount the shared lake/export volume"
    env = services["airflow-scheduler"]["environment"]
    assert env["AIRFLOW__CORE__EXECUTOR"] == "LocalExecutor"
    assert env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"].startswith("postgresql+psycopg2://")
    assert "--workers=1" in services["mlflow"]["command"]
    assert services["redis"].get("profiles") == ["celery"] and services["airflow-worker"].get("profiles") == [
        "celery"
    ]


def test_dockerfile_installs_from_the_constraints_file() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'pip install -c constraints.txt ".[airflow,postgres]"' in text
    for line in text.splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (ROOT / src.rstrip("/")).exists(), f"Dockerfile copies {src}, which does not exist"


# --- the topology, natively ----------------------------------------------------------------------------


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
            _stop_group(proc, signal.SIGINT)  # Airflow components shut their workers down on SIGINT
        for _, proc in reversed(self.started):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                _stop_group(proc, signal.SIGKILL)
                proc.wait(timeout=10)
            _stop_group(proc, signal.SIGKILL)  # stragglers left in the group (task runners, workers)


def _stop_group(proc: subprocess.Popen, sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _as_postgres(cmd: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *cmd] if os.geteuid() == 0 else cmd


@pytest.fixture(scope="module")
def postgres() -> Iterator[dict]:
    """A throw-away PostgreSQL cluster on a free port, run as the postgres user (initdb refuses root)."""
    if PG_BIN is None or not (PG_BIN / "initdb").exists():
        pytest.skip("PostgreSQL binaries are absent (`make system` installs Debian's postgresql)")
    if os.geteuid() == 0 and shutil.which("runuser") is None:
        pytest.skip("running as root without runuser: cannot start PostgreSQL as the postgres user")
    base = Path(tempfile.mkdtemp(prefix="contactrank-pg-"))
    if os.geteuid() == 0:
        shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", free_port()
    env = {"PATH": os.environ["PATH"], "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"}
    subprocess.run(
        _as_postgres(
            [str(PG_BIN / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"]
        ),
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    opts = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c max_connections=60 -c shared_buffers=64MB -c fsync=off"
    ctl = [str(PG_BIN / "pg_ctl"), "-D", str(data), "-l", str(base / "postgres.log"), "-o", opts]
    try:
        subprocess.run(
            _as_postgres([*ctl, "-w", "-t", "60", "start"]),
            env=env,
            check=True,
            capture_output=True,
            timeout=90,
        )
        for db in ("airflow", "mlflow"):
            subprocess.run(
                [str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", db],
                env=env,
                check=True,
                capture_output=True,
                timeout=60,
            )
        yield {"port": port, "url": f"postgresql+psycopg2://postgres@127.0.0.1:{port}"}
    finally:
        subprocess.run(
            _as_postgres([*ctl, "-m", "fast", "-w", "stop"]), env=env, capture_output=True, timeout=60
        )
        shutil.rmtree(base, ignore_errors=True)


def _http(
    method: str, url: str, body: dict | None = None, token: str | None = None, timeout: float = 30
) -> dict:
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        text = resp.read().decode()
    return json.loads(text) if text else {}


def _wait_http(url: str, procs: Procs, seconds: float) -> None:
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


@pytest.mark.topology
@pytest.mark.slow
def test_contact_daily_on_the_native_topology(postgres: dict, tmp_path: Path) -> None:
    from contactrank.features.simulate import simulate

    home, airflow_home, logs = tmp_path / "home", tmp_path / "airflow", tmp_path / "logs"
    logs.mkdir()
    mlflow_port, api_port = free_port(), free_port()
    mlflow_url, api_url = f"http://127.0.0.1:{mlflow_port}", f"http://127.0.0.1:{api_port}"
    env = airflow_env(
        airflow_home,
        home,
        AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"{postgres['url']}/airflow",
        AIRFLOW__CORE__EXECUTOR="LocalExecutor",
        AIRFLOW__CORE__PARALLELISM="2",
        AIRFLOW__API__PORT=str(api_port),
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
    )

    # Landing data and the days before RUN_DATE (history only: no model exists before it).
    simulate(home / "landing", START, HISTORY_DAYS + 1, persons=3000, seed=5)
    settings = load_settings(
        home=home, **{k.removeprefix("CONTACTRANK_").lower(): v for k, v in QUICK_SETTINGS.items()}
    )
    for i in range(HISTORY_DAYS):
        for step in ("ingest", "features"):
            run_step(step, settings, START + timedelta(days=i))

    procs = Procs(logs)
    try:
        procs.start(
            "mlflow",
            [
                str(BIN / "mlflow"),
                "server",
                "--host=127.0.0.1",
                f"--port={mlflow_port}",
                "--workers=1",
                f"--backend-store-uri={postgres['url']}/mlflow",
                f"--default-artifact-root={(tmp_path / 'mlartifacts').as_uri()}",
            ],
            env,
        )
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
        _wait_http(f"{mlflow_url}/health", procs, 180)
        _wait_http(f"{api_url}/api/v2/monitor/health", procs, 180)

        passwords = json.loads((airflow_home / "simple_auth_manager_passwords.json.generated").read_text())
        token = _http("POST", f"{api_url}/auth/token", {"username": "admin", "password": passwords["admin"]})[
            "access_token"
        ]
        api = f"{api_url}/api/v2"

        # The dag-processor must have parsed the DAG (and found no import errors) before it is triggered.
        deadline = time.monotonic() + 180
        while True:
            procs.check_alive()
            try:
                _http("GET", f"{api}/dags/contact_daily", token=token)
                break
            except urllib.error.HTTPError as err:
                if err.code != 404 or time.monotonic() > deadline:
                    raise
                time.sleep(2)
        errors = _http("GET", f"{api}/importErrors", token=token)
        assert errors["total_entries"] == 0, errors
        _http("PATCH", f"{api}/dags/contact_daily", {"is_paused": False}, token=token)

        # Airflow 3: a run with no logical date; the business date comes from the `date` param.
        run = _http(
            "POST",
            f"{api}/dags/contact_daily/dagRuns",
            {"logical_date": None, "conf": {"date": RUN_DATE.isoformat()}},
            token=token,
        )
        run_url = f"{api}/dags/contact_daily/dagRuns/{urllib.request.quote(run['dag_run_id'], safe='')}"
        deadline, state = time.monotonic() + WAIT_SECONDS, run["state"]
        while state not in {"success", "failed"}:
            procs.check_alive()
            assert time.monotonic() < deadline, (
                f"run still {state} after {WAIT_SECONDS} s: {_task_states(run_url, token)}"
            )
            time.sleep(3)
            state = _http("GET", run_url, token=token)["state"]
        assert state == "success", f"run {state}: {_task_states(run_url, token)}\n{procs.tail('scheduler')}"

        # The export of the contract, from the business date given in the conf.
        check_export(home / "exports" / "priority" / f"date={RUN_DATE}", RUN_DATE)

        # The MLflow run that train logged is on the server, and the champion it gated is registered there.
        train = _http("GET", f"{run_url}/taskInstances/train/xcomEntries/return_value", token=token)["value"]
        train = json.loads(train) if isinstance(train, str) else train
        assert train["status"] == "trained", train
        on_server = _http("GET", f"{mlflow_url}/api/2.0/mlflow/runs/get?run_id={train['run_id']}")["run"]
        assert on_server["info"]["status"] == "FINISHED"
        champion = _http(
            "GET", f"{mlflow_url}/api/2.0/mlflow/registered-models/alias?name=contactrank&alias=champion"
        )
        assert champion["model_version"]["run_id"] == train["run_id"]

        # The plugin's extra links, resolved by the api-server.
        links = _http("GET", f"{run_url}/taskInstances/publish/links", token=token)
        links = links.get("extra_links", links)
        export_dir = (home / "exports" / "priority" / f"date={RUN_DATE}").resolve()
        assert links["Published export"] == export_dir.as_uri() + "/"
        assert links["MLflow run"] == f"{mlflow_url}/#/runs/{train['run_id']}"
    finally:
        procs.stop_all()


def _task_states(run_url: str, token: str) -> dict[str, str]:
    try:
        tis = _http("GET", f"{run_url}/taskInstances", token=token)["task_instances"]
    except Exception as exc:  # diagnostics only
        return {"error": str(exc)}
    return {ti["task_id"]: ti["state"] for ti in tis}
