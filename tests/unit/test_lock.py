"""The home lock: one mutating command at a time, a waiter names the holder, a dead holder frees it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from contactrank.cli import main
from contactrank.errors import HomeBusy
from contactrank.lock import holder, home_lock
from contactrank.settings import load_settings

HOLD = """
import sys, time
from contactrank.lock import home_lock
from contactrank.settings import load_settings
with home_lock(load_settings(home=sys.argv[1]), "features 2026-01-05"):
    print("held", flush=True)
    time.sleep(60)
"""


@pytest.fixture
def held(tmp_path: Path):
    """Another process holding the lock of the home tmp_path/home."""
    home = tmp_path / "home"
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(home)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield home, proc
    proc.kill()
    proc.wait()


def test_a_second_command_waits_then_names_the_holder(held) -> None:
    home, proc = held
    t0 = time.monotonic()
    with pytest.raises(HomeBusy) as err, home_lock(load_settings(home=home), "erase", wait_seconds=0.5):
        pass
    assert time.monotonic() - t0 >= 0.5
    assert f"pid={proc.pid}" in str(err.value) and "step=features 2026-01-05" in str(err.value)
    assert str(err.value).startswith("home busy: ")


def test_the_cli_exits_non_zero_with_the_reason(held, capsys, monkeypatch) -> None:
    home, proc = held
    monkeypatch.setenv("CONTACTRANK_HOME", str(home))
    monkeypatch.setenv("CONTACTRANK_LOCK_WAIT_SECONDS", "0.2")
    assert main(["run", "--date", "2026-01-05"]) == 1
    assert f"home busy: pid={proc.pid}" in capsys.readouterr().err


def test_a_killed_holder_frees_the_home(held) -> None:
    home, proc = held
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with home_lock(load_settings(home=home), "erase", wait_seconds=2):
        assert f"pid={os.getpid()}" in holder(load_settings(home=home))


def test_the_holder_takes_it_again_without_waiting(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path)
    with home_lock(s, "run 2026-01-05", wait_seconds=0):
        with home_lock(s, "ingest 2026-01-05", wait_seconds=0):
            assert "step=ingest 2026-01-05" in holder(s)
        # still held after the inner step: another process cannot take it
        probe = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys; from contactrank.lock import home_lock;"
                "from contactrank.settings import load_settings as l\n"
                "try:\n  home_lock(l(home=sys.argv[1]), 'x', wait_seconds=0).__enter__(); print('got')\n"
                "except Exception as e: print(type(e).__name__)",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert probe.stdout.strip() == "HomeBusy"
    assert holder(s) == ""  # released: the file no longer names anyone
