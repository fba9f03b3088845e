"""The production topology of docker-compose.yml, checked without a Docker engine.

1. ``docker-compose config -q`` validates the file (Debian's docker-compose 1.29) with the values of
   ``.env.example``, and fails naming the variable when any one secret is missing; every published
   port listens on 127.0.0.1, no secret has a default or a literal value, every container drops
   all capabilities (postgres adds back only what its entrypoint needs) and runs with
   ``no-new-privileges``. The Dockerfile's dependency layer needs no package source.
2. The same topology is brought up natively: PostgreSQL from Debian's packages on a free local port
   in a temp dir with password authentication, its roles and databases made by the compose init
   script (``deploy/postgres/10-contactrank-roles.sh``: roles airflow and mlflow, each owning only its
   databases), ``mlflow server --app-name basic-auth --workers 1`` on it with the compose auth
   configuration and the pipeline user made by ``deploy/mlflow/pipeline_user.py``, and the Airflow
   scheduler, api-server and dag-processor on it with LocalExecutor, the tasks signing in to MLflow
   through ``~/.mlflow/credentials`` as in the containers. ``contact_daily`` is triggered through
   Airflow's REST API, the test waits (bounded) for success, then checks the export, the MLflow run
   and model on the server, that MLflow refuses anonymous requests and a signed-in non-owner moving
   ``champion``, and the plugin's extra links through the API. Everything started is stopped in
   finalizers, whatever happens.
"""

from __future__ import annotations

import base64
import configparser
import importlib.util
import json
import os
import re
import shutil
import subprocess
import tempfile
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from helpers.airflow_harness import BIN, QUICK_SETTINGS, ROOT, check_export, free_port
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

from contactrank.pipeline import run_step
from contactrank.settings import load_settings

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
MLFLOW_AUTH_INI = ROOT / "deploy" / "mlflow" / "basic_auth.ini"
PIPELINE_USER = ROOT / "deploy" / "mlflow" / "pipeline_user.py"
# Every secret of docker-compose.yml: a required variable naming a file (compose secret).
SECRET_VARS = (
    "POSTGRES_PASSWORD_FILE",
    "AIRFLOW_DB_PASSWORD_FILE",
    "MLFLOW_DB_PASSWORD_FILE",
    "AIRFLOW_FERNET_KEY_FILE",
    "AIRFLOW_JWT_SECRET_FILE",
    "AIRFLOW_API_SECRET_KEY_FILE",
    "MLFLOW_ADMIN_PASSWORD_FILE",
    "MLFLOW_FLASK_SECRET_KEY_FILE",
    "MLFLOW_PIPELINE_CREDENTIALS_FILE",
    "CONTACTRANK_API_KEY_FILE",
    "CONTACTRANK_HMAC_KEY_FILE",
    "MINIO_ROOT_PASSWORD_FILE",
    "S3_CREDENTIALS_FILE",
)
SECRETISH = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN|CREDENTIAL|_KEY\b|_KEY_", re.IGNORECASE)
# Capabilities the postgres entrypoint needs to chown its data directory and drop to its user.
POSTGRES_CAPS = {"CHOWN", "DAC_OVERRIDE", "FOWNER", "SETGID", "SETUID"}
SENTINEL = "s3cr3t-sentinel-value"
# Names that match SECRETISH but hold no secret: a config path, and the file Airflow's simple auth
# manager generates its passwords into (on the airflow-auth volume, never a value from outside).
NOT_SECRET_VALUES = {"MLFLOW_AUTH_CONFIG_PATH", "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE"}
START = date(2026, 11, 1)
HISTORY_DAYS = 2
RUN_DATE = START + timedelta(days=HISTORY_DAYS)
WAIT_SECONDS = 600


# --- docker-compose.yml ------------------------------------------------------------------------------


