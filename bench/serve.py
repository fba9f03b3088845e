"""Benchmark of the lookup API (``contactrank serve``): load time, memory, requests/s at p99 <= 10 ms.

    .venv/bin/python bench/serve.py                         # 2M persons x 2.5 rows (the target case)
    .venv/bin/python bench/serve.py --persons 100000 --duration 3   # a quick run

Steps: write a synthetic export of N persons (1-4 rows each, 2.5 on average, the contract's
columns) as ml.publish lays it out; start ``python -m contactrank.cli serve`` on loopback and time
it until /healthz reports the export (the server's own load time is in /healthz too); read its RSS;
then, for each number of concurrent connections, run ``wrk`` (or, without wrk, an asyncio httpx
client in a separate process) against ``/v1/persons/{id}/priority`` with random known ids and
report requests/s, p50, p99 and the server's CPU time per request (the figure that does not depend
on what else the machine runs). Last, publish a second date and time the swap and the peak RSS
(both indexes are in memory while the new one is built). ``--pin`` pins the server to CPU 0 and the
load generator to CPU 1 (``taskset``): fair on a quiet machine, harmful on a busy one (the server
cannot move to the less busy core).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import platform
import random
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contactrank.ml.publish import PRIORITY_SCHEMA  # noqa: E402 - after the sys.path line above

D1, D2 = date(2026, 11, 20), date(2026, 11, 21)
KEY = "bench-key-" + "0" * 32
TARGET_P99_MS = 10.0
CHANNELS = np.array(["voice", "sms", "email", "whatsapp"], dtype=object)


def synthetic_table(persons: int, seed: int = 0) -> pa.Table:
    """``persons`` persons with 1-4 rows each (2.5 on average), ranks 1..n, in the contract's columns."""
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 5, persons)
    n = int(counts.sum())
    person = np.repeat(np.arange(persons), counts)
    first = np.repeat(np.cumsum(counts) - counts, counts)
    rank = (np.arange(n) - first + 1).astype(np.int32)
    ids = pc.utf8_lpad(pa.array(person).cast(pa.string()), 11, "0")  # an 11-digit CPF-like id
    contact = pc.binary_join_element_wise(
        "+5511", pc.utf8_lpad(pa.array(np.arange(n)).cast(pa.string()), 9, "0"), ""
    )
    columns = {
        "person_id": ids,
        "contact_id": contact,
        "channel": pa.array(CHANNELS[rng.integers(0, 4, n)], pa.string()),
        "rank": pa.array(rank),
        "score": pa.array(np.round(rng.random(n) / rank, 6)),
        "best_hour": pa.array(rng.integers(8, 22, n).astype(np.int32)),
        "reason": pa.array(np.where(rank == 1, "recent_success;answers_evenings", "explore"), pa.string()),
        "explore": pa.array(rank > 1),
        "propensity": pa.array(np.where(rank == 1, 0.95, 0.05)),
        "model_version": pa.array(np.full(n, "12", dtype=object), pa.string()),
        "timezone": pa.array(np.full(n, "America/Sao_Paulo", dtype=object), pa.string()),
        "best_hour_utc": pa.array(rng.integers(11, 24, n).astype(np.int32)),
    }
    arrays = [
        columns[f.name].cast(f.type) if f.name in columns else pa.nulls(n, f.type) for f in PRIORITY_SCHEMA
    ]
    return pa.Table.from_arrays(arrays, schema=PRIORITY_SCHEMA)


