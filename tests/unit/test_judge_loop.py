"""bench/judge_loop.py: the last file a pipeline arm followed, judged against the truth."""

from __future__ import annotations

from datetime import date

from helpers.bench import bench_module

loop = bench_module("judge_loop")


def _export(home, d: str) -> None:
    folder = home / "exports" / "priority" / f"date={d}"
    folder.mkdir(parents=True)
    (folder / "priority.parquet").write_bytes(b"")


def test_the_newest_export_is_judged_and_its_figures_named(tmp_path, monkeypatch):
    landing, home = tmp_path / "landing", tmp_path / "home"
    landing.mkdir()
    (landing / "truth.parquet").write_bytes(b"")
    for d in ("2026-10-28", "2026-10-29", "2026-10-09"):
        _export(home, d)
    judged = []

    def judge_run(landing_, home_, d, ceiling=True):
        judged.append((landing_, home_, d, ceiling))
        figures = {"capture": 0.4, "hour": 0.2, "ece": 0.07, "score_over_truth_rank1": 1.2, "dead": 0.03}
        return {"arms": {"contactrank": figures}}

    monkeypatch.setattr(loop.judge, "judge_run", judge_run)
    out = loop.last_file_figures(landing, home)
    assert judged == [(landing, home, date(2026, 10, 29), False)]
    assert out == {
        "last_file_capture": 0.4,
        "last_file_hour": 0.2,
        "last_file_ece": 0.07,
        "last_file_score_over_truth_rank1": 1.2,
    }


def test_nothing_to_judge_without_an_export_or_a_truth(tmp_path):
    landing, home = tmp_path / "landing", tmp_path / "home"
    landing.mkdir()
    assert loop.last_file_figures(landing, home) == {}
    _export(home, "2026-10-29")
    assert loop.last_file_figures(landing, home) == {}  # no truth.parquet
