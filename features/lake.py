"""The Parquet lake: one folder per kind and business date, written as transactions.

Layout (under ``settings.lake``)::

    attempts/date=D/part-0.parquet          validated attempts of D (see features.schema)
    contacts/date=D/part-0.parquet          validated contact upserts delivered for D
    contacts_state/date=D/part-0.parquet    current state of every delivered contact at the end of D
    suppressions/date=D/part-0.parquet      suppressions learned on D (files, opt-outs, erasures)
    persons/date=D/part-0.parquet           person attribute upserts delivered for D
    quarantine/<kind>/date=D/part-0.parquet rejected rows with source file, row number and reason
    daily_agg/date=D/part-0.parquet         per (contact, hour bucket) aggregates of D
    features/date=D/part-0.parquet          feature state at the end of D, one row per candidate
    training/date=D/part-0.parquet          the attempts of D joined with the features of D-1
    scores/date=D/part-0.parquet            ranked, scored candidates of D (before publishing)
    curve_prior/date=D/part-0.parquet       the hour curves' prior fitted on D (features.curve_priors)
    <kind>/shard=K-of-N/date=D/...          the same, for one shard of persons (``shards`` > 1)

The lake is a local folder or an object store (``settings.lake_uri``, see ``contactrank.storage``).
Locally, every write goes to a hidden staging folder that is renamed into place; a previous version
is moved aside first and removed after, and is restored if a crash left the target missing. On an
object store a partition is committed by its marker, written after its files; readers see only
committed partitions.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import date
from pathlib import Path

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from contactrank import storage
from contactrank.features.sql import quote_literal
from contactrank.settings import Settings
from contactrank.shards import Shard, parse_folder
from contactrank.storage import Location, ObjectPath

log = logging.getLogger(__name__)

DATA_FILE = "part-0.parquet"


def file_sha256(path: Location) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (manifests, training fingerprints); on an object
    store, the sha256 its commit marker records."""
    if isinstance(path, ObjectPath):
        return storage.recorded_sha256(path)
    return storage.file_sha256(path)


def partition_dir(settings: Settings, kind: str, d: date) -> Location:
    """``<lake>/<kind>/date=YYYY-MM-DD`` (kind may contain a slash, e.g. ``quarantine/attempts``),
    as readers see it (on an object store: its committed version)."""
    return storage.committed(settings.lake / kind / f"date={d.isoformat()}")


