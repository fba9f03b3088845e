"""Persons split into shards give the same export as one process, byte for byte.

A world of 500 persons over 5 days is run day by day through the real CLI (subprocesses, real
DuckDB, LightGBM and MLflow on SQLite) once unsharded and once with 4 shards, the last day with
its shards in 2 worker processes. Every export must be the same file; the lake's feature and
training rows the same rows; an erasure must reach the shards' partitions; an erasure recorded
between the shards' parts and the commit must still keep the person out of the export.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from helpers.fast_pipeline import FAST

from contactrank.features.simulate import simulate

pytestmark = pytest.mark.slow

START = date(2026, 2, 2)
DAYS = 5
LAST = START + timedelta(days=DAYS - 1)


def _env(home: Path, landing: Path, shards: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTACTRANK_", "MLFLOW_"))}
    env.update(FAST)
    env.update(
        CONTACTRANK_HOME=str(home),
        CONTACTRANK_LANDING_DIR=str(landing),
        CONTACTRANK_CONFIG=str(home / "absent.toml"),
        CONTACTRANK_SHARDS=str(shards),
        GIT_PYTHON_REFRESH="quiet",
    )
    return env


def _cli(home: Path, landing: Path, shards: int, *args: str) -> None:
    cmd = [sys.executable, "-m", "contactrank.cli", *args]
    proc = subprocess.run(
        cmd, env=_env(home, landing, shards), capture_output=True, text=True, cwd=home.parent
    )
    assert proc.returncode == 0, f"{' '.join(args)} failed: {proc.stderr[-3000:]}"


def _run(base: Path, landing: Path, shards: int) -> Path:
    home = base / f"shards-{shards}"
    home.mkdir()
    for i in range(DAYS):
        d = (START + timedelta(days=i)).isoformat()
        workers = ("--workers", "2") if shards > 1 and i == DAYS - 1 else ()
        _cli(home, landing, shards, "run", "--date", d, *workers)
    return home


@pytest.fixture(scope="module")
def homes(tmp_path_factory: pytest.TempPathFactory) -> dict[int, Path]:
    base = tmp_path_factory.mktemp("shards")
    landing = base / "landing"
    simulate(landing, START, DAYS + 1, persons=500, seed=11)
    return {"landing": landing, 1: _run(base, landing, 1), 4: _run(base, landing, 4)}


def _exports(home: Path) -> list[Path]:
    return sorted((home / "exports" / "priority").glob("date=*"))


def test_the_sharded_exports_are_the_unsharded_files(homes) -> None:
    whole, sharded = _exports(homes[1]), _exports(homes[4])
    assert [p.name for p in whole] == [p.name for p in sharded] and len(whole) >= 2
    for a, b in zip(whole, sharded, strict=True):
        for name in ("priority.parquet", "priority.csv"):
            assert (a / name).read_bytes() == (b / name).read_bytes(), f"{b.name}/{name} differs"


def test_the_lake_holds_the_same_rows_split_by_person(homes) -> None:
    from contactrank.shards import shard_of

    for kind, key in (("features", ["person_id", "contact_id"]), ("training", ["attempt_id"])):
        whole = pq.read_table(homes[1] / "lake" / kind / f"date={LAST}" / "part-0.parquet").to_pandas()
        parts = []
        for k in range(4):
            part = pq.read_table(
                homes[4] / "lake" / kind / f"shard={k}-of-4" / f"date={LAST}" / "part-0.parquet"
            )
            ids = part.column("person_id").to_pylist()
            assert {shard_of(p, 4) for p in ids} <= {k}, f"{kind}: a person in the wrong shard"
            parts.append(part.to_pandas())
        split = pd.concat(parts).sort_values(key, ignore_index=True)
        pd.testing.assert_frame_equal(whole.sort_values(key, ignore_index=True), split, check_dtype=False)
    assert not (homes[4] / "lake" / "features" / f"date={LAST}").exists()  # nothing whole beside the split


def test_an_erasure_reaches_every_shard(homes, tmp_path) -> None:
    home = tmp_path / "home"
    shutil.copytree(homes[4], home)
    person = (
        pq.read_table(home / "exports" / "priority" / f"date={LAST}" / "priority.parquet")
        .column("person_id")[0]
        .as_py()
    )
    # the command fails when any file still names the person
    _cli(home, homes["landing"], 4, "erase", "--person-id", person)
    for path in (home / "lake").rglob("*.parquet"):
        table = pq.read_table(path)
        if "person_id" in table.column_names:
            assert person not in set(table.column("person_id").to_pylist()), path


def test_an_erasure_between_the_parts_and_the_commit_keeps_the_person_out(homes, tmp_path) -> None:
    from contactrank.erasure_records import record_erasure
    from contactrank.ml.publish import publish_commit, publish_part
    from contactrank.privacy import keyed_hash
    from contactrank.settings import load_settings
    from contactrank.shards import all_shards

    home = tmp_path / "home"
    shutil.copytree(homes[4], home)
    settings = load_settings(home=home, shards=4, landing_dir=homes["landing"])
    for shard in all_shards(4):
        publish_part(settings, LAST, shard)
    person = (
        pq.read_table(home / "exports" / "priority" / f"date={LAST}" / "priority.parquet")
        .column("person_id")[0]
        .as_py()
    )
    record_erasure(settings, keyed_hash(settings, person))  # the erasure's first act: its record
    manifest = publish_commit(settings, LAST)
    published = pq.read_table(home / "exports" / "priority" / f"date={LAST}" / "priority.parquet")
    assert person not in set(published.column("person_id").to_pylist())
    assert manifest["persons_left_out"]["erasure"] == 1
