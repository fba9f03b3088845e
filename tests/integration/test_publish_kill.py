"""A publish killed with SIGKILL never leaves a partial directory visible; a rerun completes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from datetime import date
from pathlib import Path

import pyarrow as pa
import pytest

from contactrank import storage
from contactrank.features.lake import read_table, write_partition
from contactrank.ml import publish as pub
from contactrank.ml.score import REPORT_FILE, SCORES_SCHEMA

D = date(2026, 11, 20)
ROOT = Path(__file__).resolve().parents[2]

# The child publishes with a hook that announces the chosen point and then hangs there.
CHILD = textwrap.dedent(
    """
    import os, sys, time
    from datetime import date
    from pathlib import Path
    from contactrank.settings import load_settings
    import contactrank.ml.publish as pub
    from contactrank import storage

    home, marker, where = sys.argv[1], Path(sys.argv[2]), sys.argv[3]

    def hang():
        marker.write_text("ready")
        time.sleep(120)

    if where == "csv":
        real = pub.write_csv
        def write_csv(table, path):
            real(table, path)
            hang()
        pub.write_csv = write_csv
    elif where == "marker":  # object store: every file uploaded, the marker not yet written
        def write_marker(folder, marker):
            hang()
        storage.write_marker = write_marker
    else:  # between moving the old directory aside and renaming the new one in
        real_replace = os.replace
        def replace(src, dst):
            real_replace(src, dst)
            if Path(str(dst)).name.startswith(".old-"):
                hang()
        os.replace = replace
    pub.publish(load_settings(home=home), date(2026, 11, 20))
    """
)


def scores(settings, person: str, version: str) -> None:
    table = pa.table(
        {
            "person_id": [person, person],
            "contact_id": ["+5511987654321", "a@b.c"],
            "channel": ["voice", "email"],
            "rank": [1, 2],
            "score": [0.5, 0.2],
            "best_hour": [10, 19],
            "reason": ["recent_success", "baseline"],
            "explore": [False, False],
            "propensity": [1.0, 0.0],
            "model_version": [version, version],
            "_raw": [0.0, 0.0],
            "_invalid": [False, False],
            "_n_attempts": [3, 0],
            "_greedy_rank": [1, 2],
        },
        schema=SCORES_SCHEMA,
    )
    report = {"model": {"name": "contactrank", "version": version, "run_id": "r"}}
    write_partition(settings, "scores", D, table, extra_files={REPORT_FILE: json.dumps(report).encode()})


def kill_mid_publish(settings, tmp_path: Path, where: str) -> None:
    marker = tmp_path / f"marker-{where}"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for name in ("lake_uri", "exports_uri"):  # the backend of the test's settings
        if getattr(settings, name):
            env[f"CONTACTRANK_{name.upper()}"] = getattr(settings, name)
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(settings.home), str(marker), where], env=env, cwd=tmp_path
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"the publishing child exited early with {proc.returncode}")
            if time.monotonic() > deadline:
                pytest.fail("the publishing child never reached the kill point")
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL


def visible(settings) -> list[Path]:
    root = settings.exports / "priority"
    if storage.is_remote(root):
        return storage.committed_children(root)
    return sorted(p for p in root.iterdir() if not p.name.startswith(".")) if root.is_dir() else []


def leftovers(settings) -> list[str]:
    """Hidden staging folders (local) or versions no marker names (object store) of the exports."""
    root = settings.exports / "priority"
    if storage.is_remote(root):
        return storage.collect_uncommitted(root, dry_run=True)
    return [p.name for p in root.iterdir() if p.name.startswith(".")]


def assert_complete(folder: Path, person: str) -> None:
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["_SUCCESS", "_manifest.json", "priority.csv", "priority.parquet"]
    assert read_table(folder / "priority.parquet").column("person_id").to_pylist() == [person, person]


def test_kill_during_first_publish_leaves_nothing_visible(any_settings, tmp_path):
    settings = any_settings
    scores(settings, "first", "1")
    remote = storage.is_remote(settings.exports)
    kill_mid_publish(settings, tmp_path, "marker" if remote else "csv")
    assert visible(settings) == []  # the half-written files sit in a hidden staging folder only
    assert leftovers(settings)  # (on an object store: uploaded files that no marker names)
    pub.publish(settings, D)
    [folder] = visible(settings)
    assert_complete(folder, "first")
    assert leftovers(settings) == []  # the crashed writer's files are collected by the next one


@pytest.mark.slow  # two child processes that each import the stack
def test_kill_during_rerun_keeps_the_old_version_or_none(any_settings, tmp_path):
    settings = any_settings
    remote = storage.is_remote(settings.exports)
    scores(settings, "old", "1")
    pub.publish(settings, D)
    scores(settings, "new", "2")
    kill_mid_publish(settings, tmp_path, "csv")
    [folder] = visible(settings)
    assert_complete(folder, "old")  # killed while staging: the old directory is untouched
    kill_mid_publish(settings, tmp_path, "marker" if remote else "swap")
    if remote:  # every new file uploaded, no marker: readers still see the old version, whole
        [folder] = visible(settings)
        assert_complete(folder, "old")
        assert leftovers(settings)
    else:
        assert visible(settings) == []  # killed between the two renames: no directory, never a partial one
    pub.publish(settings, D)
    [folder] = visible(settings)
    assert_complete(folder, "new")
    assert leftovers(settings) == []
