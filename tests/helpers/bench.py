"""The benchmark scripts of bench/ as modules, for the tests of their figures.

The scripts import each other by name from their own folder (as when run as `python bench/x.py`),
so that folder goes on the path here, in one place, rather than in each test.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

BENCH = Path(__file__).resolve().parents[2] / "bench"


def bench_module(name: str) -> ModuleType:
    if str(BENCH) not in sys.path:
        sys.path.insert(0, str(BENCH))
    return importlib.import_module(name)
