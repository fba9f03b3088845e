"""Landing files for ingest tests: good attempt rows, a CSV writer, and readers of what ingest stored."""

from __future__ import annotations

import csv
from datetime import date
from pathlib import Path

from contactrank.features.lake import read_partition
from contactrank.features.schema import ATTEMPT_LANDING_COLUMNS

D = date(2026, 1, 3)
ATT_COLS = list(ATTEMPT_LANDING_COLUMNS)


def good_rows(n: int = 40) -> list[dict[str, str]]:
    return [
        {
            "attempt_id": f"A{i:04d}",
            "person_id": f"P{i % 7}",
            "contact_id": f"+551199999{i:04d}",
            "channel": "voice",
            "attempted_at": f"2026-01-03T{8 + i % 12:02d}:15:00-03:00",
            "outcome": "no_answer",
            "campaign_id": "C1",
            "duration_s": "",
        }
        for i in range(n)
    ]


def write_csv(
    landing: Path,
    kind: str,
    rows: list[dict[str, str]],
    name: str = "part-0.csv",
    d: date = D,
    columns: list[str] | None = None,
) -> Path:
    folder = landing / kind / f"date={d.isoformat()}"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    columns = columns or list(rows[0])
    with path.open("w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns, extrasaction="ignore")
        w.writeheader()
        w.writerows(rows)
    return path


def quarantine(settings, kind: str, d: date = D) -> list[dict]:
    t = read_partition(settings, f"quarantine/{kind}", d)
    return [] if t is None else t.to_pylist()


def attempts(settings, d: date = D) -> list[dict]:
    return read_partition(settings, "attempts", d).to_pylist()
