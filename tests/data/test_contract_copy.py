"""The project's copy of the external contract says the same as the binding one, and the code agrees."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from contactrank.features.schema import PRIORITY

ROOT = Path(__file__).resolve().parents[2]
COPY = ROOT / "docs" / "contract.md"
BINDING = ROOT.parent / "shared" / "CONTRACT.md"


def test_the_copy_equals_the_binding_contract() -> None:
    if not BINDING.is_file():
        pytest.skip(f"{BINDING} is absent: only the project's copy can be checked")
    assert COPY.read_text() == BINDING.read_text(), "docs/contract.md differs from the binding contract"


def test_nothing_cites_a_contract_outside_the_repo() -> None:
    hits = []
    for path in ROOT.rglob("*"):
        if (
            path.suffix not in {".py", ".md", ".toml", ".yml"}
            or ".venv" in path.parts
            or ".git" in path.parts
        ):
            continue
        if path in (COPY, Path(__file__)):
            continue
        for i, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if re.search(r"shared/CONTRACT\.md|(?<![/\w])CONTRACT\.md", line):
                hits.append(f"{path.relative_to(ROOT)}:{i}")
    assert not hits, "cite docs/contract.md instead:\n" + "\n".join(hits)


def test_the_export_columns_are_the_contracts() -> None:
    section = COPY.read_text().split("## 2.")[1].split("## 3.")[0]
    table = [
        line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| column")
    ]
    columns = [line.split("|")[1].strip() for line in table if not set(line) <= set("|- ")]
    assert PRIORITY.names == columns
