"""Importers: map public contact-outcome datasets onto the landing files of docs/contract.md §1.

``contactrank import <name> PATH --landing DIR`` calls :func:`import_dataset`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contactrank.errors import InputError
from contactrank.features.importers.bank_marketing import import_bank_marketing

DATASETS = ("bank-marketing",)


def import_dataset(name: str, path: Path, landing: Path) -> dict[str, Any]:
    """Write the landing files of dataset ``name`` read from ``path`` into ``landing``; return figures."""
    if name == "bank-marketing":
        return import_bank_marketing(Path(path), Path(landing))
    raise InputError(f"unknown dataset {name!r}: expected one of {', '.join(DATASETS)}")
