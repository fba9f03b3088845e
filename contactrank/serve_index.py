"""The in-memory index of one committed priority export, and the erased persons, for the lookup API.

An ``ExportIndex`` is built once from one ``<exports>/priority/date=D/`` directory and never changes
afterwards: the lookup API swaps a single reference to a new index when a newer export is committed,
so one response always comes from exactly one export.

The rows are kept as one Arrow table sorted by (person_id, rank); the distinct person ids are a
sorted list of UTF-8 byte strings searched with ``bisect``. A dict of millions of Python strings
would cost hundreds of MB more and hold the GIL for seconds while it is built (the server keeps
answering during a load); sorting and slicing Arrow releases it.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contactrank.errors import InputError
from contactrank.privacy import (
    erased_hashes,
    erasure_key,
    erasure_records_path,
    hmac_hex,
    shared_erased_hashes,
)
from contactrank.settings import Settings

PRIORITY_FILE = "priority.parquet"
MANIFEST_FILE = "_manifest.json"
SUCCESS_FILE = "_SUCCESS"

# (directory name, inode, mtime): publish and erasure both replace the directory by a rename, so a
# rerun or an erasure rewrite of the same date gets a new identity and is loaded again.
Identity = tuple[str, int, int]


def priority_root(settings: Settings) -> Path:
    root = settings.exports / "priority"
    if not isinstance(root, Path):  # identities are inodes and mtimes: a local folder's
        raise InputError(f"the lookup API serves a local exports folder, not {root} (sync it locally)")
    return root


def newest_committed(root: Path) -> tuple[date, Path, Identity] | None:
    """The newest ``date=D`` folder holding ``_SUCCESS`` (staging folders are hidden: skipped)."""
    best: tuple[date, Path] | None = None
    try:
        children = list(os.scandir(root))
    except FileNotFoundError:
        return None
    for entry in children:
        if not entry.name.startswith("date=") or not entry.is_dir():
            continue
        try:
            d = date.fromisoformat(entry.name[5:])
        except ValueError:
            continue
        if (best is None or d > best[0]) and os.path.isfile(os.path.join(entry.path, SUCCESS_FILE)):
            best = (d, Path(entry.path))
    if best is None:
        return None
    try:
        st = best[1].stat()
    except FileNotFoundError:  # replaced between the scan and now: the next poll sees the new one
        return None
    return best[0], best[1], (best[1].name, st.st_ino, st.st_mtime_ns)


class _Keys:
    """A read-only sequence over the sorted distinct person ids (UTF-8 bytes) for ``bisect``."""

    __slots__ = ("_data", "_offsets")

    def __init__(self, ids: pa.Array) -> None:
        ids = ids.cast(pa.large_string())
        offsets = np.frombuffer(ids.buffers()[1], dtype=np.int64)[ids.offset : ids.offset + len(ids) + 1]
        self._offsets = offsets.tolist()  # Python ints: indexing a numpy array per step is slower
        self._data = ids.buffers()[2].to_pybytes() if len(ids) else b""

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i: int) -> bytes:
        return self._data[self._offsets[i] : self._offsets[i + 1]]


# A string column with at most this many distinct values is held as codes into one list of
# Python strings (channel, reason, model_version, timezone): no decoding per request, less memory.
_MAX_CATEGORIES = 4096
_SAMPLE_ROWS = 65_536


class _Numbers:
    """An int, float or bool column as a numpy array (zero-copy where Arrow allows it)."""

    __slots__ = ("_values", "_valid", "_float")

    def __init__(self, arr: pa.Array) -> None:
        self._valid = None if arr.null_count == 0 else arr.is_valid().to_numpy(zero_copy_only=False)
        zero = pa.scalar(False if pa.types.is_boolean(arr.type) else 0, arr.type)
        filled = pc.fill_null(arr, zero) if arr.null_count else arr
        self._values = filled.to_numpy(zero_copy_only=False)
        self._float = pa.types.is_floating(arr.type)

    def values(self, start: int, end: int) -> list[Any]:
        out = self._values[start:end].tolist()
        if self._float:  # JSON has no NaN or infinity: a missing score is null, not a bad document
            out = [v if math.isfinite(v) else None for v in out]
        if self._valid is not None:
            out = [v if ok else None for v, ok in zip(out, self._valid[start:end].tolist(), strict=True)]
        return out


class _Categories:
    """A string column of few distinct values: int32 codes into a list (the last entry is null)."""

    __slots__ = ("_codes", "labels")

    def __init__(self, arr: pa.Array) -> None:
        encoded = arr.dictionary_encode()
        self.labels = [*encoded.dictionary.to_pylist(), None]
        self._codes = pc.fill_null(encoded.indices, len(self.labels) - 1).to_numpy(zero_copy_only=False)

    def values(self, start: int, end: int) -> list[Any]:
        labels = self.labels
        return [labels[c] for c in self._codes[start:end].tolist()]


class _Text:
    """A string column of many distinct values, decoded from the Arrow buffers per request."""

    __slots__ = ("_array", "_offsets", "_data", "_valid")

    def __init__(self, arr: pa.Array) -> None:
        self._array = arr = arr.cast(pa.large_string())  # keeps the buffers alive
        self._offsets = np.frombuffer(arr.buffers()[1], dtype=np.int64)[
            arr.offset : arr.offset + len(arr) + 1
        ]
        self._data = memoryview(arr.buffers()[2] or b"")
        self._valid = None if arr.null_count == 0 else arr.is_valid().to_numpy(zero_copy_only=False)

    def values(self, start: int, end: int) -> list[Any]:
        o, data = self._offsets[start : end + 1].tolist(), self._data
        out: list[Any] = [str(data[o[i] : o[i + 1]], "utf-8") for i in range(end - start)]
        if self._valid is not None:
            out = [v if ok else None for v, ok in zip(out, self._valid[start:end].tolist(), strict=True)]
        return out


class _Other:
    """Any other type (a later contract version may add one): Arrow's own conversion."""

    __slots__ = ("_array",)

    def __init__(self, arr: pa.Array) -> None:
        self._array = arr

    def values(self, start: int, end: int) -> list[Any]:
        return self._array.slice(start, end - start).to_pylist()


