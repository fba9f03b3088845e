"""The CLI: every failure is a non-zero exit with a one-line reason."""

from __future__ import annotations

import subprocess
import sys

import pytest

from contactrank.cli import build_parser, main


def test_every_contract_command_exists() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for cmd in [
        "simulate",
        "run",
        "ingest",
        "features",
        "train",
        "score",
        "publish",
        "backfill",
        "tune",
        "promote",
        "erase",
    ]:
        assert cmd in sub.choices


def test_bad_date_is_refused() -> None:
    with pytest.raises(SystemExit) as exc:
        main(["ingest", "--date", "../../etc"])
    assert exc.value.code != 0


def test_missing_landing_is_a_one_line_failure(tmp_path) -> None:
    env = {"CONTACTRANK_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "contactrank.cli",
            "ingest",
            "--date",
            "2026-01-05",
            "--landing",
            str(tmp_path / "nope"),
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("contactrank ingest:") and "nope" in last


def test_a_failure_names_its_log_file_under_the_home(tmp_path) -> None:
    env = {"CONTACTRANK_HOME": str(tmp_path / "home"), "PATH": "/usr/bin:/bin"}
    cmd = [sys.executable, "-m", "contactrank.cli", "ingest", "--date", "2026-01-05"]
    cmd += ["--landing", str(tmp_path / "nope")]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path)
    assert proc.returncode == 1 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    logs = list((tmp_path / "home" / "logs").glob("ingest-*.log"))
    assert len(logs) == 1
    assert lines[-1].endswith(f"(log: {logs[0]})")
    assert "ingest failed" in logs[0].read_text()
    # the terminal shows no log records without -v, and shows them with it
    assert not any(" INFO " in line or " WARNING " in line for line in lines)
    verbose = subprocess.run(
        [sys.executable, "-m", "contactrank.cli", "-v", *cmd[3:]], capture_output=True, text=True, env=env
    )
    assert verbose.returncode == 1 and "ingest failed" in verbose.stderr
