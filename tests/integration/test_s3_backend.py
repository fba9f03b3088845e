"""The whole pipeline with the lake and the exports on an object store (a local S3 server).

A small simulated world is run by the real CLI, in a subprocess, once on a local home and once with
``lake_uri``/``exports_uri`` on S3: every lake table and export is the same, row for row. A step
killed while uploading is tested on both backends with the other faults (test_faults.py).
"""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pytest
from helpers.homes import snapshot as _snapshot
from helpers.s3 import AWS_UNSET, aws_env, new_bucket, s3_uris

from contactrank.features.simulate import simulate
from contactrank.settings import load_settings

pytestmark = pytest.mark.slow

START = date(2026, 2, 2)
DAYS = 5
LAST = START + timedelta(days=DAYS - 1)
FAST = {  # small and fast, still the real pipeline: a champion exists from the 3rd day on
    "CONTACTRANK_MIN_TRAIN_DAYS": "2",
    "CONTACTRANK_VALID_DAYS": "1",
    "CONTACTRANK_NUM_BOOST_ROUND": "40",
    "CONTACTRANK_GATE_AUC_FLOOR": "0.5",
    "CONTACTRANK_GATE_ECE_CAP": "0.5",
}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    landing = tmp_path_factory.mktemp("world") / "landing"
    simulate(landing, START, DAYS + 1, persons=300, seed=11)
    return landing


def _env(home: Path, landing: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTACTRANK_", "AWS_"))}
    env.pop("MLFLOW_TRACKING_URI", None)
    env.update(FAST)
    env.update(
        {
            "CONTACTRANK_HOME": str(home),
            "CONTACTRANK_LANDING_DIR": str(landing),
            "CONTACTRANK_CONFIG": str(home.parent / "absent.toml"),
            "GIT_PYTHON_REFRESH": "quiet",
            **extra,
        }
    )
    return env


def _cli(home: Path, landing: Path, extra: dict[str, str], *args: str) -> subprocess.Popen:
    home.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "contactrank.cli", *args]
    env = _env(home, landing, extra)
    return subprocess.Popen(
        cmd, env=env, cwd=home.parent, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def _done(proc: subprocess.Popen) -> None:
    out, err = proc.communicate(timeout=1500)
    assert proc.returncode == 0, err[-2000:]


def _s3_extra(s3_server, tmp_path: Path) -> dict[str, str]:
    env = aws_env(s3_server)
    uris = s3_uris(new_bucket(env["AWS_ENDPOINT_URL"]))
    return {**env, "CONTACTRANK_LAKE_URI": uris["lake_uri"], "CONTACTRANK_EXPORTS_URI": uris["exports_uri"]}


def _settings(home: Path, extra: dict[str, str]):
    uris = {k[len("CONTACTRANK_") :].lower(): v for k, v in extra.items() if k.startswith("CONTACTRANK_")}
    return load_settings(home=home, **uris)


@pytest.fixture(scope="module")
def runs(world: Path, s3_server, tmp_path_factory: pytest.TempPathFactory):
    """The world backfilled on a local home and on S3 at once (two processes: two cores)."""
    root = tmp_path_factory.mktemp("runs")
    extra = _s3_extra(s3_server, root)
    args = ("backfill", "--start", START.isoformat(), "--end", LAST.isoformat())
    local = _cli(root / "local" / "home", world, {}, *args)
    remote = _cli(root / "s3" / "home", world, extra, *args)
    _done(local)
    _done(remote)
    return root / "local" / "home", root / "s3" / "home", extra


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch, runs) -> dict[str, str]:
    for key in AWS_UNSET:
        monkeypatch.delenv(key, raising=False)
    for key, value in runs[2].items():
        if key.startswith("AWS_"):
            monkeypatch.setenv(key, value)
    return runs[2]


def test_pipeline_on_s3_equals_local(runs, aws) -> None:
    local_home, s3_home, extra = runs
    local, remote = _snapshot(_settings(local_home, {})), _snapshot(_settings(s3_home, extra))
    assert f"exports/priority/date={LAST}/priority.parquet" in local
    assert sorted(remote) == sorted(local)
    assert remote == local
    assert not (s3_home / "lake").exists() and not (s3_home / "exports").exists()
