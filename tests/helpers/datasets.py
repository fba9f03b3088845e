"""Where the public data sets are: ``$CONTACTRANK_DATASETS``, else ``../shared/datasets`` beside the repo.

The project does not ship them (README: how to get the UCI Bank Marketing calls); tests that need
one skip with the reason when it is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def datasets_dir() -> Path:
    return Path(os.environ.get("CONTACTRANK_DATASETS") or ROOT.parent / "shared" / "datasets")


def dataset_file(*parts: str) -> Path:
    """The path of a data set file, or skip the test saying where it was looked for."""
    path = datasets_dir().joinpath(*parts)
    if not path.is_file():
        pytest.skip(f"{path} is absent (set CONTACTRANK_DATASETS or see README: the public data sets)")
    return path
