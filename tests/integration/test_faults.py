"""Fault injection on the whole pipeline on a small simulated world, on both storage backends.

Each test is "inject -> expect". A world of 500 persons over 7 days is simulated once; each test
copies what it needs into its own home and runs the real CLI in a subprocess (real DuckDB,
LightGBM, MLflow on SQLite), so a SIGKILL or a frozen clock hits the real process. Every test runs
twice: with the lake and exports in the home folder, and with them on a local S3 server (moto, in
this process; the subprocesses reach it over loopback with the standard AWS variables).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pyarrow as pa
import pytest
from helpers.fast_pipeline import FAST
from helpers.homes import Home, Store, copy_home, new_home, remove_folder, snapshot
from helpers.s3 import aws_env, new_bucket, overwrite, stored_files, use_server

from contactrank import storage
from contactrank.features import lake
from contactrank.features.simulate import simulate

pytestmark = pytest.mark.slow

START = date(2026, 2, 2)
DAYS = 7
LAST = START + timedelta(days=DAYS - 1)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    landing = tmp_path_factory.mktemp("world") / "landing"
    simulate(landing, START, DAYS + 1, persons=500, seed=11)
    return landing


@pytest.fixture(scope="module", params=["local", "s3"])
def store(request: pytest.FixtureRequest):
    """None (the lake in the home folder), or a bucket of the local S3 server; the AWS variables are
    this process's too while the module's S3 tests run, for the tests' own reads."""
    if request.param == "local":
        yield None
        return
    server = request.getfixturevalue("s3_server")
    with pytest.MonkeyPatch.context() as mp:
        yield Store(new_bucket(use_server(mp, server)), aws_env(server))


def _env(home: Home, landing: Path) -> dict[str, str]:
    scratch = _scratch(home)
    scratch.mkdir(parents=True, exist_ok=True)
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("CONTACTRANK_", "AWS_")) and k != "MLFLOW_TRACKING_URI"
    }
    env.update(FAST)
    env.update(
        {
            "CONTACTRANK_HOME": str(home.path),
            "CONTACTRANK_LANDING_DIR": str(landing),
            "CONTACTRANK_CONFIG": str(home.path / "absent.toml"),
            "GIT_PYTHON_REFRESH": "quiet",
            "TMPDIR": str(scratch),
            **home.env,
        }
    )
    return env


def _scratch(home: Home) -> Path:
    """The temporary directory of the home's processes (where a writer to S3 stages its files)."""
    return home.path.parent / "tmp"


def _cli(
    home: Home, landing: Path, *args: str, prefix: tuple[str, ...] = (), check: bool = True
) -> subprocess.CompletedProcess:
    cmd = [*prefix, sys.executable, "-m", "contactrank.cli", *args]
    proc = subprocess.run(cmd, env=_env(home, landing), capture_output=True, text=True, cwd=home.path.parent)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed: {proc.stderr[-2000:]}")
    return proc


def _run_days(home: Home, landing: Path, days: list[date]) -> None:
    for d in days:
        _cli(home, landing, "run", "--date", d.isoformat())


def _export(home: Home, d: date) -> storage.Location:
    return storage.committed(home.settings.exports / "priority" / f"date={d}")


@pytest.fixture(scope="module")
def reference(world: Path, store: Store | None, tmp_path_factory: pytest.TempPathFactory) -> Home:
    """The pipeline run day after day, as the scheduler would."""
    home = new_home(tmp_path_factory.mktemp("reference") / "home", store)
    _run_days(home, world, [START + timedelta(days=i) for i in range(DAYS)])
    assert (_export(home, LAST) / "_SUCCESS").exists()
    if home.remote:
        assert not (home.path / "lake").exists() and not (home.path / "exports").exists()
    return home


def test_same_date_twice_gives_identical_outputs(reference: Home, world: Path) -> None:
    before = snapshot(reference.settings)
    _cli(reference, world, "run", "--date", LAST.isoformat())
    assert snapshot(reference.settings) == before


def test_backfill_equals_sequential_daily_runs(reference: Home, world: Path, tmp_path: Path) -> None:
    home = new_home(tmp_path / "home", reference.store)
    _cli(home, world, "backfill", "--start", START.isoformat(), "--end", LAST.isoformat())
    assert snapshot(home.settings) == snapshot(reference.settings)


