"""A local S3-compatible server for the object-store backend: moto's, in a thread of the test process.

CI has no Docker, so no MinIO container: moto's server speaks the
same S3 API on a loopback port. Each test gets a fresh bucket; credentials and endpoint are given
the way a deployment gives them, through the standard AWS variables.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

import pytest

_buckets = itertools.count()


def start_server():
    """A running moto server on 127.0.0.1 (a free port); the caller stops it."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per request otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    return server


AWS_UNSET = ("AWS_ENDPOINT_URL_S3", "AWS_REGION", "AWS_SESSION_TOKEN", "AWS_PROFILE")


def aws_env(server) -> dict[str, str]:
    """The standard AWS variables of a deployment whose store is ``server``."""
    host, port = server.get_host_and_port()
    return endpoint_env(f"http://{host}:{port}")


def endpoint_env(endpoint: str) -> dict[str, str]:
    """The standard AWS variables of a deployment whose store answers at ``endpoint``."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": endpoint,
    }


def use_server(monkeypatch: pytest.MonkeyPatch, server) -> str:
    """Point the AWS variables at ``server``; return its endpoint URL."""
    env = aws_env(server)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in AWS_UNSET:
        monkeypatch.delenv(key, raising=False)
    return env["AWS_ENDPOINT_URL"]


def new_bucket(endpoint: str) -> str:
    """Create a fresh bucket; return its name."""
    return create_bucket(endpoint, f"contactrank-test-{next(_buckets)}")


def create_bucket(endpoint: str, name: str) -> str:
    """Create the bucket ``name`` on the store at ``endpoint``; return its name."""
    import pyarrow.fs as pafs

    pafs.S3FileSystem(
        endpoint_override=endpoint,
        scheme=endpoint.partition("://")[0],
        region="us-east-1",
        allow_bucket_creation=True,
    ).create_dir(name)
    return name


def s3_uris(bucket: str) -> dict[str, str]:
    """The lake and exports settings of a home on ``bucket``."""
    return {"lake_uri": f"s3://{bucket}/home/lake", "exports_uri": f"s3://{bucket}/home/exports"}


def server_fixture() -> Iterator:
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


def stored_files(settings) -> dict[str, bytes]:
    """Every file of a home, wherever it is stored: under the home folder and, for a lake or exports
    on an object store, every object below them (committed or not)."""
    import pyarrow.fs as pafs

    from contactrank.storage import ObjectPath

    out = {str(p): p.read_bytes() for p in settings.home.rglob("*") if p.is_file()}
    for root in (settings.lake, settings.exports):
        if isinstance(root, ObjectPath):
            selector = pafs.FileSelector(root.key, recursive=True, allow_not_found=True)
            for info in root.fs.get_file_info(selector):
                if info.type == pafs.FileType.File:
                    out[f"s3://{info.path}"] = ObjectPath(info.path).read_bytes()
    return out


def overwrite(path, blob: bytes) -> None:
    """Replace a stored file's bytes in place, on either backend (to corrupt it on purpose)."""
    from contactrank.storage import ObjectPath

    if isinstance(path, ObjectPath):
        with path.fs.open_output_stream(path.key) as out:
            out.write(blob)
    else:
        path.write_bytes(blob)
