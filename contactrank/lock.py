"""One lock per home: mutating commands and DAG tasks never interleave on the same lake and registry.

An OS file lock (``flock`` on ``<home>/.lock``) is held for a whole step (or a whole ``run``/erasure);
the lock file names the holder (pid, step, since when) so that a waiter can say who it waits for.
The OS releases the lock when its process dies, so a killed run never leaves the home locked.
A process that already holds the lock takes it again without waiting (a ``run`` holds it across
its steps and each step takes it too).
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from contactrank.errors import HomeBusy
from contactrank.settings import Settings

LOCK_FILE = ".lock"
_POLL_SECONDS = 0.2

_held: dict[Path, tuple[int, int]] = {}  # lock path -> (fd, depth) held by this process
_guard = threading.Lock()


def lock_path(settings: Settings) -> Path:
    return Path(settings.home).resolve() / LOCK_FILE


def holder(settings: Settings) -> str:
    """What the lock file says about its holder (empty when nobody ever held it)."""
    try:
        return lock_path(settings).read_text().strip()
    except OSError:
        return ""


@contextmanager
def home_lock(settings: Settings, step: str, wait_seconds: float | None = None) -> Iterator[None]:
    """Hold the home's lock for ``step``; wait up to ``wait_seconds`` (default: the setting) for it,
    then raise ``HomeBusy`` naming the holder."""
    path = lock_path(settings)
    with _guard:
        if path in _held:
            fd, depth = _held[path]
            _held[path] = (fd, depth + 1)
            _describe(fd, step)
            reentered = True
        else:
            reentered = False
    if reentered:
        try:
            yield
        finally:
            with _guard:
                fd, depth = _held[path]
                _held[path] = (fd, depth - 1)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        _acquire(fd, settings, step, settings.lock_wait_seconds if wait_seconds is None else wait_seconds)
        _describe(fd, step)
        with _guard:
            _held[path] = (fd, 1)
        try:
            yield
        finally:
            with _guard:
                _held.pop(path, None)
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(fd: int, settings: Settings, step: str, wait_seconds: float) -> None:
    deadline = time.monotonic() + max(0.0, wait_seconds)
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() >= deadline:
                who = holder(settings) or "another process"
                raise HomeBusy(f"home busy: {who} ({step} waited {wait_seconds:.0f} s)") from None
            time.sleep(_POLL_SECONDS)


def _describe(fd: int, step: str) -> None:
    since = datetime.now(UTC).isoformat(timespec="seconds")
    text = f"pid={os.getpid()} step={step} since={since}\n".encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, text, 0)
