"""The daily stages, in order: the one definition that the CLI pipeline, the DAG and the tests read.

Each stage names its library function as ``module:function`` text rather than importing it, so
that reading the order costs nothing: the Airflow DAG file reads it at parse time, and each stage
pulls its heavy libraries only when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Stage:
    name: str
    function: str  # "module:function", called as function(settings, d)
    needs_champion: bool = False  # before the first champion exists the stage is skipped with the reason


STAGES: tuple[Stage, ...] = (
    Stage("ingest", "contactrank.features.ingest:ingest"),
    Stage("features", "contactrank.features.build:build_features"),
    Stage("train", "contactrank.ml.train:train"),
    Stage("gate", "contactrank.ml.registry:gate"),
    Stage("score", "contactrank.ml.score:score", needs_champion=True),
    Stage("publish", "contactrank.ml.publish:publish", needs_champion=True),
    Stage("report", "contactrank.ml.report:report"),
)

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)


def stage(name: str) -> Stage:
    """The stage called ``name``."""
    for s in STAGES:
        if s.name == name:
            return s
    raise ValueError(f"unknown step {name!r} (one of {', '.join(STAGE_NAMES)})")
