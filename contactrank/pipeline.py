"""The daily pipeline as plain function calls: what `contactrank run` and `backfill` execute.

The Airflow DAG `contact_daily` calls the same stages (``contactrank.stages.STAGES``), one task each,
through ``run_step``.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from contactrank.dates import date_range
from contactrank.errors import NotReady
from contactrank.lock import home_lock
from contactrank.settings import Settings
from contactrank.shards import Shard
from contactrank.stages import STAGE_NAMES, stage, whole_part

log = logging.getLogger(__name__)

STEPS = STAGE_NAMES


def run_step(step: str, settings: Settings, d: date, landing: Path | None = None) -> dict[str, Any]:
    """Run one named step for date ``d`` under the home's lock; the stage's module is imported here,
    when it runs."""
    module, _, name = stage(step).function.partition(":")
    function = getattr(importlib.import_module(module), name)
    with home_lock(settings, f"{step} {d.isoformat()}"):
        result = function(settings, d, landing=landing) if step == "ingest" else function(settings, d)
    return result if isinstance(result, dict) else {step: str(result)}


def run_part(step: str, part: str, settings: Settings, d: date, shard: int | None = None) -> dict[str, Any]:
    """One task of a stage split by shards (``Stage.parts``; the DAG maps the per-shard ones over
    ``range(settings.shards)``), under the home's lock.

    With one shard one part (``stages.whole_part``) runs the whole stage (``run_step``: byte for
    byte what an unsharded run does) and the other parts have nothing to do.
    """
    spec = stage(step)
    chosen = next((p for p in spec.parts if p.name == part), None)
    if chosen is None:
        raise ValueError(f"step {step!r} has no part {part!r} (parts: {[p.name for p in spec.parts]})")
    if settings.shards == 1:
        whole = whole_part(spec)
        if chosen is whole and not shard:
            return run_step(step, settings, d)
        return {"status": "skipped", "reason": f"one shard: {step} runs whole in its {whole.name} task"}
    if chosen.per_shard and shard is None:
        raise ValueError(f"{step}.{part} runs per shard: give the shard (0..{settings.shards - 1})")
    module, _, name = chosen.function.partition(":")
    function = getattr(importlib.import_module(module), name)
    which = Shard(shard, settings.shards) if chosen.per_shard else None
    with home_lock(settings, f"{step}.{part} {d.isoformat()}" + (f" {which}" if which else "")):
        return function(settings, d, which) if which else function(settings, d)


def run_date(
    settings: Settings,
    d: date,
    landing: Path | None = None,
    on_step: Callable[[str], None] | None = None,
    steps: tuple[str, ...] = STEPS,
    on_done: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Every step for one date, in order; stops at the first failure (the exception propagates).

    ``on_step(step)`` is called before each step and ``on_done(step, result)`` after it.
    Before the first champion exists (the first days of history), scoring raises NotReady: the
    run then skips the stages that need a champion for that date and still writes the report.
    Their results say why and carry ``not_ready: True``, so that a caller running many days
    says it once rather than once a day (the log has it for every date).
    """
    with home_lock(settings, f"run {d.isoformat()}"):  # a day's steps never interleave with another command
        return _run_steps(settings, d, landing, on_step, steps, on_done)


def _run_steps(
    settings: Settings,
    d: date,
    landing: Path | None,
    on_step: Callable[[str], None] | None,
    steps: tuple[str, ...],
    on_done: Callable[[str, dict[str, Any]], None] | None = None,
) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    not_ready: str | None = None
    for step in steps:
        if on_step:
            on_step(step)
        if not_ready and stage(step).needs_champion:
            results[step] = {"status": "skipped", "reason": not_ready, "not_ready": True}
        else:
            log.info("%s: %s", d, step)
            try:
                results[step] = run_step(step, settings, d, landing)
            except NotReady as exc:
                if not stage(step).needs_champion:
                    raise
                not_ready = str(exc)
                log.info("%s: nothing scored or published: %s", d, exc)
                results[step] = {"status": "skipped", "reason": not_ready, "not_ready": True}
        if on_done:
            on_done(step, results[step])
    return results


def backfill(
    settings: Settings,
    start: date,
    end: date,
    landing: Path | None = None,
    on_step: Callable[[date, str], None] | None = None,
    on_day: Callable[[date, dict[str, dict[str, Any]]], None] | None = None,
) -> dict[str, dict[str, dict[str, Any]]]:
    """``run_date`` for every date from start to end, in order (a day depends on the day before);
    ``on_day(d, results)`` after each date."""
    out = {}
    for d in date_range(start, end):
        out[d.isoformat()] = run_date(
            settings, d, landing, on_step=(lambda s, d=d: on_step(d, s)) if on_step else None
        )
        if on_day:
            on_day(d, out[d.isoformat()])
    return out
