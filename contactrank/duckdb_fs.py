"""DuckDB's reads of an object store: pyarrow's filesystem behind fsspec, one position per thread.

DuckDB (without its httpfs extension, which would download at run time) reads ``s3://`` through
a Python filesystem, and reads at an offset as two calls on one handle that its scan threads
share: ``seek``, then ``read``. fsspec's ``ArrowFile`` keeps one stream position for the handle,
and pyarrow's read lets go of the GIL, so another thread's seek could land between a thread's
seek and its read, or during the read: the read then returned bytes of another place (a short
read or undecodable Parquet, a few scans in a hundred with two threads). Here each thread has its
own position, and a read is one ``read_at`` of it: the same ranged GETs, nothing shared.

DuckDB also asks for a file's size and time several times per query and opens it several times,
each a HEAD request (14 for one scan of one Parquet file). A committed version of a folder is never
written again, so for its files (``immutable(path)``) the answer is kept for the life of the
filesystem, and a handle sends its HEAD only when it is first read.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable

_KEPT_INFOS = 4096  # files whose size and time a filesystem keeps (a day's scans touch a few hundred)


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
        """fsspec's wrapper of a pyarrow filesystem, its read handles ``ThreadPositionFile``; the
        size and time of an immutable file asked once."""

        def __init__(self, fs, immutable: Callable[[str], bool] = lambda path: False, **kwargs):
            super().__init__(fs, **kwargs)
            self._immutable = immutable
            # an entry that raises (not found) is not kept: only what exists and cannot change
            self._kept_info = functools.lru_cache(maxsize=_KEPT_INFOS)(
                functools.partial(ArrowFSWrapper.info, self)
            )

        def info(self, path, **kwargs):
            path = self._strip_protocol(path)
            return dict(self._kept_info(path)) if self._immutable(path) else super().info(path, **kwargs)

        def modified(self, path):
            path = self._strip_protocol(path)
            return self.info(path)["mtime"] if self._immutable(path) else super().modified(path)

        def _open(self, path, mode="rb", **kwargs):
            if mode != "rb":
                return super()._open(path, mode, **kwargs)
            path = self._strip_protocol(path)
            if self._immutable(path):
                stream = LazyInput(self.fs, path, self._kept_info(path)["size"])
            else:
                stream = self.fs.open_input_file(path)
            return ThreadPositionFile(self, stream, path, mode)

    return ThreadPositionFile, ThreadPositionFileSystem


class LazyInput:
    """A pyarrow input file of known size, opened (its HEAD sent) at its first read."""

    def __init__(self, fs, path: str, size: int) -> None:
        self._fs, self._path, self._size = fs, path, size
        self._stream = None
        self._closed = False
        self._lock = threading.Lock()

    def _opened(self):
        with self._lock:
            if self._stream is None:
                self._stream = self._fs.open_input_file(self._path)
            return self._stream

    def size(self) -> int:
        return self._size

    def read_at(self, n: int, at: int) -> bytes:
        return self._opened().read_at(n, at)

    def seekable(self) -> bool:
        return True

    def readable(self) -> bool:
        return True

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self) -> None:
        self._closed = True
        with self._lock:
            if self._stream is not None:
                self._stream.close()

    def __getattr__(self, name):  # anything else a handle may ask of the stream
        return getattr(self._opened(), name)


def duckdb_filesystem(fs, immutable: Callable[[str], bool] = lambda path: False):
    """An fsspec filesystem over the pyarrow filesystem ``fs``, safe for DuckDB's scan threads.

    ``immutable(path)``: whether the file at ``path`` is never written again once it exists (its
    size and time are then asked once)."""
    return _classes()[1](fs, immutable)