def test_frozen_clock_does_not_change_outputs(reference: Home, world: Path, tmp_path: Path) -> None:
    """The same data and dates under a clock years away give the same tables and exports.

    (On S3 the local server does not check request signatures; a real store would refuse requests
    signed years off its clock, so there this is the library's outputs only, not a deployment.)
    """
    if not shutil.which("faketime"):
        pytest.skip("faketime is not installed (make system installs it)")
    home = new_home(tmp_path / "home", reference.store)
    # one backfill, not seven runs (a process start each): it equals the daily runs (test above)
    _cli(
        home,
        world,
        "backfill",
        "--start",
        START.isoformat(),
        "--end",
        LAST.isoformat(),
        prefix=("faketime", "2031-07-15 03:04:05"),
    )
    manifest = json.loads((_export(home, LAST) / "_manifest.json").read_text())
    assert manifest["created_at"].startswith("2031-07-15")  # the clock really was frozen
    assert snapshot(home.settings) == snapshot(reference.settings)


# The real CLI with one pause: right before the commit marker of one folder, so that the test's
# SIGKILL lands after every file of the new version is uploaded and before it is committed -- the
# object-store counterpart of a local staging folder (a PUT takes milliseconds: a kill timed by
# polling alone would mostly miss it).
PAUSE_BEFORE_COMMIT = """
import os, sys, time
from contactrank import storage
from contactrank.cli import main
commit = storage.write_marker
def write_marker(folder, marker):
    if folder.key == os.environ["FAULT_PAUSE_BEFORE_COMMIT_OF"]:
        time.sleep(300)
    commit(folder, marker)
storage.write_marker = write_marker
sys.exit(main(sys.argv[1:]))
"""


def _uncommitted(folder: storage.ObjectPath) -> list[str]:
    return storage.collect_uncommitted(storage.ObjectPath(folder.key), dry_run=True)


def _kill_mid_write(home: Home, landing: Path, args: list[str], target: storage.Location) -> int:
    """Start a CLI step, SIGKILL it as soon as its write of ``target`` is under way: locally once a
    staging folder appears beside it; on S3 once an upload that no marker names is under it."""
    env, cmd = _env(home, landing), [sys.executable, "-m", "contactrank.cli", *args]
    if home.remote:
        env["FAULT_PAUSE_BEFORE_COMMIT_OF"] = target.key
        cmd = [sys.executable, "-c", PAUSE_BEFORE_COMMIT, *args]
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=home.path.parent
    )
    deadline = time.monotonic() + 120
    try:
        while proc.poll() is None and time.monotonic() < deadline:
            if home.remote:
                writing = bool(_uncommitted(target))
            else:
                parent = target.parent
                writing = parent.is_dir() and any(p.name.startswith(".staging-") for p in parent.iterdir())
            if writing:
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.001 if not home.remote else 0.05)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    return proc.returncode


@pytest.mark.parametrize(
    ("step", "kind", "present"),
    [("ingest", "attempts", True), ("features", "features", True), ("features", "features", False)],
    ids=["ingest-rewrite", "features-rewrite", "features-new"],
)
def test_sigkill_mid_write_leaves_no_partial_partition(
    reference: Home, world: Path, tmp_path: Path, step: str, kind: str, present: bool
) -> None:
    """Killed while writing a partition: readers see the previous version whole (or, for a new one,
    no partition at all); the rerun collects the dead writer's files and commits the same content."""
    home = copy_home(reference, tmp_path / "home")
    s, d = home.settings, LAST
    before = snapshot(s)
    target = s.lake / kind / f"date={d}"
    if not present:
        remove_folder(target)
    rc = _kill_mid_write(home, world, [step, "--date", d.isoformat()], target)
    if home.remote:
        assert rc == -signal.SIGKILL  # the pause before the marker makes the kill certain here
        assert _uncommitted(target)  # the upload is there, committed by no marker
        assert list(_scratch(home).glob(f"{storage.SCRATCH_PREFIX}staging-*"))  # and its local staging
    # killed, or (locally) finished before the staging folder was seen: nothing partial is visible
    visible = snapshot(s)
    key = f"lake/{kind}/date={d}/{lake.DATA_FILE}"
    if present:
        assert visible == before if rc == -signal.SIGKILL else visible[key] == before[key]
    elif rc == -signal.SIGKILL:
        assert key not in visible and d not in lake.partition_dates(s, kind)
        assert lake.read_partition(s, kind, d) is None
    _cli(home, world, step, "--date", d.isoformat())  # a rerun completes
    if home.remote:
        assert storage.collect_uncommitted(s.lake, dry_run=True) == []
        assert not list(_scratch(home).glob(f"{storage.SCRATCH_PREFIX}*"))
    else:
        assert not any(p.name.startswith((".staging-", ".old-")) for p in target.parent.iterdir())
    assert snapshot(s) == before


