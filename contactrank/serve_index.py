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
from contactrank.privacy import erased_hashes, erasure_key, erasure_records_path, hmac_hex
from contactrank.settings import Settings

PRIORITY_FILE = "priority.parquet"
MANIFEST_FILE = "_manifest.json"
SUCCESS_FILE = "_SUCCESS"

# (directory name, inode, mtime): publish and erasure both replace the directory by a rename, so a
# rerun or an erasure rewrite of the same date gets a new identity and is loaded again.
Identity = tuple[str, int, int]


def priority_root(settings: Settings) -> Path:
    return settings.exports / "priority"


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


@dataclass(frozen=True)
class ExportIndex:
    """One committed export, read whole; immutable once built."""

    date: date
    identity: Identity
    manifest: dict[str, Any]
    table: pa.Table  # sorted by person_id, rank
    keys: _Keys
    starts: list[int]  # row offset of each distinct person, plus the row count at the end
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
        start = self.starts[i]
        rows = self.table.slice(start, self.starts[i + 1] - start).to_pylist()
        for row in rows:
            for name, value in row.items():
                # JSON has no NaN or infinity: a missing score is null, not an invalid document
                if type(value) is float and not math.isfinite(value):
                    row[name] = None
        return rows

    def summary(self) -> dict[str, Any]:
        return {
            "date": self.date.isoformat(),
            "rows": self.table.num_rows,
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
    table = pq.read_table(pa.BufferReader(data))
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
    table = table.take(order).combine_chunks()
    ids = table.column("person_id").chunk(0) if table.num_rows else pa.array([], pa.string())
    if len(ids):
        changed = pc.not_equal(ids.slice(1), ids.slice(0, len(ids) - 1))
        starts = np.concatenate(([0], np.flatnonzero(changed.to_numpy(zero_copy_only=False)) + 1))
    else:
        starts = np.zeros(0, dtype=np.int64)
    keys = _Keys(ids.take(pa.array(starts, pa.int64())))
    return ExportIndex(
        date=d,
        identity=identity,
        manifest=manifest,
        table=table,
        keys=keys,
        starts=[*starts.tolist(), table.num_rows],
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


def erasure_stamp(settings: Settings) -> tuple[int, int, int] | None:
    try:
        st = erasure_records_path(settings).stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


def load_erasures(settings: Settings) -> Erasures:
    """Read the erasure records (stat first: a change seen later is read again, never missed)."""
    stamp = erasure_stamp(settings)
    if stamp is None:
        return NO_ERASURES
    hashes = frozenset(erased_hashes(settings))
    # the key exists once a record does (erase wrote it); read once per change, not per request
    return Erasures(stamp=stamp, hashes=hashes, key=erasure_key(settings) if hashes else None)