def _recover(target: Path) -> None:
    """Undo a swap that a crash interrupted: restore the moved-aside version, drop stale staging."""
    parent = target.parent
    old_prefix, staging_prefix = f".old-{target.name}-", f".staging-{target.name}-"
    try:
        # one pass over names (not two globs): the folder holds every date of the kind
        with os.scandir(parent) as entries:
            names = [e.name for e in entries if e.name.startswith((old_prefix, staging_prefix))]
    except (FileNotFoundError, NotADirectoryError):
        return
    olds = sorted(parent / n for n in names if n.startswith(old_prefix))
    if olds and not target.exists():
        os.replace(olds[-1], target)
        log.warning("restored %s after an interrupted write", target)
        olds = olds[:-1]
    for stale in [*olds, *(parent / n for n in names if n.startswith(staging_prefix))]:
        shutil.rmtree(stale, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(target: Location) -> Iterator[Path]:
    """Yield a local staging folder; on success it replaces ``target`` (readers see old or new, whole).

    On an exception the staging folder is removed and ``target`` is left as it was. An object-store
    target is committed by its marker (``storage.object_transaction``).
    """
    if isinstance(target, ObjectPath):
        with storage.object_transaction(target) as staging:
            yield staging
        return
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    _recover(target)
    token = uuid.uuid4().hex[:8]
    staging = target.parent / f".staging-{target.name}-{token}"
    staging.mkdir()
    try:
        yield staging
        _fsync_dir(staging)
        old = target.parent / f".old-{target.name}-{token}"
        if target.exists():
            os.replace(target, old)
        os.replace(staging, target)
        _fsync_dir(target.parent)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _fsync_dir(path: Path) -> None:
    for child in path.iterdir() if path.is_dir() else []:
        if child.is_file():
            with open(child, "rb") as fh:
                os.fsync(fh.fileno())
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _to_table(data: pa.Table | object) -> pa.Table:
    if isinstance(data, pa.Table):
        return data
    return pa.Table.from_pandas(data, preserve_index=False)  # type: ignore[arg-type]


def write_partition(
    settings: Settings,
    kind: str,
    d: date,
    data: pa.Table | object,
    extra_files: dict[str, bytes] | None = None,
) -> Path:
    """Write one partition (a table or DataFrame) atomically, replacing any previous version."""
    target = partition_dir(settings, kind, d)
    with atomic_dir(target) as staging:
        _write_parquet(_to_table(data), staging / DATA_FILE)
        for name, blob in (extra_files or {}).items():
            (staging / name).write_bytes(blob)
    return target


def _write_parquet(table: pa.Table, path: Path, fsync: bool = False, unique: Sequence[str] = ()) -> None:
    """The lake's one Parquet writer (codec choice in one place).

    ``unique`` names columns with about one distinct value per row (attempt ids, person ids): they
    are written without a dictionary and without min/max statistics. Both cost CPU and buy
    nothing for them (the dictionary overflows and falls back to plain; min/max of random ids
    prune no row group).
    """
    options: dict = {}
    if unique:
        others = [c for c in table.column_names if c not in unique]
        options = {
            "use_dictionary": others,
            "write_statistics": others,
            "compression": {c: "zstd" if c in others else "lz4" for c in table.column_names},
        }
    if any(pa.types.is_dictionary(t) for t in table.schema.types):
        # Dictionary-encoded columns are written as they are (no hashing of every value), under
        # one dictionary per column (the writer falls back to plain pages when it changes), and
        # without the Arrow schema so that readers get the plain values back, as if written plain.
        table = table.unify_dictionaries()
        options["store_schema"] = False
    options.setdefault("compression", "zstd")
    pq.write_table(table, path, **options)
    if fsync:  # done here, in the writer's thread, so the commit's own fsync finds nothing dirty
        with open(path, "rb") as fh:
            os.fsync(fh.fileno())


class PartitionBatch:
    """Staging folders of several partitions of one date, written by a small thread pool."""

    def __init__(self, staging: dict[str, Path], pool: ThreadPoolExecutor) -> None:
        self._staging = staging
        self._pool = pool
        self._futures: list[Future] = []

    def write(self, kind: str, data: pa.Table | object, unique: Sequence[str] = ()) -> None:
        """Start writing the data file of ``kind`` (returns at once; errors surface at commit).

        ``unique``: columns with about one value per row (see ``_write_parquet``).
        """
        table = _to_table(data)
        path = self._staging[kind] / DATA_FILE
        self._futures.append(self._pool.submit(_write_parquet, table, path, True, unique))

    def add_file(self, kind: str, name: str, blob: bytes) -> None:
        """Put a small extra file (e.g. a report) beside the data file of ``kind``."""
        (self._staging[kind] / name).write_bytes(blob)

    def wait(self) -> None:
        for future in self._futures:
            future.result()  # re-raises the first write error


@contextlib.contextmanager
def partition_batch(
    settings: Settings, d: date, kinds: Sequence[str], threads: int = 2
) -> Iterator[PartitionBatch]:
    """Write several partitions of date ``d`` concurrently; commit them in the order of ``kinds``.

    Each partition is still its own transaction (``atomic_dir``); none is committed unless every
    write succeeded, and the last kind is committed last (e.g. the one whose file marks the date
    as done). Parquet encoding releases the GIL, so the writes overlap each other and the caller's
    work between ``write`` calls.
    """
    with contextlib.ExitStack() as stack:
        staging = {}
        for kind in reversed(kinds):  # ExitStack commits in reverse order of entry
            staging[kind] = stack.enter_context(atomic_dir(partition_dir(settings, kind, d)))
        with ThreadPoolExecutor(max_workers=max(int(threads), 1)) as pool:  # joined before any commit
            batch = PartitionBatch(staging, pool)
            yield batch
            batch.wait()


# The row order of a whole partition, which one read back from its shards is given again.
_ROW_ORDER = {"training": ("attempt_id",), "scores": ("person_id", "rank")}


def read_partition(
    settings: Settings, kind: str, d: date, columns: list[str] | None = None
) -> pa.Table | None:
    """The table of one partition (whole, or every shard's in the order of a whole one), or None
    when it does not exist."""
    target = partition_dir(settings, kind, d)
    if isinstance(target, Path) and not (target / DATA_FILE).is_file():
        # only a missing partition can be a crash's moved-aside version; stale leftovers beside a
        # present one are not read and go at its next write (a read does not list the folder)
        _recover(target)
    files = partition_files_of(settings, kind, d)
    if not files:
        return None
    if len(files) == 1:
        return read_table(files[0], columns=columns)
    order = [c for c in _ROW_ORDER.get(kind, ()) if columns is None or c not in columns]
    table = pa.concat_tables(
        [read_table(f, columns=None if columns is None else [*columns, *order]) for f in files],
        promote_options="default",
    )
    if kind in _ROW_ORDER:
        table = table.sort_by([(c, "ascending") for c in _ROW_ORDER[kind]])
    return table.select(columns) if columns is not None else table.combine_chunks()


def read_table(path: Location, columns: list[str] | None = None) -> pa.Table:
    """One Parquet file of the lake or the exports, on either backend."""
    if isinstance(path, ObjectPath):
        return pq.read_table(path.key, columns=columns, filesystem=path.fs)
    # ParquetFile, not read_table: the same table without the dataset layer's set-up, which costs
    # more than reading a small partition (training reads hundreds of them per run)
    with pq.ParquetFile(path) as f:
        return f.read(columns=columns)


def file_rows(path: Location) -> int:
    """The row count of one Parquet file (its footer only), on either backend."""
    if isinstance(path, ObjectPath):
        return pq.read_metadata(path.key, filesystem=path.fs).num_rows
    return pq.read_metadata(path).num_rows


def partition_dates(settings: Settings, kind: str) -> list[date]:
    """Sorted dates that have a partition of ``kind``: whole, or in every shard of one split.

    Every step lists several kinds and the listing grows with the history, so it works on strings
    (``os.scandir``), not ``Path`` objects: a fixed cost of every day of a long backfill."""
    root = settings.lake / kind
    if isinstance(root, ObjectPath):
        names = storage.committed_names(root, DATA_FILE)
        split = any(child.name.startswith("shard=") for child in root.iterdir()) if root.is_dir() else False
    else:
        try:
            entries = os.scandir(root)
        except (FileNotFoundError, NotADirectoryError):
            return []
        with entries:
            listed = [(e.name, e.path) for e in entries]
        names = [name for name, path in listed if os.path.isfile(os.path.join(path, DATA_FILE))]
        split = any(name.startswith("shard=") for name, _ in listed)
    out = set()
    for name in names:
        if name.startswith("date="):
            with contextlib.suppress(ValueError):
                out.add(date.fromisoformat(name[5:]))
    if split:
        for n, found in shard_sets(settings, kind).items():
            if len(found) == n:
                out |= set.intersection(*(set(partition_dates(settings, s.kind(kind))) for s in found))
    return sorted(out)


def parquet_glob(settings: Settings, kind: str) -> str:
    """Glob of every data file of ``kind``, for DuckDB's ``read_parquet(..., hive_partitioning=true)``."""
    return str(settings.lake / kind / "date=*" / DATA_FILE)


def duckdb_connect(settings: Settings) -> duckdb.DuckDBPyConnection:
    """An in-memory DuckDB connection bounded by the settings (spills under <home>/tmp).

    Starting a database costs more CPU than a thin day's queries: each thread keeps the last one it
    started, and every call gets a connection of its own to it (its temp tables and registered
    views are its own, and go when it is closed). A forked child starts its own."""
    spill = settings.home / "tmp" / "duckdb"
    spill.mkdir(parents=True, exist_ok=True)
    key = (os.getpid(), settings.duckdb_memory_limit, int(settings.duckdb_threads), str(spill))
    kept = getattr(_duckdb_database, "kept", None)
    if kept is None or kept[0] != key:  # another home or bounds: the old one lives on in its connections
        db = duckdb.connect()
        db.execute(f"SET memory_limit={quote_literal(settings.duckdb_memory_limit)}")
        db.execute(f"SET threads={int(settings.duckdb_threads)}")
        db.execute(f"SET temp_directory={quote_literal(spill)}")
        db.execute("SET preserve_insertion_order=false")
        kept = _duckdb_database.kept = (key, db)
    con = kept[1].cursor()
    storage.register_duckdb(con, settings.lake, settings.exports)
    return con


_duckdb_database = threading.local()


def shard_sets(settings: Settings, kind: str) -> dict[int, list[Shard]]:
    """The shard folders of ``kind`` by number of shards (a split that was never used is absent)."""
    root = settings.lake / kind
    try:
        if isinstance(root, ObjectPath):
            names = [child.name for child in root.iterdir()] if root.is_dir() else []
        else:  # names only: every read of a partition asks, and the folder holds one entry a day
            names = os.listdir(root)
    except (FileNotFoundError, NotADirectoryError):
        names = []
    sets: dict[int, list[Shard]] = {}
    for shard in filter(None, map(parse_folder, (n for n in names if n.startswith("shard=")))):
        sets.setdefault(shard.count, []).append(shard)
    return {n: sorted(found, key=lambda s: s.index) for n, found in sets.items()}


def partition_files_of(settings: Settings, kind: str, d: date, name: str = DATA_FILE) -> list[Location]:
    """The files ``name`` of ``kind`` for date ``d``, in shard order: those of the split of
    ``settings.shards``, else of the whole partition, else of another split; [] when none exists.

    The current split comes first so that a date re-run after ``shards`` changed is read as it was
    last written, not as an older layout left beside it. A split with a shard missing is never read:
    its persons would silently be left out.
    """
    splits = shard_sets(settings, kind)
    candidates: list[list[Shard] | None] = [splits.pop(settings.shards)] if settings.shards in splits else []
    candidates += [None, *(found for _, found in sorted(splits.items(), reverse=True))]
    for found in candidates:
        if found is None:
            whole = partition_dir(settings, kind, d) / name
            if whole.is_file():
                return [whole]
        elif len(found) == found[0].count:
            files = [partition_dir(settings, s.kind(kind), d) / name for s in found]
            if all(f.is_file() for f in files):
                return files
    return []
