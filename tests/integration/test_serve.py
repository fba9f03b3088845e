"""``contactrank serve`` as a subprocess on loopback, over exports written by hand as publish does.

Checked: refusal to start without a key; 401 without or with a wrong key; 422 for an empty, too
long or control-character id; 404 for a person not in the export; a person's rows in rank order
with the contract's columns; the manifest; a newer export taking over while a client fires
requests (no failure, every response from one export, the new one after the swap), with a half
written folder and a damaged file never served; an erasure after publish refused at once.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from urllib.parse import quote

import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from contactrank.erase import erase
from contactrank.features.lake import atomic_dir
from contactrank.ml.publish import PRIORITY_SCHEMA, export_dir, write_csv
from contactrank.privacy import erasure_records_path, keyed_hash
from contactrank.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
KEY = "test-key-0123456789abcdef"
D1, D2 = date(2026, 11, 20), date(2026, 11, 21)
VERSION = {D1.isoformat(): "7", D2.isoformat(): "8"}
SLASHED = "josé/ü 42"  # an id ingest accepts: "/", a space, non-ASCII
PERSONS = [f"p{i:04d}" for i in range(300)] + [SLASHED]
START_SECONDS = 60


def _rows(d: date, persons: list[str]) -> list[dict]:
    """1-3 rows per person, written in reverse rank order (the server must sort them)."""
    rows = []
    for i, person in enumerate(persons):
        for rank in range(1 + i % 3, 0, -1):
            rows.append(
                {
                    "person_id": person,
                    "contact_id": f"+5511{d.day:02d}{i:05d}{rank}",
                    "channel": ("voice", "sms", "email")[rank - 1],
                    "rank": rank,
                    "score": 0.9 / rank,
                    "best_hour": 9 + rank,
                    "reason": "recent_success" if rank == 1 else "explore",
                    "explore": rank > 1,
                    "propensity": 0.95 if rank == 1 else 0.05,
                    "model_version": VERSION[d.isoformat()],
                    "timezone": "America/Sao_Paulo",
                    "best_hour_utc": 12 + rank,
                }
            )
    return rows


def _publish(settings: Settings, d: date, persons: list[str], damage: bool = False) -> Path:
    """Write ``date=D`` as ml.publish does: staging folder, files, manifest, _SUCCESS, one rename."""
    rows = _rows(d, persons)
    columns = {
        f.name: pa.array([r.get(f.name) for r in rows], f.type)
        if f.name in rows[0]
        else pa.nulls(len(rows), f.type)
        for f in PRIORITY_SCHEMA
    }
    table = pa.table(columns, schema=PRIORITY_SCHEMA)
    target = export_dir(settings, d)
    with atomic_dir(target) as staging:
        pq.write_table(table, staging / "priority.parquet", compression="zstd")
        write_csv(table, staging / "priority.csv")
        files = {
            name: {
                "sha256": hashlib.sha256((staging / name).read_bytes()).hexdigest(),
                "bytes": (staging / name).stat().st_size,
            }
            for name in ("priority.parquet", "priority.csv")
        }
        if damage:
            files["priority.parquet"]["sha256"] = "0" * 64
        manifest = {
            "schema_version": "1",
            "date": d.isoformat(),
            "valid_from": date.fromordinal(d.toordinal() + 1).isoformat(),
            "model": {"name": "contactrank", "version": VERSION[d.isoformat()], "run_id": "r"},
            "rows": table.num_rows,
            "persons": len(persons),
            "pseudonymised": False,
            "files": files,
            "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
        }
        (staging / "_manifest.json").write_text(json.dumps(manifest, indent=2, sort_keys=True))
        (staging / "_SUCCESS").write_text("")
    return target


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(settings: Settings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTRANK_")}
    env.update(CONTACTRANK_HOME=str(settings.home), CONTACTRANK_CONFIG=str(settings.home / "absent.toml"))
    env.update(extra)
    return env


def _start(settings: Settings, poll: float = 0.2, **env: str) -> tuple[subprocess.Popen, httpx.Client]:
    port = _free_port()
    cmd = [sys.executable, "-m", "contactrank.cli", "serve", "--port", str(port), "--poll-seconds", str(poll)]
    log = (settings.home / "serve.log").open("ab")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=_env(settings, **env), stdout=log, stderr=log)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        assert proc.poll() is None, (settings.home / "serve.log").read_text()
        try:
            if client.get("/healthz").status_code in (200, 503):
                return proc, client
        except httpx.TransportError:
            time.sleep(0.1)
    raise AssertionError("the server did not answer /healthz in time")


@pytest.fixture
def server(settings: Settings) -> Iterator[tuple[Settings, httpx.Client]]:
    """A server over an export of D1 (the key from a file, as docker-compose mounts it)."""
    settings.home.mkdir(parents=True, exist_ok=True)
    _publish(settings, D1, PERSONS)
    key_file = settings.home / "api_key"
    key_file.write_text(KEY + "\n")
    proc, client = _start(settings, CONTACTRANK_API_KEY_FILE=str(key_file))
    try:
        yield settings, client
    finally:
        client.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


AUTH = {"Authorization": f"Bearer {KEY}"}


def _path(person_id: str) -> str:
    return f"/v1/persons/{quote(person_id, safe='')}/priority"


def _wait_for(predicate, seconds: float = 10.0) -> None:
    deadline = time.monotonic() + seconds
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


@pytest.mark.timeout(60)
def test_serve_refuses_to_start_without_a_key(settings: Settings) -> None:
    settings.home.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "contactrank.cli", "serve", "--port", str(_free_port())]
    missing_file = str(settings.home / "nope")
    for extra in ({}, {"CONTACTRANK_API_KEY": " "}, {"CONTACTRANK_API_KEY_FILE": missing_file}):
        proc = subprocess.run(cmd, cwd=ROOT, env=_env(settings, **extra), capture_output=True, text=True)
        assert proc.returncode == 1, proc.stderr
        assert "CONTACTRANK_API_KEY" in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


@pytest.mark.timeout(120)
def test_auth_validation_and_rows(server: tuple[Settings, httpx.Client]) -> None:
    _, client = server
    health = client.get("/healthz")  # no key needed
    assert health.status_code == 200 and health.json()["export"]["date"] == D1.isoformat()
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"}):
        for url in (_path("p0001"), "/v1/exports/latest", _path("")):
            r = client.get(url, headers=headers)
            assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer", (url, r.text)
    for bad in ("", "x" * 513, "p00\x0101", "tab\there", "nl\n"):
        assert client.get(_path(bad), headers=AUTH).status_code == 422, repr(bad)
    assert client.get(_path("x" * 512), headers=AUTH).status_code == 404
    assert client.get(_path("nobody"), headers=AUTH).status_code == 404

    for person in ("p0002", SLASHED):
        r = client.get(_path(person), headers=AUTH)
        assert r.status_code == 200, r.text
        assert r.headers["x-export-date"] == D1.isoformat() and r.headers["cache-control"] == "no-store"
        rows = r.json()
        i = PERSONS.index(person)
        assert [row["rank"] for row in rows] == list(range(1, 2 + i % 3))
        assert all(list(row) == PRIORITY_SCHEMA.names for row in rows)
        assert {row["person_id"] for row in rows} == {person}
        assert rows[0]["contact_id"] == f"+5511{D1.day:02d}{i:05d}1" and rows[0]["explore"] is False

    latest = client.get("/v1/exports/latest", headers=AUTH)
    assert latest.status_code == 200
    body = latest.json()
    assert body["date"] == D1.isoformat() and body["rows"] == len(_rows(D1, PERSONS))
    assert body["model"]["version"] == "7" and body["files"]["priority.parquet"]["sha256"]
    assert client.get("/docs").status_code == 404 and client.get("/openapi.json").status_code == 404


def _fire(client: httpx.Client, stop: threading.Event, seen: list, failures: list) -> None:
    i = 0
    while not stop.is_set():
        person = PERSONS[i % len(PERSONS)]
        i += 1
        try:
            r = client.get(_path(person), headers=AUTH)
        except httpx.HTTPError as exc:
            failures.append(repr(exc))
            continue
        if r.status_code != 200:
            failures.append(f"{person}: {r.status_code} {r.text}")
            continue
        day = r.headers["x-export-date"]
        versions = {row["model_version"] for row in r.json()}
        days = {row["contact_id"][5:7] for row in r.json()}
        if versions != {VERSION[day]} or days != {day[-2:]}:
            failures.append(f"{person}: header {day}, rows of {versions} {days}")
        seen.append(day)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_newer_export_swaps_atomically_under_load(server: tuple[Settings, httpx.Client]) -> None:
    settings, client = server
    # neither a folder without _SUCCESS nor a hidden staging folder is ever served
    half = export_dir(settings, date(2026, 11, 25))
    half.mkdir(parents=True)
    (half / "priority.parquet").write_bytes(b"half written")
    (half.parent / ".staging-date=2026-11-26-abcd").mkdir()
    seen: list[str] = []
    failures: list[str] = []
    stop = threading.Event()
    worker = threading.Thread(target=_fire, args=(client, stop, seen, failures))
    worker.start()
    try:
        time.sleep(1.5)
        _publish(settings, D2, PERSONS)
        _wait_for(lambda: bool(seen) and seen[-1] == D2.isoformat())
        time.sleep(1.0)
    finally:
        stop.set()
        worker.join(timeout=30)
    assert not failures, failures[:5]
    assert seen[0] == D1.isoformat() and seen[-1] == D2.isoformat(), (seen[0], seen[-1])
    switch = seen.index(D2.isoformat())
    assert set(seen[switch:]) == {D2.isoformat()}, "an older export answered after the swap"
    assert len(seen) > 50, len(seen)
    assert client.get("/healthz").json()["export"]["date"] == D2.isoformat()


@pytest.mark.timeout(120)
def test_damaged_export_is_not_served(server: tuple[Settings, httpx.Client]) -> None:
    settings, client = server
    _publish(settings, D2, PERSONS, damage=True)  # sha256 in the manifest differs from the file
    time.sleep(1.5)  # several polls
    r = client.get(_path("p0001"), headers=AUTH)
    assert r.status_code == 200 and r.headers["x-export-date"] == D1.isoformat()
    assert "not loaded" in (settings.home / "serve.log").read_text()


def _record_erasure(settings: Settings, person_id: str) -> None:
    """The keyed-hash record alone, as erase writes it first; the export is left as it is."""
    target = erasure_records_path(settings).parent
    table = pa.table(
        {
            "person_hash": [keyed_hash(settings, person_id)],
            "reason": ["erasure"],
            "erased_at": [datetime.now(UTC).isoformat(timespec="seconds")],
        }
    )
    with atomic_dir(target) as staging:
        pq.write_table(table, staging / erasure_records_path(settings).name)


@pytest.mark.timeout(120)
def test_erased_person_is_refused_after_publish(server: tuple[Settings, httpx.Client]) -> None:
    settings, client = server
    assert client.get(_path("p0003"), headers=AUTH).status_code == 200
    _record_erasure(settings, "p0003")
    _wait_for(lambda: client.get(_path("p0003"), headers=AUTH).status_code == 404)
    exported = pq.read_table(export_dir(settings, D1) / "priority.parquet").column("person_id").to_pylist()
    assert "p0003" in exported, "the 404 must come from the erasure records, not a new export"
    assert client.get(_path("p0004"), headers=AUTH).status_code == 200
    assert client.get("/healthz").json()["erased_persons"] == 1

    # the full erasure rewrites the export of the same date: the rewrite is loaded too
    erase(settings, "p0005")
    _wait_for(lambda: client.get(_path("p0005"), headers=AUTH).status_code == 404)
    assert client.get("/healthz").json()["erased_persons"] == 2
    r = client.get(_path("p0006"), headers=AUTH)
    assert r.status_code == 200 and r.headers["x-export-date"] == D1.isoformat()
