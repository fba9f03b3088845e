"""Fault injection on the whole pipeline on a small simulated world.

Each test is "inject -> expect". A world of 500 persons over 7 days is simulated once; each test
copies what it needs into its own CONTACTRANK_HOME and runs the real CLI in a subprocess (real
DuckDB, LightGBM, MLflow on SQLite), so a SIGKILL or a frozen clock hits the real process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from helpers.fast_pipeline import FAST

from contactrank.features.simulate import simulate

pytestmark = pytest.mark.slow

START = date(2026, 2, 2)
DAYS = 7
LAST = START + timedelta(days=DAYS - 1)
VOLATILE_KEYS = {"created_at", "run_id", "model_run_id", "seconds", "timings", "elapsed_s"}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    landing = tmp_path_factory.mktemp("world") / "landing"
    simulate(landing, START, DAYS + 1, persons=500, seed=11)
    return landing


def _env(home: Path, landing: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("CONTACTRANK_") and k != "MLFLOW_TRACKING_URI"
    }
    env.update(FAST)
    env.update(
        {
            "CONTACTRANK_HOME": str(home),
            "CONTACTRANK_LANDING_DIR": str(landing),
            "GIT_PYTHON_REFRESH": "quiet",
        }
    )
    env["CONTACTRANK_CONFIG"] = str(home / "absent.toml")
    return env


def _cli(
    home: Path, landing: Path, *args: str, prefix: tuple[str, ...] = (), check: bool = True
) -> subprocess.CompletedProcess:
    cmd = [*prefix, sys.executable, "-m", "contactrank.cli", *args]
    proc = subprocess.run(cmd, env=_env(home, landing), capture_output=True, text=True, cwd=home.parent)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed: {proc.stderr[-2000:]}")
    return proc


def _run_days(home: Path, landing: Path, days: list[date], prefix: tuple[str, ...] = ()) -> None:
    for d in days:
        _cli(home, landing, "run", "--date", d.isoformat(), prefix=prefix)


def _table_digest(path: Path) -> str:
    """Content hash of a table: sorted rows, volatile columns dropped."""
    df = pq.read_table(path).to_pandas()
    df = df.drop(
        columns=[c for c in df.columns if c in VOLATILE_KEYS or c.startswith("_model_run")], errors="ignore"
    )
    df = df.sort_values(list(df.columns)).reset_index(drop=True) if len(df) else df
    return hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()


def _json_digest(path: Path) -> str:
    def clean(obj):
        if isinstance(obj, dict):
            return {
                k: clean(v)
                for k, v in obj.items()
                if k not in VOLATILE_KEYS and k != "sha256" and k != "files"
            }
        if isinstance(obj, list):
            return [clean(v) for v in obj]
        return obj

    return hashlib.sha256(
        json.dumps(clean(json.loads(path.read_text())), sort_keys=True).encode()
    ).hexdigest()


def _snapshot(home: Path) -> dict[str, str]:
    """Every table of the lake and the exports, by relative path -> content hash."""
    out = {}
    for root in (home / "lake", home / "exports" / "priority"):
        for p in sorted(root.rglob("*")):
            if any(part.startswith(".") for part in p.relative_to(root).parts):
                continue
            if p.suffix == ".parquet":
                out[str(p.relative_to(home))] = _table_digest(p)
            elif p.name == "_manifest.json":
                out[str(p.relative_to(home))] = _json_digest(p)
    return out


@pytest.fixture(scope="module")
def reference(world: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The pipeline run day after day, as the scheduler would."""
    home = tmp_path_factory.mktemp("reference") / "home"
    _run_days(home, world, [START + timedelta(days=i) for i in range(DAYS)])
    assert (home / "exports" / "priority" / f"date={LAST}" / "_SUCCESS").exists()
    return home


def test_same_date_twice_gives_identical_outputs(reference: Path, world: Path) -> None:
    before = _snapshot(reference)
    _cli(reference, world, "run", "--date", LAST.isoformat())
    after = _snapshot(reference)
    assert before == after


