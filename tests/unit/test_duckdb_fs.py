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


class _Counting:
    """A pyarrow filesystem that counts the requests an object store would receive."""

    def __init__(self) -> None:
        self.local, self.infos, self.opens = pafs.LocalFileSystem(), 0, 0
        self.type_name = "local"

    def get_file_info(self, paths):
        self.infos += 1
        return self.local.get_file_info(paths)

    def open_input_file(self, path):
        self.opens += 1
        return self.local.open_input_file(path)


def test_a_committed_version_is_asked_its_size_once_and_opened_only_to_be_read(tmp_path):
    data = bytes(range(256))
    for folder in ("v-1", "staging"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "f.bin").write_bytes(data)
    counting = _Counting()
    fs = duckdb_filesystem(counting, lambda path: "/v-" in path)
    kept = str(tmp_path / "v-1" / "f.bin")
    assert fs.size(kept) == 256 and fs.exists(kept) and fs.modified(kept) == fs.info(kept)["mtime"]
    handles = [fs.open(kept, "rb") for _ in range(3)]  # DuckDB opens a file several times per scan
    assert counting.infos == 1 and counting.opens == 0
    handles[1].seek(250)
    assert handles[1].read() == data[250:] and handles[0].size == 256
    assert counting.infos == 1 and counting.opens == 1
    for handle in handles:
        handle.close()
    other = str(tmp_path / "staging" / "f.bin")  # not a version: every question is asked again
    fs.size(other), fs.size(other)
    assert counting.infos == 3
    assert not fs.exists(str(tmp_path / "v-1" / "absent")) and counting.infos == 4