def _compose(*args: str, env_file: Path | None = None, **variables: str) -> subprocess.CompletedProcess:
    """``docker-compose -f docker-compose.yml [--env-file F] ARGS`` with only ``variables`` set.

    An explicit env file (an empty one by default) keeps a developer's ``.env`` out of the test."""
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip("docker-compose is not installed (`make system` installs Debian's package)")
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AIRFLOW", "POSTGRES", "MLFLOW", "CONTACTRANK"))
    }
    env.update(variables)
    with tempfile.TemporaryDirectory(prefix="contactrank-compose-") as empty:
        if env_file is None:
            env_file = Path(empty) / "empty.env"
            env_file.write_text("")
        return subprocess.run(
            [exe, "-f", str(COMPOSE), "--env-file", str(env_file), *args],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env=env,
        )


@pytest.fixture(scope="module")
def secret_files() -> Iterator[dict[str, str]]:
    """Every secret variable pointing at a file that holds a sentinel value."""
    folder = Path(tempfile.mkdtemp(prefix="contactrank-secrets-"))
    files = {}
    for var in SECRET_VARS:
        path = folder / var.lower()
        path.write_text(SENTINEL + "\n")
        files[var] = str(path)
    yield files
    shutil.rmtree(folder, ignore_errors=True)


def _rendered(secret_files: dict[str, str]) -> tuple[str, dict]:
    proc = _compose("--profile", "celery", "config", **secret_files)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout, yaml.safe_load(proc.stdout)


def test_compose_file_is_valid_with_the_env_example() -> None:
    for profile in ([], ["--profile", "celery"]):
        proc = _compose(*profile, "config", "-q", env_file=ENV_EXAMPLE)
        assert proc.returncode == 0, proc.stderr


def test_every_secret_is_required_and_documented(secret_files: dict[str, str]) -> None:
    text = COMPOSE.read_text()
    required = set(re.findall(r"\$\{([A-Z0-9_]+):\?", text))
    assert required == set(SECRET_VARS), required ^ set(SECRET_VARS)
    example = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if line and not line.startswith("#")
    )
    for var in SECRET_VARS:
        assert var in example, f".env.example does not document {var}"
        assert example[var].startswith("./secrets/"), f".env.example: {var} must name a file in ./secrets"
        assert f"set {var} " in text, f"docker-compose.yml: no clear message for a missing {var}"


@pytest.mark.parametrize("missing", SECRET_VARS)
def test_compose_config_fails_naming_a_missing_secret(missing: str, secret_files: dict[str, str]) -> None:
    for value in (None, ""):  # unset, or set to nothing
        variables = {k: v for k, v in secret_files.items() if k != missing}
        if value is not None:
            variables[missing] = value
        proc = _compose("config", "-q", **variables)
        assert proc.returncode != 0, f"config passed without {missing}={value!r}"
        assert f"set {missing} " in proc.stderr, proc.stderr


def test_no_secret_defaults_or_values(secret_files: dict[str, str]) -> None:
    text = COMPOSE.read_text()
    # No ${SECRET:-default} / ${SECRET-default} for anything that looks like a secret.
    for name, op in re.findall(r"\$\{([A-Za-z0-9_]+)(:?[-?+]?)", text):
        if SECRETISH.search(name):
            assert op == ":?", f"${{{name}}} must be required (${{{name}:?...}}), not {op!r}"
    for literal in ("change-me", "password1234", "POSTGRES_PASSWORD:", "FERNET_KEY:", "JWT_SECRET:"):
        assert literal not in text, f"docker-compose.yml holds {literal!r}"
    rendered, config = _rendered(secret_files)
    assert SENTINEL not in rendered  # values stay in the files; compose only mounts them
    for name, svc in config["services"].items():
        env = svc.get("environment") or {}
        for key, value in env.items():
            if not SECRETISH.search(key) or key in NOT_SECRET_VALUES:
                continue
            assert key.endswith(("_FILE", "_CMD")), f"{name}: secret {key} is set in the environment"
            assert "/run/secrets/" in str(value), f"{name}: {key} does not read a compose secret"
        words = json.dumps([svc.get("command"), svc.get("entrypoint"), env])
        # Credentials in a URL only as the %s a *_CMD fills in from a secret file.
        for user, password in re.findall(r"://([^/@\s:'\"]+):([^/@\s'\"]+)@", words):
            assert password == "%s", f"{name}: a password in a URL ({user}:...)"
        assert "--backend-store-uri=postgresql+psycopg2://mlflow@" in words or name != "mlflow"


