"""DuckDB's object-store handle: each thread reads at the position it set (no shared stream)."""

from __future__ import annotations

import threading

import pyarrow.fs as pafs

from contactrank.duckdb_fs import duckdb_filesystem
from contactrank.storage import ObjectPath


def test_a_seek_of_another_thread_does_not_move_this_threads_read(tmp_path):
    data = bytes(range(256)) * 4
    (tmp_path / "f.bin").write_bytes(data)
    handle = duckdb_filesystem(pafs.LocalFileSystem()).open(str(tmp_path / "f.bin"), "rb")
    handle.seek(100)  # this thread's seek, then another thread's seek and read before our read
    seen = {}

    def other() -> None:
        handle.seek(7)
        seen["other"] = handle.read(5)

    worker = threading.Thread(target=other)
    worker.start()
    worker.join()
    assert handle.read(10) == data[100:110] and handle.tell() == 110
    assert seen["other"] == data[7:12]
    handle.seek(-4, 2)
    assert handle.read() == data[-4:]


def test_object_paths_are_ordered_like_paths():
    a, b = ObjectPath("bucket/a/part-0.parquet"), ObjectPath("bucket/b/part-0.parquet")
    assert max([(5, b), (5, a)])[1] == b and sorted([b, a]) == [a, b]
