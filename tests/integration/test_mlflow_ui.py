"""The MLflow UI as a user opens it: the experiment shows its training runs, not the GenAI pages,
and the chart view starts with the headline metrics, every other group folded under its name.

A home gets one training and one gate on synthetic days; ``mlflow server`` serves its store on a
free loopback port (one worker, no job runner) and Debian's headless Chromium renders the address
the demo prints (``ml.tracking.experiment_url``), whose DOM ``--dump-dom`` hands back once the
page has settled. A fresh browser profile each time: the UI remembers its GenAI / model-training
switch per browser, and a new user's browser is on GenAI.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import date, timedelta
from pathlib import Path

import pytest
from helpers.synth_training import write_days

from contactrank.settings import Settings

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian chromium is not installed (`make system` installs it)"
)
D = date(2026, 11, 20)
SERVER_START_S = 90
PAGE_BUDGET_MS = 20_000


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _trained_home(settings: Settings) -> str:
    """One training and its gate; returns the experiment id."""
    from contactrank.ml.registry import gate
    from contactrank.ml.tracking import configure
    from contactrank.ml.train import train

    write_days(settings, D, 11)
    assert train(settings, D - timedelta(days=1))["status"] == "trained"
    assert gate(settings, D)["status"] == "promoted"
    return configure(settings)


def _serve(settings: Settings, port: int, log: Path) -> subprocess.Popen:
    mlflow = Path(sys.executable).with_name("mlflow")
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    cmd = [str(mlflow), "server", "--backend-store-uri", settings.tracking_uri]
    cmd += ["--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    proc = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"mlflow server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    pytest.fail(f"mlflow server did not answer in {SERVER_START_S} s: {log.read_text()[-2000:]}")


def _dump(url: str, workdir: Path) -> str:
    """The DOM of ``url`` after the page's own requests settled (virtual time), as visible text."""
    cmd = [
        str(CHROMIUM),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={workdir / 'profile'}",
        "--window-size=1400,1000",
        f"--virtual-time-budget={PAGE_BUDGET_MS}",
        "--dump-dom",
        url,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    body = re.sub(r"<(script|style)\b.*?</\1>", " ", proc.stdout, flags=re.S)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))


def test_the_experiment_opens_on_its_training_runs(settings: Settings, tmp_path: Path) -> None:
    from mlflow.tracking import MlflowClient

    from contactrank.ml.tracking import EXPERIMENT_KIND, EXPERIMENT_KIND_TAG, experiment_url

    experiment_id = _trained_home(settings)
    experiment = MlflowClient(settings.tracking_uri).get_experiment(experiment_id)
    assert experiment.tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    port = _free_port()
    server = _serve(settings, port, tmp_path / "server.log")
    url = experiment_url(f"http://127.0.0.1:{port}", experiment_id)
    try:
        runs = _dump(url, tmp_path / "runs")
        charts = _dump(url + "&compareRunsMode=CHART", tmp_path / "charts")
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
    assert "Runs - Experiment" in runs and "train-2026-11-19" in runs, runs[-3000:]
    for genai in ("Token Usage", "Tokens per Trace", "Detect Issues"):
        assert genai not in runs, runs[-3000:]
    # sections in the order the chart view shows them: "<name> (<charts>)"
    sections = re.findall(r"([a-z_/]+|Model metrics) \((\d+)\) Add chart", charts)
    names = [name for name, _ in sections]
    assert names and names[0] == "at_a_glance", charts[-3000:]
    assert {"test", "timing", "rows"} <= set(names) and any(n.startswith("channel/") for n in names)
    assert "other" not in names, "a training figure without a group"