def test_backfill_equals_sequential_daily_runs(reference: Path, world: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    _cli(home, world, "backfill", "--start", START.isoformat(), "--end", LAST.isoformat())
    assert _snapshot(home) == _snapshot(reference)


def test_frozen_clock_does_not_change_outputs(reference: Path, world: Path, tmp_path: Path) -> None:
    """The same data and dates under a clock years away give the same tables and exports."""
    if not shutil.which("faketime"):
        pytest.skip("faketime is not installed (make system installs it)")
    home = tmp_path / "home"
    _run_days(
        home,
        world,
        [START + timedelta(days=i) for i in range(DAYS)],
        prefix=("faketime", "2031-07-15 03:04:05"),
    )
    manifest = json.loads((home / "exports" / "priority" / f"date={LAST}" / "_manifest.json").read_text())
    assert manifest["created_at"].startswith("2031-07-15")  # the clock really was frozen
    assert _snapshot(home) == _snapshot(reference)


def _kill_when_staging_appears(cmd_home: Path, landing: Path, args: list[str], kind_dir: Path) -> int:
    """Start a CLI step, SIGKILL it as soon as it starts writing a staging folder under kind_dir."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "contactrank.cli", *args],
        env=_env(cmd_home, landing),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=cmd_home.parent,
    )
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if kind_dir.is_dir() and any(p.name.startswith(".staging-") for p in kind_dir.iterdir()):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.001)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return proc.returncode


@pytest.mark.parametrize(("step", "kind"), [("ingest", "attempts"), ("features", "features")])
def test_sigkill_mid_write_leaves_no_partial_partition(
    reference: Path, world: Path, tmp_path: Path, step: str, kind: str
) -> None:
    home = tmp_path / "home"
    shutil.copytree(reference, home)
    d = LAST
    before = _snapshot(home)
    target = home / "lake" / kind / f"date={d}"
    rc = _kill_when_staging_appears(home, world, [step, "--date", d.isoformat()], target.parent)
    # killed, or finished before we saw the staging folder: either way nothing partial is visible
    visible = sorted(p.name for p in target.parent.iterdir() if not p.name.startswith("."))
    assert f"date={d}" in visible  # the previous version is still (or again) in place
    assert pq.read_table(target / "part-0.parquet").num_rows > 0
    if rc == -signal.SIGKILL:
        # the reader sees the old version, whole
        assert (
            _table_digest(target / "part-0.parquet")
            == before[str(target.relative_to(home) / "part-0.parquet")]
        )
    _cli(home, world, step, "--date", d.isoformat())  # a rerun completes
    assert not any(p.name.startswith(".staging-") for p in target.parent.iterdir())
    assert _snapshot(home) == before


def test_late_file_rebuilds_its_date_and_the_next_only(reference: Path, world: Path, tmp_path: Path) -> None:
    home, landing = tmp_path / "home", tmp_path / "landing"
    shutil.copytree(reference, home)
    shutil.copytree(world, landing)
    late_day = START + timedelta(days=3)
    import pandas as pd

    src = next((landing / "attempts" / f"date={late_day}").glob("*.csv"))
    day = pd.read_csv(src, dtype=str, keep_default_na=False)
    late = pd.concat(
        [day.head(1)] * 25, ignore_index=True
    )  # 25 more reached attempts on an address of the day
    late["attempt_id"] = [f"late-{i}" for i in range(25)]
    late["outcome"] = "right_party"
    late.to_csv(src.parent / "late-delivery.csv", index=False)
    before = _snapshot(home)

    for d in (late_day, late_day + timedelta(days=1)):
        _cli(home, landing, "ingest", "--date", d.isoformat())
        _cli(home, landing, "features", "--date", d.isoformat())
    after = _snapshot(home)

    changed = {k for k in after if after[k] != before.get(k)}
    assert f"lake/attempts/date={late_day}/part-0.parquet" in changed
    assert f"lake/features/date={late_day}/part-0.parquet" in changed  # dependent features updated
    assert f"lake/training/date={late_day + timedelta(days=1)}/part-0.parquet" in changed
    touched_days = {k.split("date=")[1][:10] for k in changed}
    assert touched_days <= {late_day.isoformat(), (late_day + timedelta(days=1)).isoformat()}
    attempts = pq.read_table(home / "lake" / "attempts" / f"date={late_day}" / "part-0.parquet")
    assert sum(a.startswith("late-") for a in attempts.column("attempt_id").to_pylist()) == 25


def test_unreadable_suppressions_publish_nothing(reference: Path, world: Path, tmp_path: Path) -> None:
    home = tmp_path / "home"
    shutil.copytree(reference, home)
    d = LAST
    export = home / "exports" / "priority" / f"date={d}"
    shutil.rmtree(export)
    shutil.rmtree(home / "lake" / "scores" / f"date={d}", ignore_errors=True)
    (home / "lake" / "suppressions" / f"date={START + timedelta(days=1)}" / "part-0.parquet").write_bytes(
        b"PAR1 garbage"
    )
    proc = _cli(home, world, "run", "--date", d.isoformat(), check=False)
    assert proc.returncode != 0
    assert "suppression" in proc.stderr.strip().splitlines()[-1].lower()
    assert not export.exists()
    assert (
        home / "exports" / "priority" / f"date={d - timedelta(days=1)}" / "_SUCCESS"
    ).exists()  # previous intact


def test_nan_and_inf_features_still_give_finite_scores(reference: Path, world: Path, tmp_path: Path) -> None:
    import numpy as np

    home = tmp_path / "home"
    shutil.copytree(reference, home)
    path = home / "lake" / "features" / f"date={LAST}" / "part-0.parquet"
    df = pq.read_table(path).to_pandas()
    numeric = [c for c in df.columns if c.startswith("f_") and df[c].dtype.kind == "f"]
    rng = np.random.default_rng(0)
    for c in numeric:
        df.loc[rng.random(len(df)) < 0.2, c] = np.inf
        df.loc[rng.random(len(df)) < 0.2, c] = -np.inf
        df.loc[rng.random(len(df)) < 0.2, c] = np.nan
    df.to_parquet(path, index=False)
    _cli(home, world, "score", "--date", LAST.isoformat())
    _cli(home, world, "publish", "--date", LAST.isoformat())
    out = pq.read_table(home / "exports" / "priority" / f"date={LAST}" / "priority.parquet").to_pandas()
    assert len(out) > 0
    assert np.isfinite(out["score"]).all() and out["score"].between(0, 1).all()
