"""bench/train.py and bench/train_dask.py: their data phase runs (it once lost its import when the
synthetic training days moved to tests/helpers)."""

from __future__ import annotations

import pytest
from helpers.bench import BENCH, bench_module


@pytest.mark.parametrize("script", ["train.py", "train_dask.py"])
def test_the_data_phase_writes_its_days(tmp_path, script: str) -> None:
    run_phase = bench_module("train").run_phase
    args = ["--phase", "gen", "--home", str(tmp_path / "home"), "--rows", "2000", "--days", "12"]
    out = run_phase(str(BENCH / script), *args, "--features", "20")
    assert out["gen_s"] > 0
    assert len(list((tmp_path / "home" / "lake" / "training").iterdir())) == 12
