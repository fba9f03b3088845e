"""Working through the lake one range of persons at a time, and writing query results to Parquet.

The state and the features are computed for one range of person_id at a time, so joins and
aggregates stay in memory (no spilling) whatever the history size. Every computation is per
person, so a range never needs another range's rows.
"""

from __future__ import annotations

import math
import queue
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

import pyarrow as pa
import pyarrow.parquet as pq

from contactrank.features import sql
from contactrank.shards import Shard

CHUNK_PAIRS = 1_000_000  # (person, contact) rows per range of persons


class Bounds(NamedTuple):
    """The persons of a range: person_id in [lo, hi) (None is open), and of ``shard`` when given."""

    lo: str | None
    hi: str | None
    shard: Shard | None = None


def copy_to_parquet(con, query: str, path: Path) -> None:
    con.execute(f"COPY ({query}) TO {sql.quote_literal(path)} (FORMAT parquet, COMPRESSION zstd)")


def parquet_rows(path: Path) -> int:
    return pq.ParquetFile(path).metadata.num_rows


def person_ranges(con, *files: Path | None, rows: int = 0, shard: Shard | None = None) -> list[Bounds]:
    """Ranges of person_id holding at most ~CHUNK_PAIRS rows of the largest of ``files`` each
    (of its rows in ``shard``, when given: a shard holds about 1/N of every file's persons).

    Outputs are written range after range, unsorted within a range (sorting 80 columns costs more
    than it saves): each row group then lies inside one person range, so a reader of one range
    skips the other row groups.
    """
    sizes = [(parquet_rows(f), f) for f in files if f is not None and f.is_file()]
    share = shard.count if shard is not None else 1
    n = max(1, math.ceil(max([rows, *(r for r, _ in sizes)]) / share / CHUNK_PAIRS))
    if n == 1 or not sizes:
        return [Bounds(None, None, shard)]
    biggest = max(sizes)[1]
    fractions = ", ".join(str(i / n) for i in range(1, n))
    relation = sql.read_parquet(biggest, hive_partitioning="false")
    cuts = con.execute(f"SELECT quantile_disc(person_id, [{fractions}]) FROM {relation}").fetchall()[0][0]
    cuts = sorted({c for c in cuts if c is not None})
    edges: list[str | None] = [None, *cuts, None]
    return [Bounds(lo, hi, shard) for lo, hi in zip(edges[:-1], edges[1:], strict=True)]


def in_range(relation: str, bounds: Bounds) -> str:
    """The rows of ``relation`` whose person_id lies in [lo, hi) (and in the shard, if any)."""
    lo, hi, shard = bounds
    cond = [
        f"person_id >= {sql.quote_literal(lo)}" if lo is not None else "",
        f"person_id < {sql.quote_literal(hi)}" if hi is not None else "",
        shard.predicate() if shard is not None else "",
    ]
    cond = [c for c in cond if c]
    return relation if not cond else f"(SELECT * FROM {relation} WHERE {' AND '.join(cond)})"


def stream_to_parquet(con, queries: Iterable[str], path: Path) -> int:
    """Write the results of ``queries``, one after the other, into one Parquet file; returns the rows.

    A writer thread encodes and compresses each batch while DuckDB computes the next one (both
    release the GIL), so the two cores are busy even where a query runs on one; the bounded queue
    keeps at most a few batches in memory.
    """
    batches: queue.Queue = queue.Queue(maxsize=4)
    failed: list[BaseException] = []
    rows = 0

    def write() -> None:
        writer = None
        try:
            while (batch := batches.get()) is not None:
                if writer is None:
                    writer = pq.ParquetWriter(path, batch.schema, compression="zstd")
                if batch.num_rows:
                    writer.write_batch(batch)
        except BaseException as exc:  # re-raised in the caller's thread
            failed.append(exc)
            while batches.get() is not None:  # drain: the producer must never block on a full queue
                pass
        finally:
            if writer is not None:
                writer.close()

    thread = threading.Thread(target=write, name="features-writer", daemon=True)
    thread.start()
    try:
        for i, query in enumerate(queries):
            if failed:  # the writer stopped: computing more ranges would be wasted
                break
            reader = con.sql(query).arrow()
            if i == 0:  # a zero-row batch opens the file with the schema, even when no row follows
                batches.put(pa.RecordBatch.from_pylist([], schema=reader.schema))
            for batch in reader:
                if failed:
                    break
                batches.put(batch)
                rows += batch.num_rows
    finally:
        batches.put(None)
        thread.join()
    if failed:
        raise failed[0]
    return rows
