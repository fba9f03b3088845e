"""Training partitions as Arrow tables, kept in memory while they are small.

One training run reads the same days several times (the window's row counts, the categories, the
matrices, the drift reference), and the gate then reads its evidence days again: on a thin history
of hundreds of small days those reads, not the fit, were most of a training's cost. A table is
kept by the identity of its file (path, inode, modification time, size), so a rewritten partition
is read afresh, and the cache holds at most ``CACHE_BYTES``, least recently used out first.
Files larger than ``CACHE_FILE_BYTES`` are read as before and not kept: a day of a big call centre
is read once per run and would only push the small ones out.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from datetime import date
from pathlib import Path

import pyarrow as pa

from contactrank.features.lake import DATA_FILE, partition_dir, read_partition, read_table
from contactrank.settings import Settings

KIND = "training"
CACHE_BYTES = 256 * 2**20
CACHE_FILE_BYTES = 8 * 2**20

_tables: OrderedDict[tuple[str, int, int, int], pa.Table] = OrderedDict()
_held = 0
_lock = threading.Lock()


def training_table(settings: Settings, d: date, columns: list[str] | None = None) -> pa.Table | None:
    """The training partition of ``d`` (only ``columns`` when given), or None when it does not exist."""
    path = partition_dir(settings, KIND, d) / DATA_FILE
    if not isinstance(path, Path) or settings.shards > 1:  # a split is read (and ordered) by the lake
        return read_partition(settings, KIND, d, columns=columns)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return read_partition(settings, KIND, d, columns=columns)  # restores an interrupted write, or None
    if st.st_size > CACHE_FILE_BYTES:
        return read_table(path, columns=columns)
    key = (str(path), st.st_ino, st.st_mtime_ns, st.st_size)
    with _lock:
        table = _tables.get(key)
        if table is not None:
            _tables.move_to_end(key)
    if table is None:
        table = read_table(path)
        _keep(key, table)
    return table if columns is None else table.select(columns)


def training_schema(settings: Settings, d: date) -> pa.Schema | None:
    """The schema of the partition of ``d`` when its table is kept (None: read it from the file)."""
    path = partition_dir(settings, KIND, d) / DATA_FILE
    if not isinstance(path, Path) or settings.shards > 1:
        return None
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    with _lock:
        table = _tables.get((str(path), st.st_ino, st.st_mtime_ns, st.st_size))
    return table.schema if table is not None else None


def _keep(key: tuple[str, int, int, int], table: pa.Table) -> None:
    global _held
    with _lock:
        if key in _tables:
            return
        _tables[key] = table
        _held += table.nbytes
        while _held > CACHE_BYTES and _tables:
            _, old = _tables.popitem(last=False)
            _held -= old.nbytes


def clear() -> None:
    """Forget every kept table (tests; a process that wants its memory back)."""
    global _held
    with _lock:
        _tables.clear()
        _held = 0