def test_late_file_rebuilds_its_date_and_the_next_only(reference: Home, world: Path, tmp_path: Path) -> None:
    import pandas as pd

    home, landing = copy_home(reference, tmp_path / "home"), tmp_path / "landing"
    shutil.copytree(world, landing)
    late_day = START + timedelta(days=3)
    src = next((landing / "attempts" / f"date={late_day}").glob("*.csv"))
    day = pd.read_csv(src, dtype=str, keep_default_na=False)
    late = pd.concat(
        [day.head(1)] * 25, ignore_index=True
    )  # 25 more reached attempts on an address of the day
    late["attempt_id"] = [f"late-{i}" for i in range(25)]
    late["outcome"] = "right_party"
    late.to_csv(src.parent / "late-delivery.csv", index=False)
    before = snapshot(home.settings)

    for d in (late_day, late_day + timedelta(days=1)):
        _cli(home, landing, "ingest", "--date", d.isoformat())
        _cli(home, landing, "features", "--date", d.isoformat())
    after = snapshot(home.settings)

    changed = {k for k in after if after[k] != before.get(k)}
    assert f"lake/attempts/date={late_day}/part-0.parquet" in changed
    assert f"lake/features/date={late_day}/part-0.parquet" in changed  # dependent features updated
    assert f"lake/training/date={late_day + timedelta(days=1)}/part-0.parquet" in changed
    touched_days = {k.split("date=")[1][:10] for k in changed}
    assert touched_days <= {late_day.isoformat(), (late_day + timedelta(days=1)).isoformat()}
    attempts = lake.read_partition(home.settings, "attempts", late_day)
    assert sum(a.startswith("late-") for a in attempts.column("attempt_id").to_pylist()) == 25


def test_unreadable_suppressions_publish_nothing(reference: Home, world: Path, tmp_path: Path) -> None:
    home = copy_home(reference, tmp_path / "home")
    s, d = home.settings, LAST
    remove_folder(s.exports / "priority" / f"date={d}")
    remove_folder(s.lake / "scores" / f"date={d}")
    # a committed file damaged in place (on S3: its bytes no longer those its marker records)
    overwrite(
        lake.partition_dir(s, "suppressions", START + timedelta(days=1)) / lake.DATA_FILE, b"PAR1 garbage"
    )
    proc = _cli(home, world, "run", "--date", d.isoformat(), check=False)
    assert proc.returncode != 0
    assert "suppression" in proc.stderr.strip().splitlines()[-1].lower()
    assert not _export(home, d).exists()
    assert (_export(home, d - timedelta(days=1)) / "_SUCCESS").exists()  # previous intact


def test_nan_and_inf_features_still_give_finite_scores(reference: Home, world: Path, tmp_path: Path) -> None:
    import numpy as np

    home = copy_home(reference, tmp_path / "home")
    s = home.settings
    df = lake.read_partition(s, "features", LAST).to_pandas()
    numeric = [c for c in df.columns if c.startswith("f_") and df[c].dtype.kind == "f"]
    rng = np.random.default_rng(0)
    for c in numeric:
        df.loc[rng.random(len(df)) < 0.2, c] = np.inf
        df.loc[rng.random(len(df)) < 0.2, c] = -np.inf
        df.loc[rng.random(len(df)) < 0.2, c] = np.nan
    with storage.local_copy(lake.partition_dir(s, "features", LAST)) as files:  # the partition's other files
        extra = {p.name: p.read_bytes() for p in files.iterdir() if p.name != lake.DATA_FILE}
    lake.write_partition(s, "features", LAST, pa.Table.from_pandas(df, preserve_index=False), extra)
    _cli(home, world, "score", "--date", LAST.isoformat())
    _cli(home, world, "publish", "--date", LAST.isoformat())
    out = lake.read_table(_export(home, LAST) / "priority.parquet").to_pandas()
    assert len(out) > 0
    assert np.isfinite(out["score"]).all() and out["score"].between(0, 1).all()


def test_an_erasure_reaches_every_output_and_a_rerun_brings_nothing_back(
    reference: Home, world: Path, tmp_path: Path
) -> None:
    """A person of the last export erased with the CLI on a home the pipeline built: no stored file
    (lake, exports, MLflow's store; on S3 every object, committed or not) names them, and rerunning
    the day from the same deliveries brings them back nowhere."""
    import pyarrow.parquet as pq

    home = copy_home(reference, tmp_path / "home")
    person = lake.read_table(_export(home, LAST) / "priority.parquet").column("person_id")[0].as_py()
    _cli(home, world, "erase", "--person-id", person)
    _cli(home, world, "run", "--date", LAST.isoformat())
    published = lake.read_table(_export(home, LAST) / "priority.parquet").column("person_id")
    assert person not in published.to_pylist() and len(published) > 0
    for name, blob in stored_files(home.settings).items():
        assert person.encode() not in blob, name
        if name.endswith(".parquet"):  # decoded too: a compressed page can hide an id from a byte search
            table = pq.read_table(pa.BufferReader(blob))
            cells = {
                v
                for c in table.column_names
                if pa.types.is_string(table.schema.field(c).type)
                for v in table.column(c).to_pylist()
            }
            assert person not in cells, name
