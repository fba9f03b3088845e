"""CLI guards: a --date far after the newest data is refused unless asked for."""

from __future__ import annotations

from pathlib import Path

from contactrank.cli import main


def _landing(home: Path, day: str) -> None:
    folder = home / "landing" / "attempts" / f"date={day}"
    folder.mkdir(parents=True)
    (folder / "part-0.csv").write_text("attempt_id\n")


def test_a_date_far_after_the_newest_data_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CONTACTRANK_HOME", str(tmp_path))
    _landing(tmp_path, "2026-01-10")
    assert main(["features", "--date", "2062-01-10"]) == 1
    err = capsys.readouterr().err
    assert "days after the newest data (2026-01-10)" in err and "--allow-future" in err


def test_allow_future_and_a_near_date_pass_the_guard(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CONTACTRANK_HOME", str(tmp_path))
    _landing(tmp_path, "2026-01-10")
    # the guard lets these through; what follows (no lake yet) fails for its own reason
    for argv in (
        ["features", "--date", "2026-01-12"],
        ["features", "--date", "2062-01-10", "--allow-future"],
    ):
        main(argv)
        assert "newest data" not in capsys.readouterr().err


def test_the_world_choices_are_the_simulators_presets() -> None:
    from contactrank.cli import WORLD_NAMES
    from contactrank.features.simulated_world import WORLDS

    assert set(WORLD_NAMES) == set(WORLDS)
