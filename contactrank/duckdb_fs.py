"""DuckDB's reads of an object store: pyarrow's filesystem behind fsspec, one position per thread.

DuckDB (without its httpfs extension, which would download at run time) reads ``s3://`` through
a Python filesystem, and reads at an offset as two calls on one handle that its scan threads
share: ``seek``, then ``read``. fsspec's ``ArrowFile`` keeps one stream position for the handle,
and pyarrow's read lets go of the GIL, so another thread's seek could land between a thread's
seek and its read, or during the read: the read then returned bytes of another place (a short
read or undecodable Parquet, a few scans in a hundred with two threads). Here each thread has its
own position, and a read is one ``read_at`` of it: the same ranged GETs, nothing shared.
"""

from __future__ import annotations

import functools
import threading


@functools.cache
def _classes():
    from fsspec.implementations.arrow import ArrowFile, ArrowFSWrapper  # only with an object store

    class ThreadPositionFile(ArrowFile):
        """A read-only file whose position is the calling thread's own."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._positions = threading.local()

        @property
        def _pos(self) -> int:
            return getattr(self._positions, "at", 0)

        def seek(self, pos: int, whence: int = 0) -> int:
            self._positions.at = pos + (0, self._pos, self.stream.size())[whence]
            return self._pos

        def tell(self) -> int:
            return self._pos

        def read(self, n: int | None = -1) -> bytes:
            at = self._pos
            if n is None or n < 0:
                n = self.stream.size() - at
            data = self.stream.read_at(n, at)
            self._positions.at = at + len(data)
            return data

    class ThreadPositionFileSystem(ArrowFSWrapper):
        """fsspec's wrapper of a pyarrow filesystem, its read handles ``ThreadPositionFile``."""

        def _open(self, path, mode="rb", **kwargs):
            if mode != "rb":
                return super()._open(path, mode, **kwargs)
            path = self._strip_protocol(path)
            return ThreadPositionFile(self, self.fs.open_input_file(path), path, mode)

    return ThreadPositionFile, ThreadPositionFileSystem


def duckdb_filesystem(fs):
    """An fsspec filesystem over the pyarrow filesystem ``fs``, safe for DuckDB's scan threads."""
    return _classes()[1](fs)
