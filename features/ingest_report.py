"""What ingest found for one date: per kind files, rows read/kept/deduped/quarantined and why, and
the threshold check on each kind's quarantined share.

The share is per kind: a day's few contacts or suppressions rows are not diluted by its attempts,
and an unreadable attempts file is not hidden by good contacts. Attempts quarantined as
``duplicate_of_earlier_date`` are already in the lake: they count in the report, not in the share.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from contactrank.errors import QuarantineThresholdExceeded
from contactrank.features.landing_rules import IngestDay
from contactrank.features.schema import KINDS

NOT_LOST = ("duplicate_of_earlier_date",)  # quarantined, but the row is in the lake already


@dataclass
class KindResult:
    """What the files of one kind gave: clean and quarantined tables, and the counts for the report."""

    clean: list[pa.Table] = field(default_factory=list)
    quarantine: list[pa.Table] = field(default_factory=list)
    files: int = 0
    read: int = 0
    quarantined: int = 0
    reasons: Counter = field(default_factory=Counter)
    unreadable: list[dict[str, Any]] = field(default_factory=list)
    first_bad_file: str | None = None
    sizes: list[int] = field(default_factory=list)  # rows of each file whose size is known
    unsized: list[dict[str, Any]] = field(default_factory=list)  # unreadable files of unknown size
    dropped_columns: list[dict[str, str]] = field(default_factory=list)
    found_ids: list[pa.Table] = field(default_factory=list)  # suppressions: ids in failed rows

    @property
    def lost(self) -> int:
        """Quarantined rows whose content is not in the lake."""
        return self.quarantined - sum(self.reasons[r] for r in NOT_LOST)


def ingest_report(
    day: IngestDay, results: dict[str, KindResult], kept: dict[str, tuple[pa.Table, int]]
) -> dict[str, Any]:
    """The ingest report of D: per kind files, rows read/kept/deduped/quarantined and why."""
    kinds, shares = {}, {}
    read = quarantined = 0
    reasons: Counter = Counter()
    first_bad = None
    dropped = []
    for kind in KINDS:
        result = results[kind]
        table, deduped = kept[kind]
        kinds[kind] = {
            "files": result.files,
            "read": result.read,
            "kept": table.num_rows,
            "deduped": deduped,
            "quarantined": result.quarantined,
            "quarantined_by_reason": dict(sorted(result.reasons.items())),
            "unreadable_files": result.unreadable,
        }
        shares[kind] = {
            "quarantined_share": round(result.lost / result.read, 6) if result.read else 0.0,
            "top_reason": _top(result.reasons),
            "first_bad_file": result.first_bad_file,
        }
        dropped += [{"kind": kind, **c} for c in result.dropped_columns]
        read += result.read
        quarantined += result.lost
        reasons.update(result.reasons)
        first_bad = first_bad or result.first_bad_file
    return {
        "date": day.d.isoformat(),
        "landing": str(day.landing),
        "kinds": kinds,
        "shares": shares,  # what the threshold is checked on
        "dropped_columns": dropped,
        "read": read,
        "quarantined": quarantined,
        "quarantined_share": round(quarantined / read, 6) if read else 0.0,
        "threshold": day.settings.quarantine_threshold,
        "top_reason": _top(reasons),
        "first_bad_file": first_bad,
    }


def _top(reasons: Counter) -> str | None:
    lost = Counter({r: c for r, c in reasons.items() if r not in NOT_LOST and c})
    return lost.most_common(1)[0][0] if lost else None


def raise_above_threshold(report: dict[str, Any]) -> None:
    """QuarantineThresholdExceeded for the kind with the largest share above the threshold."""
    threshold = report["threshold"]
    over = [(k["quarantined_share"], name) for name, k in report["shares"].items()]
    share, kind = max(over, default=(0.0, None))
    if kind is None or share <= threshold:
        return
    k = report["shares"][kind]
    raise QuarantineThresholdExceeded(
        f"{share:.1%} of the {kind} rows of {report['date']} were quarantined "
        f"(threshold {threshold:.1%}); top reason {k['top_reason']!r}; first file {k['first_bad_file']}"
    )
