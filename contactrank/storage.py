"""Where the lake and the exports live: a local folder, or ``s3://bucket/prefix`` on any S3-compatible store.

A local location is a ``pathlib.Path`` and keeps the atomic-rename transactions of
``features.lake.atomic_dir``. An object-store location is an ``ObjectPath``: the few pathlib
methods the library uses, over ``pyarrow.fs.S3FileSystem``. Object stores cannot rename a folder,
so a folder written as a transaction (a lake partition, an export) is committed differently::

    <folder>/_commit.json            the commit marker: {"version", "files": {name: {sha256, bytes}}}
    <folder>/v-<token>/<files>       the committed version (and, while writing, the next one)

The writer stages its files in a local scratch folder, uploads them under a new version, then
writes the marker last (one PUT: readers see the old marker or the new one, whole). Readers resolve
the marker first (``committed``) and see only the files of the committed version; a folder without a
marker does not exist for them. The next commit of a folder deletes every version that its marker
does not name (a crashed writer's upload) before it uploads, and the replaced version after.

Credentials, region and endpoint come from the standard AWS variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_DEFAULT_REGION``/``AWS_REGION``, ``AWS_ENDPOINT_URL_S3`` or
``AWS_ENDPOINT_URL`` for a store other than AWS, e.g. MinIO).
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import functools
import hashlib
import json
import logging
import os
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pyarrow.fs as pafs

log = logging.getLogger(__name__)

MARKER = "_commit.json"
VERSION_PREFIX = "v-"
_NO_VERSION = "v-none"  # what an uncommitted folder resolves to: a version that never exists
SCHEMES = ("s3",)
SCRATCH_PREFIX = "contactrank-scratch-"


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None


# The AWS SDK's default gives up on a request that transfers nothing for 3 seconds (curl's low-speed
# limit), three times in a row: one busy moment of the store failed a whole step. botocore waits 60.
REQUEST_TIMEOUT_SECONDS = 60.0
CONNECT_TIMEOUT_SECONDS = 10.0


@functools.lru_cache(maxsize=8)
def _s3(endpoint: str | None, region: str | None) -> pafs.S3FileSystem:
    options: dict = {"request_timeout": REQUEST_TIMEOUT_SECONDS, "connect_timeout": CONNECT_TIMEOUT_SECONDS}
    if endpoint:
        options["endpoint_override"] = endpoint
        options["scheme"] = "http" if endpoint.startswith("http://") else "https"
    if region:
        options["region"] = region
    return pafs.S3FileSystem(**options)


def s3_filesystem() -> pafs.S3FileSystem:
    """The S3 filesystem of the standard AWS variables (one per endpoint and region)."""
    return _s3(_endpoint(), os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION"))


@dataclass(frozen=True, order=True)  # ordered like a Path: code picks files by (rows, path)
class ObjectPath:
    """A key in an object store, used like a ``Path``; ``version`` set: a committed folder.

    ``folder / name`` of a committed folder is the file ``name`` of its committed version, so code
    that reads ``partition / "part-0.parquet"`` reads the committed file on both backends. ``str``
    gives the URI (``s3://bucket/key``), which pyarrow and a DuckDB connection given this store
    (``register_duckdb``) read directly.
    """

    key: str  # bucket/prefix/... (pyarrow's path form, no trailing slash)
    scheme: str = "s3"
    version: str | None = None

    @property
    def fs(self) -> pafs.FileSystem:
        return s3_filesystem()

    def __truediv__(self, name: str) -> ObjectPath:
        base = f"{self.key}/{self.version}" if self.version else self.key
        return ObjectPath(f"{base}/{str(name).strip('/')}", self.scheme)

    def __str__(self) -> str:
        return f"{self.scheme}://{self.key}"

    __fspath__ = __str__

    def as_uri(self) -> str:
        return str(self)

    def resolve(self) -> ObjectPath:
        return self

    @property
    def name(self) -> str:
        return posixpath.basename(self.key)

    @property
    def suffix(self) -> str:
        return posixpath.splitext(self.name)[1]

    @property
    def parent(self) -> ObjectPath:
        return ObjectPath(posixpath.dirname(self.key), self.scheme)

    @property
    def content_key(self) -> str:
        """Where the files of this folder are: its committed version, or the key itself."""
        return f"{self.key}/{self.version}" if self.version else self.key

    def _type(self) -> pafs.FileType:
        return self.fs.get_file_info(self.content_key if self.version else self.key).type

    def is_file(self) -> bool:
        return self._type() == pafs.FileType.File

    def is_dir(self) -> bool:
        return self._type() == pafs.FileType.Directory

    def exists(self) -> bool:
        return self._type() != pafs.FileType.NotFound

    def mkdir(self, parents: bool = False, exist_ok: bool = False) -> None:
        """Nothing to do: an object store has no folders, only keys."""

    def read_bytes(self) -> bytes:
        with self.fs.open_input_stream(self.key) as fh:
            return fh.read()

    def read_text(self, encoding: str = "utf-8") -> str:
        return self.read_bytes().decode(encoding)

    def iterdir(self) -> Iterator[ObjectPath]:
        infos = self.fs.get_file_info(pafs.FileSelector(self.content_key, allow_not_found=True))
        for info in sorted(infos, key=lambda i: i.path):
            yield ObjectPath(info.path, self.scheme)

    def glob(self, pattern: str) -> Iterator[ObjectPath]:
        """One level only (``date=*``), which is all the library asks of an object store."""
        return (p for p in self.iterdir() if fnmatch.fnmatchcase(p.name, pattern))


Location = Path | ObjectPath


def location(value: str | os.PathLike) -> Location:
    """``s3://bucket/prefix`` as an ``ObjectPath``; a local path or ``file://`` URI as a ``Path``."""
    text = os.fspath(value)
    scheme, sep, rest = text.partition("://")
    if sep and scheme in SCHEMES:
        key = rest.strip("/")
        if not key:
            raise ValueError(f"{text!r} names no bucket")
        return ObjectPath(key, scheme)
    if sep and scheme == "file":
        return Path(rest)
    if sep:
        raise ValueError(f"unsupported storage scheme {scheme!r} in {text!r} (a local path or s3://)")
    return Path(text)


def is_remote(path: object) -> bool:
    return isinstance(path, ObjectPath)


def _marker(folder: ObjectPath) -> dict | None:
    try:
        with folder.fs.open_input_stream(f"{folder.key}/{MARKER}") as fh:
            return json.loads(fh.read())
    except FileNotFoundError:
        return None


def committed(folder: Location) -> Location:
    """The folder as readers see it: a local folder as it is; an object folder at its committed
    version (or at a version that does not exist when nothing is committed)."""
    if not isinstance(folder, ObjectPath):
        return folder
    plain = ObjectPath(folder.key, folder.scheme)
    marker = _marker(plain)
    return ObjectPath(plain.key, plain.scheme, str(marker["version"]) if marker else _NO_VERSION)


def recorded_sha256(path: ObjectPath) -> str:
    """The sha256 the commit marker records for a file of a committed folder."""
    folder_key, version, name = path.key.rsplit("/", 2)
    marker = _marker(ObjectPath(folder_key, path.scheme)) or {}
    entry = (marker.get("files") or {}).get(name) if marker.get("version") == version else None
    if not entry:
        raise FileNotFoundError(f"{path} is not a committed file")
    return str(entry["sha256"])


def committed_folders(root: Location) -> list[ObjectPath]:
    """Every committed folder under an object-store ``root`` (one listing), resolved."""
    if not isinstance(root, ObjectPath):
        raise TypeError("committed_folders lists object stores only")
    infos = root.fs.get_file_info(pafs.FileSelector(root.key, recursive=True, allow_not_found=True))
    folders = sorted(posixpath.dirname(i.path) for i in infos if posixpath.basename(i.path) == MARKER)
    return [committed(ObjectPath(f, root.scheme)) for f in folders]  # type: ignore[misc]


def committed_children(root: Location) -> list[Location]:
    """The entries of ``root`` as readers see them: locally all of them (a stray file included, for
    the caller to judge); on an object store the committed folders only."""
    if not isinstance(root, ObjectPath):
        return sorted(root.iterdir()) if root.is_dir() else []
    infos = root.fs.get_file_info(pafs.FileSelector(root.key, recursive=True, allow_not_found=True))
    depth = root.key.count("/") + 2  # <root>/<child>/_commit.json
    keys = [i.path for i in infos if i.path.count("/") == depth and posixpath.basename(i.path) == MARKER]
    return [committed(ObjectPath(posixpath.dirname(k), root.scheme)) for k in sorted(keys)]


def committed_names(root: ObjectPath, required: str) -> list[str]:
    """Names of the sub-folders of ``root`` that are committed and hold ``required`` (one listing:
    a marker beside a version holding the file; a marker is written only after its files)."""
    infos = root.fs.get_file_info(pafs.FileSelector(root.key, recursive=True, allow_not_found=True))
    base = root.key.count("/")
    marked, holding = set(), set()
    for info in infos:
        parts = info.path.split("/")[base + 1 :]
        if len(parts) == 2 and parts[1] == MARKER:
            marked.add(parts[0])
        elif len(parts) == 3 and parts[1].startswith(VERSION_PREFIX) and parts[2] == required:
            holding.add(parts[0])
    return sorted(marked & holding)


def collect_uncommitted(root: ObjectPath, dry_run: bool = False, replaced: bool = False) -> list[str]:
    """Delete every version under ``root`` that no marker names (crashed writers' uploads, replaced
    versions), in one folder or anywhere below (before an erasure); return their keys relative to
    ``root``. ``dry_run``: only list them; ``replaced``: what is expected is the version a commit
    just replaced (logged quietly; anything else is a crashed writer's upload)."""
    infos = root.fs.get_file_info(pafs.FileSelector(root.key, recursive=True, allow_not_found=True))
    markers = {posixpath.dirname(i.path) for i in infos if posixpath.basename(i.path) == MARKER}
    versions = {}
    for folder in markers:
        versions[folder] = (_marker(ObjectPath(folder, root.scheme)) or {}).get("version")
    stale = [
        i.path
        for i in infos
        if i.type == pafs.FileType.Directory
        and posixpath.basename(i.path).startswith(VERSION_PREFIX)
        and versions.get(posixpath.dirname(i.path)) != posixpath.basename(i.path)
    ]
    for key in [] if dry_run else stale:
        root.fs.delete_dir(key)
        level = logging.DEBUG if replaced else logging.WARNING
        log.log(level, "removed %s://%s: %s", root.scheme, key, "replaced" if replaced else "never committed")
    return [posixpath.relpath(k, root.key) for k in stale]


def file_sha256(path: Path) -> str:
    """Hex sha256 of a local file, read in 1 MiB chunks (the one hasher: markers, manifests, fingerprints)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


@contextlib.contextmanager
def object_transaction(target: ObjectPath) -> Iterator[Path]:
    """Yield a local staging folder; on success it becomes the committed version of ``target``.

    Uploads the files under a new version, then writes the marker (with each file's sha256 and
    size) last; the previous version is deleted after. On an exception the upload is deleted and
    the committed version stays as it was.
    """
    folder = ObjectPath(target.key, target.scheme)
    collect_uncommitted(folder)  # a crashed writer's upload of this folder
    version = f"{VERSION_PREFIX}{datetime.now(UTC).strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"
    key = f"{folder.key}/{version}"
    with scratch_dir("staging") as staging:
        yield staging
        files = sorted(p for p in staging.rglob("*") if p.is_file())
        try:
            pafs.copy_files(
                str(staging), key, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=folder.fs
            )
            marker = {
                "version": version,
                "files": {
                    p.relative_to(staging).as_posix(): {"sha256": file_sha256(p), "bytes": p.stat().st_size}
                    for p in files
                },
                "committed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            write_marker(folder, marker)
        except BaseException:
            with contextlib.suppress(OSError):
                if (_marker(folder) or {}).get("version") != version:  # the marker may have landed
                    folder.fs.delete_dir(key)
            raise
    with contextlib.suppress(OSError):  # a leftover is deleted by the next commit of the folder
        collect_uncommitted(folder, replaced=True)


def write_marker(folder: ObjectPath, marker: dict) -> None:
    """The commit itself: one PUT of the marker (a separate function so that fault tests can stop a
    writer right before it)."""
    with folder.fs.open_output_stream(f"{folder.key}/{MARKER}") as out:
        out.write(json.dumps(marker, indent=2, sort_keys=True).encode())


@contextlib.contextmanager
def local_copy(folder: Location) -> Iterator[Path]:
    """A local folder holding the files of ``folder`` (itself when local; a download otherwise)."""
    if not isinstance(folder, ObjectPath):
        yield Path(folder)
        return
    with scratch_dir("copy") as tmp:
        source = folder.content_key
        if folder.fs.get_file_info(source).type == pafs.FileType.Directory:
            pafs.copy_files(
                source, str(tmp), source_filesystem=folder.fs, destination_filesystem=pafs.LocalFileSystem()
            )
        yield tmp


@contextlib.contextmanager
def scratch_dir(purpose: str) -> Iterator[Path]:
    """A local temporary folder (a staged upload, a downloaded copy) that a killed process does not
    leave behind for good.

    A process killed outright (SIGKILL, the OOM killer: what a large partition provokes) runs no
    clean-up, and a worker that is restarted, not its machine, would keep every such folder in
    its temporary directory. So the folder is held under an exclusive ``flock`` while in use and
    takes its findable name only once locked; every new one first deletes those whose lock is free.
    """
    collect_scratch()
    base = Path(tempfile.gettempdir())
    fresh = Path(tempfile.mkdtemp(prefix=f".{SCRATCH_PREFIX}", dir=base))
    fd = os.open(fresh, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        folder = base / f"{SCRATCH_PREFIX}{purpose}-{fresh.name[len(SCRATCH_PREFIX) + 1 :]}"
        os.rename(fresh, folder)
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    finally:
        os.close(fd)


def collect_scratch() -> list[Path]:
    """Delete the scratch folders of the temporary directory whose process is gone; return them."""
    gone = []
    for folder in Path(tempfile.gettempdir()).glob(f"{SCRATCH_PREFIX}*"):
        try:
            fd = os.open(folder, os.O_RDONLY)
        except OSError:  # gone meanwhile, or another user's
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # in use
            os.close(fd)
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)
            gone.append(folder)
            log.warning("removed %s: left by a process that was killed", folder)
        finally:
            os.close(fd)
    return gone


def in_committed_version(path: str) -> bool:
    """Whether ``path`` lies in a version folder (``<folder>/v-<token>/...``): written once, never again."""
    return any(part.startswith(VERSION_PREFIX) and part != _NO_VERSION for part in path.split("/")[:-1])


def register_duckdb(con, *roots: object) -> None:
    """Let a DuckDB connection read ``s3://`` through pyarrow's filesystem (no extension download)."""
    if not any(isinstance(r, ObjectPath) for r in roots):
        return
    from contactrank.duckdb_fs import duckdb_filesystem  # only when an object store is in use

    if "s3" not in con.list_filesystems() and not any("s3" in str(f) for f in con.list_filesystems()):
        con.register_filesystem(duckdb_filesystem(s3_filesystem(), in_committed_version))
