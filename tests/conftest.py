"""Shared fixtures: every test gets its own CONTACTRANK_HOME and MLflow store in a temp dir."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from contactrank.settings import Settings, load_settings, runtime_env

ROOT = Path(__file__).resolve().parents[1]
runtime_env()  # LightGBM's OpenMP threads sleep, not spin, on a shared 2-core CI machine


def pytest_configure(config: pytest.Config) -> None:
    """Each test process writes its temporary files in a folder of its own, removed at its end.

    A temporary folder that the code or a test forgets stays on a CI machine or a developer's for
    good; here it is found: the session fails if any ``contactrank-*`` folder is left in it once
    every fixture is torn down (the libraries' own leftovers are removed with the folder)."""
    base = Path(tempfile.mkdtemp(prefix="contactrank-tests-"))
    base.chmod(0o1777)  # servers running as another user (PostgreSQL) create files in it
    os.environ["TMPDIR"] = str(base)
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again
    config.stash[_TMP_KEY] = base


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The modules with a slow or topology test run first, each kept whole.

    ``make test`` hands whole files to two workers (``--dist loadfile``: a module's fixtures are
    built once); with the long modules first the short ones fill in at the end, instead of one
    worker waiting minutes behind the last long module."""
    heavy = {i.module for i in items if i.get_closest_marker("slow") or i.get_closest_marker("topology")}
    items.sort(key=lambda i: i.module not in heavy)  # a stable sort keeps each module's own order


_TMP_KEY = pytest.StashKey[Path]()
_LEFT_KEY = pytest.StashKey[list]()


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """What an xdist worker left behind, gathered by the controller."""
    left = getattr(node, "workeroutput", {}).get("tmp_left", [])
    node.config.stash.setdefault(_LEFT_KEY, []).extend(left)


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    base = session.config.stash.get(_TMP_KEY, None)
    if base is None or not base.exists():
        return
    # The Airflow home of tests/dags lives as long as the process: Airflow reads it at import; an
    # xdist worker's own folder is checked and removed by that worker.
    kept = {Path(os.environ.get("AIRFLOW_HOME", "/nonexistent")), *base.glob("contactrank-tests-*")}
    left = sorted(p.name for p in base.glob("contactrank-*") if p not in kept)
    if hasattr(session.config, "workeroutput"):  # an xdist worker: the controller decides
        session.config.workeroutput["tmp_left"] = left
    left += session.config.stash.get(_LEFT_KEY, [])
    if left and session.exitstatus == 0:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
        print(f"\nleft behind in the temporary directory: {', '.join(left)}")


def pytest_unconfigure(config: pytest.Config) -> None:
    base = config.stash.get(_TMP_KEY, None)
    if base is not None:
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No test reads the developer's contactrank.toml, env or MLflow server."""
    for key in list(os.environ):
        if key.startswith("CONTACTRANK_") or key == "MLFLOW_TRACKING_URI":
            monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("CONTACTRANK_CONFIG", str(tmp_path / "absent.toml"))
    monkeypatch.setenv("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    monkeypatch.setenv("GIT_PYTHON_REFRESH", "quiet")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """Settings whose home (lake, MLflow store, exports) is a fresh temp dir."""
    return load_settings(home=tmp_path / "home")


@pytest.fixture(scope="session")
def s3_server():
    """A local S3-compatible server (moto) shared by the session's object-store tests."""
    from helpers.s3 import server_fixture  # moto: the dev extra, installed by `make install`

    yield from server_fixture()


@pytest.fixture
def s3_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, s3_server) -> Settings:
    """Settings whose lake and exports are on a fresh bucket of the local S3 server."""
    from helpers.s3 import new_bucket, s3_uris, use_server

    bucket = new_bucket(use_server(monkeypatch, s3_server))
    # a lake that workers share needs the erasure key they share (privacy.erasure_key)
    monkeypatch.setenv("CONTACTRANK_HMAC_KEY", "a key every worker of this store is given")
    return load_settings(home=tmp_path / "home", **s3_uris(bucket))


@pytest.fixture(params=["local", "s3"])
def any_settings(request: pytest.FixtureRequest) -> Settings:
    """The ``settings`` of each storage backend in turn: a local home, then a home on S3."""
    return request.getfixturevalue("settings" if request.param == "local" else "s3_settings")


@pytest.fixture(scope="module")
def postgres():
    """A throw-away PostgreSQL cluster with the roles of the compose init script (helpers.topology)."""
    from helpers.topology import postgres_cluster

    yield from postgres_cluster()