def publish_copy(home: Path, d: date, parquet: Path, persons: int, rows: int) -> None:
    """``date=D`` as ml.publish writes it: hidden staging folder, files, manifest, _SUCCESS, rename."""
    root = home / "exports" / "priority"
    staging = root / f".staging-date={d.isoformat()}-bench"
    staging.mkdir(parents=True)
    shutil.copyfile(parquet, staging / "priority.parquet")
    digest = hashlib.sha256((staging / "priority.parquet").read_bytes()).hexdigest()
    manifest = {
        "schema_version": "1",
        "date": d.isoformat(),
        "model": {"name": "contactrank", "version": "12", "run_id": "bench"},
        "rows": rows,
        "persons": persons,
        "pseudonymised": False,
        "files": {"priority.parquet": {"sha256": digest, "bytes": parquet.stat().st_size}},
        "created_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    (staging / "_manifest.json").write_text(json.dumps(manifest, indent=2))
    (staging / "_SUCCESS").write_text("")
    os.replace(staging, root / f"date={d.isoformat()}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthz(port: int) -> dict | None:
    import urllib.request  # stdlib client: the bench's own probes stay out of the measured process

    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2) as r:
            return json.loads(r.read())
    except OSError:
        return None


def start_server(home: Path, port: int, pin: bool) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONTACTRANK_")}
    env.update(
        CONTACTRANK_HOME=str(home), CONTACTRANK_CONFIG=str(home / "absent.toml"), CONTACTRANK_API_KEY=KEY
    )
    cmd = [sys.executable, "-m", "contactrank.cli", "serve", "--port", str(port), "--poll-seconds", "1"]
    if pin and shutil.which("taskset"):
        cmd = ["taskset", "-c", "0", *cmd]
    log = (home / "serve.log").open("ab")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=log)


def wait_for(port: int, proc: subprocess.Popen, day: str | None, limit: float = 900) -> tuple[float, dict]:
    began = time.monotonic()
    while time.monotonic() - began < limit:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}")
        h = healthz(port)
        if h is not None and (day is None or (h.get("export") or {}).get("date") == day):
            return time.monotonic() - began, h
        time.sleep(0.05)
    raise SystemExit("the server did not come up in time")


def server_cpu(proc: subprocess.Popen) -> float:
    """CPU seconds (user + system) the server has used so far (taskset execs it: same pid)."""
    t = psutil.Process(proc.pid).cpu_times()
    return t.user + t.system


def server_memory(proc: subprocess.Popen) -> tuple[float, float]:
    """(RSS, peak RSS) in MiB of the server (taskset execs it: same pid)."""
    p = psutil.Process(proc.pid)
    status = Path(f"/proc/{p.pid}/status").read_text()
    peak = int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024
    return p.memory_info().rss / 2**20, peak


WRK_SCRIPT = """
local ids = {}
for line in io.lines("%(ids)s") do ids[#ids + 1] = line end
math.randomseed(%(seed)d)
local headers = {["Authorization"] = "Bearer %(key)s"}
request = function()
  return wrk.format("GET", "/v1/persons/" .. ids[math.random(#ids)] .. "/priority", headers)
end
"""


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()
    return float(value) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[unit]


def run_wrk(port: int, script: Path, connections: int, seconds: float, pin: bool) -> dict:
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script)]
    cmd.append(f"http://127.0.0.1:{port}")
    if pin and shutil.which("taskset"):
        cmd = ["taskset", "-c", "1", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 60).stdout
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.M))
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50_ms": _ms(lat["50"]),
        "p99_ms": _ms(lat["99"]),
        "errors": int(errors.group(1)) if errors else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else None,
    }


async def _httpx_load(port: int, ids: list[str], connections: int, seconds: float) -> dict:
    import httpx  # only the fallback load generator needs it

    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as client:
        end = time.monotonic() + seconds

        async def worker(seed: int) -> None:
            nonlocal errors
            rng = random.Random(seed)
            while time.monotonic() < end:
                t0 = time.perf_counter()
                r = await client.get(
                    f"/v1/persons/{rng.choice(ids)}/priority", headers={"Authorization": f"Bearer {KEY}"}
                )
                latencies.append((time.perf_counter() - t0) * 1e3)
                errors += r.status_code != 200

        await asyncio.gather(*(worker(i) for i in range(connections)))
    lat = np.array(latencies)
    return {
        "rps": len(lat) / seconds,
        "p50_ms": float(np.percentile(lat, 50)),
        "p99_ms": float(np.percentile(lat, 99)),
        "errors": errors,
        "socket_errors": None,
    }


def httpx_child(args: argparse.Namespace) -> None:
    ids = Path(args.ids).read_text().split()
    print(json.dumps(asyncio.run(_httpx_load(args.port, ids, args.connections, args.duration))))


