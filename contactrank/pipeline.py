"""The daily pipeline as plain function calls: what `contactrank run` and `backfill` execute.

The Airflow DAG `contact_daily` calls the same stage functions, one task each.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from contactrank.dates import date_range
from contactrank.errors import NotReady
from contactrank.settings import Settings

log = logging.getLogger(__name__)

STEPS = ("ingest", "features", "train", "gate", "score", "publish", "report")


def run_step(step: str, settings: Settings, d: date, landing: Path | None = None) -> dict[str, Any]:
    """Run one named step for date ``d`` (imports lazily: each stage pulls its own libraries)."""
    if step == "ingest":
        from contactrank.features.ingest import ingest

        return ingest(settings, d, landing=landing)
    if step == "features":
        from contactrank.features.features import build_features

        return build_features(settings, d)
    if step == "train":
        from contactrank.ml.train import train

        return train(settings, d)
    if step == "gate":
        from contactrank.ml.registry import gate

        return gate(settings, d)
    if step == "score":
        from contactrank.ml.score import score

        return score(settings, d)
    if step == "publish":
        from contactrank.ml.publish import publish

        return publish(settings, d)
    if step == "report":
        from contactrank.ml.report import report

        return {"report": str(report(settings, d))}
    raise ValueError(f"unknown step {step!r}")


def run_date(
    settings: Settings,
    d: date,
    landing: Path | None = None,
    on_step: Callable[[str], None] | None = None,
    steps: tuple[str, ...] = STEPS,
) -> dict[str, dict[str, Any]]:
    """Every step for one date, in order; stops at the first failure (the exception propagates).

    Before the first champion exists (the first days of history), scoring raises NotReady: the
    run then skips score and publish for that date, says why, and still writes the report.
    """
    results: dict[str, dict[str, Any]] = {}
    not_ready: str | None = None
    for step in steps:
        if on_step:
            on_step(step)
        if not_ready and step in ("score", "publish"):
            results[step] = {"status": "skipped", "reason": not_ready}
            continue
        log.info("%s: %s", d, step)
        try:
            results[step] = run_step(step, settings, d, landing)
        except NotReady as exc:
            if step != "score":
                raise
            not_ready = str(exc)
            log.warning("%s: nothing scored or published: %s", d, exc)
            results[step] = {"status": "skipped", "reason": not_ready}
    return results


def backfill(
    settings: Settings,
    start: date,
    end: date,
    landing: Path | None = None,
    on_step: Callable[[date, str], None] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``run_date`` for every date from start to end, in order (a day depends on the day before)."""
    out = {}
    for d in date_range(start, end):
        out[d.isoformat()] = run_date(settings, d, landing, on_step=(lambda s, d=d: on_step(d, s)) if on_step else None)
    return out
