"""Homes of the real-CLI worlds on either storage backend, and what their lake and exports hold.

A home is its folder (MLflow store, locks, erasure log) plus, on S3, a lake and exports under a
prefix of a bucket of the local S3 server. Tests run the CLI in a subprocess with ``Home.env``: the
standard AWS variables and the ``CONTACTRANK_LAKE_URI``/``CONTACTRANK_EXPORTS_URI`` of the home.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from contactrank import storage
from contactrank.features import lake
from contactrank.settings import Settings, load_settings

VOLATILE_KEYS = {"created_at", "run_id", "model_run_id", "seconds", "timings", "elapsed_s"}


@dataclass(frozen=True)
class Store:
    """A bucket of the local S3 server and the AWS variables that reach it."""

    bucket: str
    env: dict[str, str]


@dataclass(frozen=True)
class Home:
    path: Path
    store: Store | None = None  # None: the lake and exports are folders of the home
    prefix: str = ""
    env: dict[str, str] = field(default_factory=dict)

    @property
    def remote(self) -> bool:
        return self.store is not None

    @property
    def settings(self) -> Settings:
        if not self.remote:
            return load_settings(home=self.path)
        uris = {name: self.env[f"CONTACTRANK_{name.upper()}"] for name in ("lake_uri", "exports_uri")}
        return load_settings(home=self.path, **uris)


def new_home(path: Path, store: Store | None) -> Home:
    """A home at ``path``; with a store, its lake and exports under a fresh prefix of the bucket."""
    if store is None:
        return Home(path)
    prefix = f"{store.bucket}/{uuid.uuid4().hex[:12]}"
    env = {
        **store.env,
        "CONTACTRANK_LAKE_URI": f"s3://{prefix}/lake",
        "CONTACTRANK_EXPORTS_URI": f"s3://{prefix}/exports",
        # workers sharing a store hash erased ids with one key, given to each (privacy.erasure_key)
        "CONTACTRANK_HMAC_KEY": "the key every worker of this store is given",
    }
    return Home(path, store, prefix, env)


def copy_home(src: Home, path: Path) -> Home:
    """A copy of ``src`` at ``path``: its folder and, on S3, every object under its prefix (committed
    or not), copied inside the store."""
    shutil.copytree(src.path, path)
    dst = new_home(path, src.store)
    if src.remote:
        import pyarrow.fs as pafs

        fs = storage.s3_filesystem()
        for info in fs.get_file_info(pafs.FileSelector(src.prefix, recursive=True)):
            if info.type == pafs.FileType.File:
                fs.copy_file(info.path, dst.prefix + info.path[len(src.prefix) :])
    return dst


def remove_folder(folder: storage.Location) -> None:
    """Delete a lake or export folder with every version in it."""
    if storage.is_remote(folder):
        folder.fs.delete_dir(storage.ObjectPath(folder.key, folder.scheme).key)
    else:
        shutil.rmtree(folder)


def table_digest(path: storage.Location) -> str:
    """Content hash of a table: sorted rows, volatile columns dropped."""
    df = lake.read_table(path).to_pandas()
    df = df.drop(
        columns=[c for c in df.columns if c in VOLATILE_KEYS or c.startswith("_model_run")], errors="ignore"
    )
    for column in df.columns:  # list cells (a stored prior's weights) sort and print as tuples
        if df[column].dtype == object and any(isinstance(v, (list, np.ndarray)) for v in df[column]):
            df[column] = df[column].map(lambda v: tuple(v) if isinstance(v, (list, np.ndarray)) else v)
    df = df.sort_values(list(df.columns)).reset_index(drop=True) if len(df) else df
    return hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()


def json_digest(path: storage.Location) -> str:
    def clean(obj):
        if isinstance(obj, dict):
            return {
                k: clean(v) for k, v in obj.items() if k not in VOLATILE_KEYS and k not in ("sha256", "files")
            }
        return [clean(v) for v in obj] if isinstance(obj, list) else obj

    return hashlib.sha256(
        json.dumps(clean(json.loads(path.read_text())), sort_keys=True).encode()
    ).hexdigest()


def snapshot(settings: Settings) -> dict[str, str]:
    """Every table and manifest that readers see in the lake and the priority exports, by path
    relative to the home (``lake/<kind>/date=D/part-0.parquet``, the same on both backends) ->
    content hash. Locally hidden staging or moved-aside folders are not seen; on S3 only the
    committed version of each committed folder is."""
    out = {}
    for name, root in (("lake", settings.lake), ("exports/priority", settings.exports / "priority")):
        if storage.is_remote(root):
            folders = [(f, f.key[len(root.key) + 1 :]) for f in storage.committed_folders(root)]
        else:
            folders = [
                (f, f.relative_to(root).as_posix())
                for f in sorted({p.parent for p in root.rglob("*") if p.is_file()})
                if not any(part.startswith(".") for part in f.relative_to(root).parts)
            ]
        for folder, rel in folders:
            for f in folder.iterdir():
                if f.suffix == ".parquet":
                    out[f"{name}/{rel}/{f.name}"] = table_digest(f)
                elif f.name == "_manifest.json":
                    out[f"{name}/{rel}/{f.name}"] = json_digest(f)
    return out