def test_hardening(secret_files: dict[str, str]) -> None:
    _, config = _rendered(secret_files)
    for name, svc in config["services"].items():
        assert svc.get("cap_drop") == ["ALL"], f"{name}: cap_drop [ALL] missing"
        assert "no-new-privileges:true" in (svc.get("security_opt") or []), (
            f"{name}: no-new-privileges missing"
        )
        added = set(svc.get("cap_add") or [])
        allowed = POSTGRES_CAPS if name == "postgres" else set()
        assert added <= allowed, f"{name} adds capabilities {sorted(added - allowed)}"
        assert svc.get("privileged") is not True, name
        for port in svc.get("ports") or []:
            if isinstance(port, dict):
                assert port.get("host_ip") == "127.0.0.1", (
                    f"{name}: port {port} is published on every interface"
                )
            else:
                assert str(port).startswith("127.0.0.1:"), (
                    f"{name}: port {port} is published on every interface"
                )
    published = {name for name, svc in config["services"].items() if svc.get("ports")}
    assert published == {"airflow-apiserver", "mlflow", "serve"}, published  # serve requires its API key
    mlflow = " ".join(config["services"]["mlflow"]["command"])
    assert "--app-name=basic-auth" in mlflow  # MLflow's port is published: it must authenticate
    assert config["services"]["mlflow"]["environment"]["MLFLOW_AUTH_CONFIG_PATH"].endswith("basic_auth.ini")
    for name in ("airflow-scheduler", "airflow-worker"):  # the services that run tasks
        targets = [s.get("target") for s in config["services"][name]["secrets"]]
        assert "/opt/airflow/.mlflow/credentials" in targets, f"{name}: tasks cannot sign in to MLflow"


