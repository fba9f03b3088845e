"""bench/judge_rescore.py: the paired difference of two files' rank-1 picks on the same persons."""

from __future__ import annotations

import pandas as pd
import pytest
from helpers.bench import bench_module

rescore = bench_module("judge_rescore")


def test_the_paired_difference_counts_only_persons_both_files_list():
    before = pd.DataFrame(
        {"contact_id": ["x", "y", "z"], "hour": [9, 19, 13], "p": [0.2, 0.4, 0.3]}, index=["a", "b", "c"]
    )
    # a moved to 10h and gained .1; b is the same pick; c is gone; d is new (not compared)
    after = pd.DataFrame(
        {"contact_id": ["x", "y", "w"], "hour": [10, 19, 9], "p": [0.3, 0.4, 0.9]}, index=["a", "b", "d"]
    )
    mean, se, moved = rescore.paired(before, after, gap=0.5)
    assert mean == pytest.approx((0.1 / 0.5 + 0.0) / 2)
    assert se == pytest.approx(pd.Series([0.2, 0.0]).std(ddof=1) / 2**0.5)
    assert moved == 0.5


def test_the_copy_stops_before_it_fills_the_disk(tmp_path, monkeypatch):
    source = tmp_path / "home"
    (source / "lake").mkdir(parents=True)
    (source / "lake" / "part-0.parquet").write_bytes(b"x" * 1000)
    (source / "landing").symlink_to(tmp_path)  # links are copied as links, not followed
    out = tmp_path / "out"  # not there yet: the copy makes it
    rescore.copy_home(source, out / "home")
    assert (out / "home" / "lake" / "part-0.parquet").read_bytes() == b"x" * 1000
    assert (out / "home" / "landing").is_symlink()

    usage = type("usage", (), {"free": 1100})()  # room for the copy, not for what the run writes
    monkeypatch.setattr(rescore.shutil, "disk_usage", lambda path: usage)
    with pytest.raises(SystemExit, match=r"GB free, copying .*home.* needs about"):
        rescore.copy_home(source, out / "home")
    assert not (out / "home").exists()  # the old copy is gone, no half copy is left
