"""The daily stages, in order: the one definition that the CLI pipeline, the DAG and the tests read.

Each stage names its library function as ``module:function`` text rather than importing it, so
that reading the order costs nothing: the Airflow DAG file reads it at parse time, and each stage
pulls its heavy libraries only when it runs.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Part:
    """One task of a stage that runs shard by shard (``settings.shards`` > 1)."""

    name: str
    function: str  # "module:function", called as function(settings, d), or function(settings, d, shard)
    per_shard: bool = False  # one task per shard (Airflow: mapped over the shards)
    runs_whole: bool = False  # with one shard, this part runs the whole stage (default: the first part)


@dataclass(frozen=True)
class Stage:
    name: str
    function: str  # "module:function", called as function(settings, d)
    needs_champion: bool = False  # before the first champion exists the stage is skipped with the reason
    # With shards: the stage's tasks in order. The stage's own function runs the same parts in one
    # process; with one shard one part runs the whole stage (``runs_whole``, else the first) and the
    # others have nothing to do.
    parts: tuple[Part, ...] = ()


_FEATURE_SHARDS = "contactrank.features.feature_shards"


STAGES: tuple[Stage, ...] = (
    Stage("ingest", "contactrank.features.ingest:ingest"),
    Stage(
        "features",
        "contactrank.features.build:build_features",
        parts=(
            Part("prepare", f"{_FEATURE_SHARDS}:prepare_features"),
            Part("state", f"{_FEATURE_SHARDS}:build_state_shard", per_shard=True),
            Part("shared_rates", f"{_FEATURE_SHARDS}:build_shared_rates"),
            Part("rows", f"{_FEATURE_SHARDS}:build_rows_shard", per_shard=True),
        ),
    ),
    Stage("train", "contactrank.ml.train:train"),
    Stage("gate", "contactrank.ml.registry:gate"),
    Stage(
        "score",
        "contactrank.ml.score:score",
        needs_champion=True,
        parts=(Part("shard", "contactrank.ml.score:score_shard", per_shard=True),),
    ),
    Stage(
        "publish",
        "contactrank.ml.publish:publish",
        needs_champion=True,
        parts=(
            Part("part", "contactrank.ml.publish:publish_part", per_shard=True),
            # the commit's result names the export and its model, whatever the number of shards
            Part("commit", "contactrank.ml.publish:publish_commit", runs_whole=True),
        ),
    ),
    Stage("report", "contactrank.ml.report:report"),
)

STAGE_NAMES: tuple[str, ...] = tuple(s.name for s in STAGES)


def stage(name: str) -> Stage:
    """The stage called ``name``."""
    for s in STAGES:
        if s.name == name:
            return s
    raise ValueError(f"unknown step {name!r} (one of {', '.join(STAGE_NAMES)})")


def whole_part(spec: Stage) -> Part:
    """The part of ``spec`` that runs the whole stage when there is one shard."""
    return next((p for p in spec.parts if p.runs_whole), spec.parts[0])
