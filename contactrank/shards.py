"""Persons split into shards by a stable hash of ``person_id``, for steps that run one shard per worker.

A person's shard is the first 32 bits of the MD5 of their ``person_id`` modulo the number of shards:
the same in DuckDB and in Python, on every machine and version (a built-in ``hash()`` promises
neither), and independent of how the rows are ordered or batched. Every feature and score is
computed per person, so a shard never needs another shard's rows; what is shared (population rates,
the training sample, the export's manifest) is one reduce step.

A shard's partitions live beside the unsharded ones, under ``<kind>/shard=K-of-N/date=D``: the
number of shards is part of the name, so a change of ``shards`` never mixes two splits.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import re
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

_FOLDER = re.compile(r"^shard=(\d+)-of-(\d+)$")


@dataclass(frozen=True)
class Shard:
    index: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1 or not 0 <= self.index < self.count:
            raise ValueError(f"shard {self.index} of {self.count} does not exist")

    @property
    def folder(self) -> str:
        return f"shard={self.index}-of-{self.count}"

    def kind(self, kind: str) -> str:
        """The lake table ``kind`` of this shard (``features`` -> ``features/shard=2-of-4``)."""
        return f"{kind}/{self.folder}"

    def predicate(self, column: str = "person_id") -> str:
        """SQL: true for the rows of ``column``'s persons that belong to this shard."""
        return f"(('0x' || left(md5({column}), 8))::UBIGINT % {self.count} = {self.index})"

    def __str__(self) -> str:
        return f"shard {self.index + 1} of {self.count}"


def sharded(kind: str, shard: Shard | None) -> str:
    """The lake table ``kind`` of ``shard``, or the whole ``kind`` when there is none."""
    return shard.kind(kind) if shard is not None else kind


def all_shards(count: int) -> list[Shard]:
    return [Shard(i, count) for i in range(count)]


def shard_of(person_id: str, count: int) -> int:
    """The shard of one person (what ``Shard.predicate`` computes in SQL)."""
    return int(hashlib.md5(person_id.encode("utf-8")).hexdigest()[:8], 16) % count


def parse_folder(name: str) -> Shard | None:
    """The shard a folder name ``shard=K-of-N`` names, or None."""
    match = _FOLDER.match(name)
    if not match:
        return None
    index, count = int(match.group(1)), int(match.group(2))
    return Shard(index, count) if 0 <= index < count else None


def map_shards(
    function: Callable[..., Any], settings: Any, d: Any, *args: Any, workers: int = 1
) -> list[Any]:
    """``function(settings, d, shard, *args)`` for every shard of ``settings.shards``, in shard order:
    in this process, or in ``workers`` processes (a module-level function; its arguments pickle).

    Spawned, not forked: a fork copies DuckDB's and Arrow's thread pools in whatever state they are.
    """
    shards = all_shards(settings.shards)
    if workers <= 1 or len(shards) == 1:
        return [function(settings, d, shard, *args) for shard in shards]
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(workers, len(shards)), mp_context=context) as pool:
        futures = [pool.submit(function, settings, d, shard, *args) for shard in shards]
        return [future.result() for future in futures]
