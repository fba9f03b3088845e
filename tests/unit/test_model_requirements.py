"""The check of a model's pinned requirements against this environment, by package name."""

from __future__ import annotations

import importlib.metadata

from contactrank.ml.registry import requirement_mismatches


def test_pins_this_environment_satisfies_give_no_mismatch() -> None:
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in ("numpy", "pandas", "lightgbm")]
    assert requirement_mismatches(pins + ["", "# a comment", "-r other.txt"]) == []


def test_a_different_version_and_a_missing_package_are_named() -> None:
    found = requirement_mismatches(["numpy==0.0.1", "surely-not-installed-pkg==1.0", "pandas"])
    assert found[0] == f"numpy==0.0.1 (installed {importlib.metadata.version('numpy')})"
    assert found[1] == "surely-not-installed-pkg==1.0 (not installed)"
    assert len(found) == 2


def test_paths_urls_and_other_platforms_are_skipped() -> None:
    lines = ["./wheels/x.whl", "numpy==0.0.1; python_version < '3'", "git+https://example.org/x.git"]
    assert requirement_mismatches(lines) == []
