"""The storage interface on both backends: transactions, commit markers, garbage of crashed writers."""

from __future__ import annotations

import json
from datetime import date

import pyarrow as pa
import pytest

from contactrank import storage
from contactrank.features import lake
from contactrank.features.sql import read_parquet

D = date(2026, 1, 5)


def test_location_parses_uris(tmp_path) -> None:
    assert storage.location(str(tmp_path)) == tmp_path
    assert storage.location(f"file://{tmp_path}") == tmp_path
    assert storage.location("s3://bucket/some/prefix/") == storage.ObjectPath("bucket/some/prefix")
    with pytest.raises(ValueError):
        storage.location("gs://bucket/x")
    with pytest.raises(ValueError):
        storage.location("s3://")


def test_write_read_rewrite(any_settings) -> None:
    s = any_settings
    lake.write_partition(s, "attempts", D, pa.table({"x": [1, 2, 3]}), extra_files={"_r.json": b"{}"})
    lake.write_partition(s, "attempts", D, pa.table({"x": [9]}))
    assert lake.read_partition(s, "attempts", D).column("x").to_pylist() == [9]
    assert lake.partition_dates(s, "attempts") == [D]
    part = lake.partition_dir(s, "attempts", D)
    assert sorted(p.name for p in part.iterdir()) == ["part-0.parquet"]  # the replaced version's file is gone
    assert lake.file_sha256(part / lake.DATA_FILE) == _sha256(part / lake.DATA_FILE)
    con = lake.duckdb_connect(s)
    rel = read_parquet(part / lake.DATA_FILE, hive_partitioning="false")
    assert con.execute(f"SELECT sum(x) FROM {rel}").fetchone()[0] == 9


def _sha256(path) -> str:
    """The sha256 of a file's bytes, computed independently of the marker."""
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_writer_killed_before_its_marker_leaves_nothing_visible(any_settings) -> None:
    s = any_settings
    lake.write_partition(s, "scores", D, pa.table({"x": [7]}))
    target = lake.partition_dir(s, "scores", D)
    with pytest.raises(KeyboardInterrupt), lake.atomic_dir(target) as staging:
        lake._write_parquet(pa.table({"x": [8]}), staging / lake.DATA_FILE)
        raise KeyboardInterrupt  # killed while writing
    assert lake.read_partition(s, "scores", D).column("x").to_pylist() == [7]
    with pytest.raises(KeyboardInterrupt), lake.atomic_dir(lake.partition_dir(s, "features", D)) as staging:
        lake._write_parquet(pa.table({"x": [1]}), staging / lake.DATA_FILE)
        raise KeyboardInterrupt
    assert lake.partition_dates(s, "features") == []
    assert lake.read_partition(s, "features", D) is None


def test_crashed_upload_is_invisible_then_collected(s3_settings) -> None:
    """Files uploaded without a marker (the writer died between upload and marker): readers do not
    see them; the next write of the partition deletes them."""
    s = s3_settings
    folder = s.lake / "features" / f"date={D}"
    fs = folder.fs
    with fs.open_output_stream(f"{folder.key}/v-crashed/part-0.parquet") as out:
        out.write(b"half a parquet file")
    assert lake.partition_dates(s, "features") == []
    assert lake.read_partition(s, "features", D) is None
    lake.write_partition(s, "features", D, pa.table({"x": [1]}))
    names = [p.name for p in folder.iterdir()]
    assert "v-crashed" not in names and storage.MARKER in names
    marker = json.loads((folder / storage.MARKER).read_text())
    assert set(marker["files"]) == {lake.DATA_FILE}
    assert names == sorted([storage.MARKER, marker["version"]])
    assert lake.read_partition(s, "features", D).column("x").to_pylist() == [1]


def test_a_lost_marker_hides_the_partition(s3_settings) -> None:
    s = s3_settings
    lake.write_partition(s, "attempts", D, pa.table({"x": [1]}))
    folder = s.lake / "attempts" / f"date={D}"
    folder.fs.delete_file(f"{folder.key}/{storage.MARKER}")
    assert lake.partition_dates(s, "attempts") == []
    assert lake.read_partition(s, "attempts", D) is None


def test_settings_take_a_uri_and_refuse_an_unknown_scheme(tmp_path, monkeypatch) -> None:
    from contactrank.settings import load_settings

    monkeypatch.setenv("CONTACTRANK_LAKE_URI", "s3://bucket/prefix/lake")
    s = load_settings(home=tmp_path)
    assert s.lake == storage.ObjectPath("bucket/prefix/lake") and s.exports == tmp_path / "exports"
    assert s.config_hash() == load_settings(home=tmp_path, lake_uri=str(tmp_path / "x")).config_hash()
    with pytest.raises(ValueError, match="lake_uri"):
        load_settings(home=tmp_path, lake_uri="gs://bucket/lake")


HOLD_SCRATCH = """
import sys, time
from contactrank import storage
with storage.scratch_dir("staging") as folder:
    (folder / "part-0.parquet").write_bytes(b"staged")
    print(folder, flush=True)
    time.sleep(120)
"""


def test_a_killed_writers_scratch_folder_is_deleted_by_the_next_one(tmp_path, monkeypatch) -> None:
    """A writer SIGKILLed while staging leaves its local folder; the next scratch folder made on the
    machine deletes it, and never one whose process is alive."""
    import os
    import signal
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    children = [
        subprocess.Popen([sys.executable, "-c", HOLD_SCRATCH], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    killed, alive = (Path(c.stdout.readline().strip()) for c in children)
    children[0].send_signal(signal.SIGKILL)
    children[0].wait(timeout=30)
    try:
        assert (killed / "part-0.parquet").read_bytes() == b"staged"
        with storage.scratch_dir("copy") as mine:
            assert not killed.exists()
            assert (alive / "part-0.parquet").is_file() and mine.is_dir()
            assert storage.collect_scratch() == []  # the live ones, its own included, are kept
    finally:
        children[1].kill()
        children[1].wait(timeout=30)
    assert not mine.exists()
    assert storage.collect_scratch() == [alive]
    assert list(tmp_path.iterdir()) == []


def test_a_store_that_stalls_for_seconds_is_waited_for(monkeypatch) -> None:
    # The AWS SDK's default gave up after 3 s without a byte, three times: a busy store failed the step.
    import http.server
    import threading
    import time

    class Stalling(http.server.BaseHTTPRequestHandler):
        def do_HEAD(self) -> None:  # noqa: N802 - the handler's protocol
            time.sleep(4.5)
            self.send_response(200)
            self.send_header("Content-Length", "10")
            self.send_header("Last-Modified", "Wed, 02 Dec 2026 10:00:00 GMT")
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Stalling)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
        storage._s3.cache_clear()
        assert storage.s3_filesystem().get_file_info("bucket/key").size == 10
    finally:
        server.shutdown()
        storage._s3.cache_clear()