def run_httpx(port: int, ids: Path, connections: int, seconds: float, pin: bool) -> dict:
    cmd = [sys.executable, __file__, "--httpx-child", "--port", str(port), "--ids", str(ids)]
    cmd += ["--connections", str(connections), "--duration", str(seconds)]
    if pin and shutil.which("taskset"):
        cmd = ["taskset", "-c", "1", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=seconds + 120).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--persons", type=int, default=2_000_000)
    ap.add_argument("--duration", type=int, default=10, help="seconds per concurrency level")
    ap.add_argument("--connections", default="1,2,4,8,16,32,64")
    ap.add_argument("--tool", choices=["auto", "wrk", "httpx"], default="auto")
    ap.add_argument("--pin", action="store_true", help="pin the server to CPU 0 and the client to CPU 1")
    ap.add_argument("--httpx-child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--ids", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.httpx_child:
        args.connections = int(args.connections)
        httpx_child(args)
        return
    pin = args.pin
    tool = ("wrk" if shutil.which("wrk") else "httpx") if args.tool == "auto" else args.tool
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, "
        f"{psutil.virtual_memory().total / 2**30:.1f} GiB"
    )
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    work = Path(tempfile.mkdtemp(prefix="contactrank-bench-serve-"))
    proc = None
    try:
        t0 = time.monotonic()
        table = synthetic_table(args.persons)
        parquet = work / "priority.parquet"
        pq.write_table(table, parquet, compression="zstd")
        rows = table.num_rows
        sample = random.Random(0).sample(range(args.persons), min(100_000, args.persons))
        ids = work / "ids.txt"
        ids.write_text("\n".join(f"{i:011d}" for i in sample) + "\n")
        del table
        print(
            f"export: {args.persons:,} persons, {rows:,} rows, "
            f"priority.parquet {parquet.stat().st_size / 2**20:.0f} MiB "
            f"(built in {time.monotonic() - t0:.1f}s)"
        )
        home = work / "home"
        publish_copy(home, D1, parquet, args.persons, rows)

        port = free_port()
        proc = start_server(home, port, pin)
        start_s, h = wait_for(port, proc, D1.isoformat())
        rss, peak = server_memory(proc)
        print(
            f"start-up to first answer: {start_s:.1f}s (index load {h['export']['load_seconds']:.1f}s); "
            f"RSS {rss:.0f} MiB, peak {peak:.0f} MiB"
        )

        script = work / "load.lua"
        script.write_text(WRK_SCRIPT % {"ids": ids, "seed": 7, "key": KEY})
        print(f"load generator: {tool} ({'server on CPU 0, client on CPU 1' if pin else 'not pinned'})")
        print(
            f"{'conns':>5} {'req/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'errors':>6} {'server CPU us/req':>17}"
        )
        results = []
        for c in (int(x) for x in args.connections.split(",")):
            cpu = server_cpu(proc)
            if tool == "wrk":
                r = run_wrk(port, script, c, args.duration, pin)
            else:
                r = run_httpx(port, ids, c, args.duration, pin)
            cpu_us = (server_cpu(proc) - cpu) / max(r["rps"] * args.duration, 1) * 1e6
            results.append((c, r))
            extra = f"  socket errors: {r['socket_errors']}" if r["socket_errors"] else ""
            print(
                f"{c:>5} {r['rps']:>9.0f} {r['p50_ms']:>8.2f} {r['p99_ms']:>8.2f} {r['errors']:>6} "
                f"{cpu_us:>17.0f}{extra}"
            )
        ok = [(c, r) for c, r in results if r["p99_ms"] <= TARGET_P99_MS and r["errors"] == 0]
        if ok:
            c, r = max(ok, key=lambda x: x[1]["rps"])
            print(
                f"best at p99 <= {TARGET_P99_MS:.0f} ms: {r['rps']:.0f} req/s with {c} connections "
                f"(p99 {r['p99_ms']:.2f} ms)"
            )
        else:
            print(f"no level met p99 <= {TARGET_P99_MS:.0f} ms")
        rss, peak = server_memory(proc)
        print(f"after the load: RSS {rss:.0f} MiB, peak {peak:.0f} MiB")

        t0 = time.monotonic()
        publish_copy(home, D2, parquet, args.persons, rows)
        swap_s, h = wait_for(port, proc, D2.isoformat())
        rss, peak = server_memory(proc)
        print(
            f"swap to a new export: served {swap_s:.1f}s after the rename (poll 1s, index load "
            f"{h['export']['load_seconds']:.1f}s); RSS {rss:.0f} MiB, peak {peak:.0f} MiB"
        )
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