def _column(arr: pa.Array) -> _Numbers | _Categories | _Text | _Other:
    t = arr.type
    if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
        return _Numbers(arr)
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        # decided on a sample: counting the distinct values of 5M addresses took seconds per column
        few = len(arr) and pc.count_distinct(arr.slice(0, _SAMPLE_ROWS)).as_py() <= _MAX_CATEGORIES
        if few:
            column = _Categories(arr)
            if len(column.labels) <= _MAX_CATEGORIES * 16:  # the sample was not representative
                return column
        return _Text(arr)
    return _Other(arr)


@dataclass(frozen=True)
class ExportIndex:
    """One committed export, read whole; immutable once built."""

    date: date
    identity: Identity
    manifest: dict[str, Any]
    names: tuple[str, ...]  # the file's columns, in its order
    # sorted by person_id, rank; None for person_id itself, which is the key that was looked up
    # (2M distinct ids held once in ``keys`` rather than once per row)
    columns: tuple[_Numbers | _Categories | _Text | _Other | None, ...]
    num_rows: int
    keys: _Keys
    starts: np.ndarray  # row offset of each distinct person, plus the row count at the end
    loaded_at: float
    load_seconds: float

    @property
    def persons(self) -> int:
        return len(self.keys)

    def rows(self, person_id: str) -> list[dict[str, Any]] | None:
        """The person's rows in rank order, or None when the person is not in this export."""
        key = person_id.encode("utf-8", "surrogatepass")
        i = bisect.bisect_left(self.keys, key)
        if i == len(self.keys) or self.keys[i] != key:
            return None
        start, end = self.starts[i : i + 2].tolist()
        same = [person_id] * (end - start)
        values = [same if column is None else column.values(start, end) for column in self.columns]
        return [dict(zip(self.names, row, strict=True)) for row in zip(*values, strict=True)]

    def summary(self) -> dict[str, Any]:
        return {
            "date": self.date.isoformat(),
            "rows": self.num_rows,
            "persons": self.persons,
            "model_version": (self.manifest.get("model") or {}).get("version"),
            "loaded_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.loaded_at)),
            "load_seconds": round(self.load_seconds, 3),
        }