def test_compose_topology(secret_files: dict[str, str]) -> None:
    _, config = _rendered(secret_files)
    services = config["services"]
    assert {
        "postgres",
        "postgres-init",
        "mlflow",
        "mlflow-init",
        "airflow-init",
        "airflow-apiserver",
        "airflow-scheduler",
        "airflow-dag-processor",
        "airflow-triggerer",
        "redis",
        "minio",
        "minio-init",
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
    assert (
        "postgresql+psycopg2://airflow:%s@postgres:5432/airflow"
        in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"]
    )
    assert "--workers=1" in " ".join(services["mlflow"]["command"])
    for name in ("redis", "minio", "minio-init", "airflow-worker"):
        assert services[name].get("profiles") == ["celery"], name
    # the tasks and the lookup API reach the object store as the pipeline user, never as MinIO's root
    for name in ("airflow-scheduler", "airflow-worker", "serve"):
        targets = [s.get("target") for s in services[name]["secrets"]]
        assert "/opt/airflow/.aws/credentials" in targets, f"{name}: cannot sign in to the object store"
        assert "minio_root_password" not in [s.get("source") for s in services[name]["secrets"]], name


def test_dockerfile_installs_from_the_constraints_file() -> None:
    text = (ROOT / "Dockerfile").read_text()
    joined = text.replace("\\\n", " ")
    assert "pip install -c constraints.txt -r /tmp/requirements.txt" in joined
    assert "tomllib" in joined and "optional-dependencies" in joined
    copies = []
    for line in text.splitlines():
        if line.startswith("COPY ") and "--from" not in line:
            srcs = line.split()[1:-1]
            for src in srcs:
                assert (ROOT / src.rstrip("/")).exists(), f"Dockerfile copies {src}, which does not exist"
            copies.append(srcs)
    # The dependency layer needs no package source (it cannot miss a package dir)...
    deps_step = text.index("pip install -c constraints.txt -r")
    before = [
        src
        for line in text[:deps_step].splitlines()
        if line.startswith("COPY ")
        for src in line.split()[1:-1]
    ]
    assert set(before) == {"constraints.txt", "pyproject.toml"}, before
    # ...and the final `pip install .` finds every package setuptools is told about.
    import tomllib

    tool = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    package_dir = tool.get("package-dir", {})
    copied = {src.rstrip("/") for srcs in copies for src in srcs}
    for package in tool["packages"]:
        parts = package.split(".")
        for i in range(len(parts), 0, -1):
            if ".".join(parts[:i]) in package_dir:
                path = Path(package_dir[".".join(parts[:i])], *parts[i:])
                break
        else:
            path = Path(*parts)
        assert (ROOT / path / "__init__.py").is_file(), f"{package}: {path}/__init__.py is missing"
        assert path.parts[0] in copied, f"Dockerfile does not copy {path.parts[0]}/ (package {package})"
    ignored = (ROOT / ".dockerignore").read_text().split()
    for secret in ("secrets", ".env"):
        assert secret in ignored, f".dockerignore must keep {secret} out of the build context"


# --- the topology, natively ----------------------------------------------------------------------------


@pytest.mark.topology
@pytest.mark.slow
def test_contact_daily_on_the_native_topology(postgres: dict, tmp_path: Path) -> None:
    from contactrank.features.simulate import simulate

    home, airflow_home, logs = tmp_path / "home", tmp_path / "airflow", tmp_path / "logs"
    logs.mkdir()
    mlflow_port, api_port = free_port(), free_port()
    mlflow_url, api_url = f"http://127.0.0.1:{mlflow_port}", f"http://127.0.0.1:{api_port}"
    env = native_env(airflow_home, home, postgres["airflow_url"], api_port, mlflow_url)
    env["AIRFLOW__CORE__EXECUTOR"] = "LocalExecutor"

    # MLflow's basic-auth app as in docker-compose.yml: the compose auth configuration (its auth
    # database on this cluster), admin password and CSRF key from files, the pipeline user made by the
    # compose bootstrap script, the tasks signing in through ~/.mlflow/credentials.
    auth = importlib.util.find_spec("flask_wtf") is not None
    secrets = tmp_path / "secrets"
    secrets.mkdir()
    admin = ("admin", base64.urlsafe_b64encode(os.urandom(18)).decode())
    pipeline = ("contactrank-pipeline", base64.urlsafe_b64encode(os.urandom(18)).decode())
    (secrets / "mlflow_admin_password").write_text(admin[1] + "\n")
    credentials = configparser.ConfigParser()
    credentials["mlflow"] = {"mlflow_tracking_username": pipeline[0], "mlflow_tracking_password": pipeline[1]}
    with open(secrets / "mlflow_pipeline_credentials", "w") as fh:
        credentials.write(fh)
    ini = configparser.ConfigParser()
    ini.read(MLFLOW_AUTH_INI)
    ini["mlflow"]["database_uri"] = f"{postgres['mlflow_url']}/mlflow_auth"
    with open(tmp_path / "basic_auth.ini", "w") as fh:
        ini.write(fh)
    mlflow_env = {
        **env,
        "MLFLOW_AUTH_CONFIG_PATH": str(tmp_path / "basic_auth.ini"),
        "MLFLOW_AUTH_ADMIN_PASSWORD": admin[1],
        "MLFLOW_FLASK_SERVER_SECRET_KEY": base64.urlsafe_b64encode(os.urandom(18)).decode(),
    }
    if auth:
        user_home = tmp_path / "user-home"
        (user_home / ".mlflow").mkdir(parents=True)
        shutil.copy(secrets / "mlflow_pipeline_credentials", user_home / ".mlflow" / "credentials")
        env["HOME"] = str(user_home)
    else:  # the deployment installs mlflow[auth]; a dev venv without Flask-WTF runs MLflow open
        warnings.warn("Flask-WTF is not installed: MLflow's basic-auth app is not exercised", stacklevel=1)
        pipeline = admin = None

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
        options = ["--app-name=basic-auth"] if auth else []
        options.append(f"--default-artifact-root={(tmp_path / 'mlartifacts').as_uri()}")
        start_mlflow(procs, postgres, mlflow_port, mlflow_env, *options)
        start_airflow(procs, env, api_port)
        wait_http(f"{mlflow_url}/health", procs, 180)
        if auth:
            for _ in range(2):  # idempotent: the one-shot mlflow-init runs on every `docker-compose up`
                init = subprocess.run(
                    [str(BIN / "python"), str(PIPELINE_USER)],
                    env={
                        **env,
                        "MLFLOW_TRACKING_URI": mlflow_url,
                        "MLFLOW_ADMIN_PASSWORD_FILE": str(secrets / "mlflow_admin_password"),
                        "MLFLOW_PIPELINE_CREDENTIALS_FILE": str(secrets / "mlflow_pipeline_credentials"),
                    },
                    capture_output=True,
                    text=True,
                    timeout=120,
                    check=False,
                )
                assert init.returncode == 0, init.stderr[-3000:]
        token = sign_in(procs, api_url, airflow_home)
        api = f"{api_url}/api/v2"
        unpause_when_parsed(procs, api, token, "contact_daily")
        # Airflow 3: a run with no logical date; the business date comes from the `date` param.
        run_url = run_to_end(
            procs, api, token, "contact_daily", {"date": RUN_DATE.isoformat()}, WAIT_SECONDS, ("scheduler",)
        )

        # The export of the contract, from the business date given in the conf.
        check_export(home / "exports" / "priority" / f"date={RUN_DATE}", RUN_DATE)

        # The MLflow run that train logged is on the server, and the champion it gated is registered there.
        train = http("GET", f"{run_url}/taskInstances/train/xcomEntries/return_value", token=token)["value"]
        train = json.loads(train) if isinstance(train, str) else train
        assert train["status"] == "trained", train
        mlflow_api = f"{mlflow_url}/api/2.0/mlflow"
        on_server = http("GET", f"{mlflow_api}/runs/get?run_id={train['run_id']}", basic=pipeline)["run"]
        assert on_server["info"]["status"] == "FINISHED"
        alias_url = f"{mlflow_api}/registered-models/alias?name=contactrank&alias=champion"
        champion = http("GET", alias_url, basic=pipeline)
        assert champion["model_version"]["run_id"] == train["run_id"]
        if auth:
            # Nobody moves `champion` without signing in, nor as a signed-in user who does not own it.
            move = {
                "name": "contactrank",
                "alias": "champion",
                "version": champion["model_version"]["version"],
            }
            with pytest.raises(urllib.error.HTTPError) as anonymous:
                http("GET", alias_url)
            assert anonymous.value.code == 401
            with pytest.raises(urllib.error.HTTPError) as anonymous:
                http("POST", f"{mlflow_api}/registered-models/alias", move)
            assert anonymous.value.code == 401
            reader = ("reader", base64.urlsafe_b64encode(os.urandom(18)).decode())
            http(
                "POST",
                f"{mlflow_api}/users/create",
                {"username": reader[0], "password": reader[1]},
                basic=admin,
            )
            assert http("GET", alias_url, basic=reader)["model_version"]["run_id"] == train["run_id"]
            with pytest.raises(urllib.error.HTTPError) as forbidden:
                http("POST", f"{mlflow_api}/registered-models/alias", move, basic=reader)
            assert forbidden.value.code == 403

        # The plugin's extra links, resolved by the api-server.
        links = http("GET", f"{run_url}/taskInstances/publish.commit/links", token=token)
        links = links.get("extra_links", links)
        export_dir = (home / "exports" / "priority" / f"date={RUN_DATE}").resolve()
        assert links["Published export"] == export_dir.as_uri() + "/"
        assert links["MLflow run"] == f"{mlflow_url}/#/runs/{train['run_id']}"
    finally:
        procs.stop_all()