def _verify(name: str, data: bytes, manifest: dict[str, Any]) -> None:
    """The bytes read must be the ones the manifest describes: a directory replaced while it was
    being read, or a damaged file, is refused rather than served."""
    expected = ((manifest.get("files") or {}).get(name) or {}).get("sha256")
    if expected and hashlib.sha256(data).hexdigest() != expected:
        raise InputError(f"{name}: sha256 differs from {MANIFEST_FILE}")


def load_export(d: date, folder: Path, identity: Identity) -> ExportIndex:
    """Read ``priority.parquet`` of one committed export into an ``ExportIndex``."""
    began = time.monotonic()
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    data = (folder / PRIORITY_FILE).read_bytes()
    _verify(PRIORITY_FILE, data, manifest)
    table = pq.ParquetFile(pa.BufferReader(data)).read()  # not read_table: it imports pyarrow.dataset
    del data
    for column in ("person_id", "rank"):
        if column not in table.column_names:
            raise InputError(f"{folder / PRIORITY_FILE}: no {column} column")
    if manifest.get("rows") is not None and int(manifest["rows"]) != table.num_rows:
        raise InputError(
            f"{folder / PRIORITY_FILE}: {table.num_rows} rows, the manifest says {manifest['rows']}"
        )
    table = table.filter(pc.is_valid(table.column("person_id")))
    # contact_id breaks rank ties so that the order of a person's rows never depends on the file
    by = [name for name in ("person_id", "rank", "contact_id") if name in table.column_names]
    order = pc.sort_indices(table, sort_keys=[(name, "ascending") for name in by])
    table = table.take(order)
    ids = table.column("person_id").combine_chunks()
    if len(ids):
        changed = pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1))
        starts = np.concatenate(([0], np.flatnonzero(changed.to_numpy(zero_copy_only=False)) + 1))
    else:
        starts = np.zeros(0, dtype=np.int64)
    keys = _Keys(ids.take(pa.array(starts, pa.int64())))
    del ids
    return ExportIndex(
        date=d,
        identity=identity,
        manifest=manifest,
        names=tuple(table.column_names),
        columns=tuple(
            None if name == "person_id" else _column(table.column(name).combine_chunks())
            for name in table.column_names
        ),
        num_rows=table.num_rows,
        keys=keys,
        starts=np.append(starts, table.num_rows).astype(np.int64),
        loaded_at=time.time(),
        load_seconds=time.monotonic() - began,
    )


@dataclass(frozen=True)
class Erasures:
    """The keyed hashes of erased persons as of one read of the erasure records."""

    stamp: tuple[int, int, int] | None  # (inode, mtime, size) of the records file; None: no file
    hashes: frozenset[str]
    key: bytes | None

    def erased(self, person_id: str, pseudonymised: bool) -> bool:
        if not self.hashes:
            return False
        # a pseudonymised export's ids are already HMACs under the same key (the key variable):
        # the id itself is what the records hold
        if pseudonymised and person_id in self.hashes:
            return True
        return self.key is not None and hmac_hex(self.key, person_id) in self.hashes


NO_ERASURES = Erasures(stamp=None, hashes=frozenset(), key=None)


def erasure_stamp(settings: Settings) -> tuple | None:
    """What changes when a record is added: the home's table, and the names on the shared store."""
    try:
        st = erasure_records_path(settings).stat()
        local = (st.st_ino, st.st_mtime_ns, st.st_size)
    except FileNotFoundError:
        local = None
    shared = frozenset(shared_erased_hashes(settings))
    if local is None and not shared:
        return None
    return (local, shared)


def load_erasures(settings: Settings) -> Erasures:
    """Read the erasure records (stat first: a change seen later is read again, never missed)."""
    stamp = erasure_stamp(settings)
    if stamp is None:
        return NO_ERASURES
    hashes = frozenset(erased_hashes(settings))
    # the key exists once a record does (erase wrote it); read once per change, not per request
    return Erasures(stamp=stamp, hashes=hashes, key=erasure_key(settings) if hashes else None)
