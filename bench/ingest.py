"""Benchmark ingest on one 1M-row attempts file, as CSV and as Parquet.

For each format: rows/s and peak RSS of ``features.ingest.ingest`` (whole step: read, validate,
normalise, dedupe, contacts state, write partitions), and the same for a bare pyarrow read of the
same file (the floor). Each measurement runs in a fresh child process so peak RSS is its own.
"day 2" ingests the next date's file (same shape, other seed) on top of the first date's lake, so
the contacts state merges with ~850k known addresses: the steady-state cost of a daily run (its
peak RSS includes building the first date in the same child, before the clock starts).

    nice .venv/bin/python bench/ingest.py [--rows 1000000] [--repeat 3] [--workdir /tmp/bench-ingest]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import platform
import resource
import shutil
import sys
import time
from datetime import date, timedelta
from pathlib import Path

# bench/ holds scripts named like the packages (bench/features.py): import the real ones
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402
import pyarrow.compute as pc  # noqa: E402
import pyarrow.csv as pacsv  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402

DAY = date(2026, 1, 5)


def make_file(rows: int, folder: Path, fmt: str, seed: int = 0, day: date = DAY) -> Path:
    """A realistic attempts file: 12% national-format phones, upper-case e-mails, -03:00 offsets."""
    from contactrank.features.schema import CHANNELS, OUTCOMES
    from contactrank.features.simulated_landing import iso_local, messy_ids, utc_timestamps
    from contactrank.features.simulated_world import concat_text, to_text

    rng = np.random.default_rng(seed)
    persons = rng.integers(0, rows // 2, rows)
    addr = persons * 4 + rng.integers(0, 4, rows)
    ch = rng.choice(4, rows, p=[0.5, 0.15, 0.2, 0.15])
    phone = concat_text("+55", to_text(11 * 10**9 + 900_000_000 + addr))
    email = concat_text("p", to_text(persons), ".", to_text(addr), "@mail.example")
    ids = pc.if_else(pa.array(ch == 2), email, phone)
    secs = np.sort(rng.integers(8 * 3600, 22 * 3600, rows))
    prefix = "A" if day == DAY else f"A{day:%m%d}-"
    outcome = rng.choice(len(OUTCOMES), rows, p=[0.38, 0.04, 0.13, 0.07, 0.17, 0.04, 0.11, 0.05, 0.01])
    duration = np.where(ch == 0, np.round(rng.exponential(60.0, rows), 1), np.nan)
    table = pa.table(
        {
            "attempt_id": concat_text(prefix, pc.utf8_lpad(to_text(np.arange(rows)), width=9, padding="0")),
            "person_id": concat_text("P", pc.utf8_lpad(to_text(persons), width=8, padding="0")),
            "contact_id": messy_ids(rng, ids, ch),
            "channel": pa.array(np.array(CHANNELS)[ch]),
            "attempted_at": utc_timestamps(day, secs) if fmt == "parquet" else iso_local(day, secs),
            "outcome": pa.array(np.array(OUTCOMES)[outcome]),
            "campaign_id": pa.array(np.array(["C01", "C02", "C03"])[rng.integers(0, 3, rows)]),
            "duration_s": pa.array(duration, mask=np.isnan(duration)),
        }
    )
    out = folder / "attempts" / f"date={day.isoformat()}"
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"part-0.{fmt}"
    if fmt == "parquet":
        pq.write_table(table, path, compression="zstd")
    else:
        pacsv.write_csv(table, path)
    return path


def _child(task: str, path: str, home: str, queue: mp.Queue) -> None:
    # imports and settings before the clock starts: we time the work, not interpreter start-up
    import duckdb  # noqa: F401
    import pandas  # noqa: F401

    from contactrank.features.ingest import ingest
    from contactrank.settings import load_settings

    settings = load_settings(home=Path(home))
    day = DAY
    if task == "day2":  # the first date's lake is built before the clock starts
        ingest(settings, DAY, landing=Path(path).parents[2])
        day = DAY + timedelta(days=1)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    if task == "bare":
        table = pacsv.read_csv(path) if path.endswith(".csv") else pq.read_table(path)
        rows = table.num_rows
    else:
        report = ingest(settings, day, landing=Path(path).parents[2])
        rows = report["kinds"]["attempts"]["read"]
    seconds = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    queue.put({"rows": rows, "seconds": seconds, "cpu_seconds": cpu, "peak_rss": r1.ru_maxrss * 1024})


def measure(task: str, path: Path, home: Path) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(task, str(path), str(home), queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--workdir", default="/tmp/bench-ingest")
    ap.add_argument("--formats", default="csv,parquet", help="comma-separated: csv, parquet")
    a = ap.parse_args()
    work = Path(a.workdir)
    load_before = list(os.getloadavg())
    shutil.rmtree(work, ignore_errors=True)
    results = {}
    for fmt in a.formats.split(","):
        landing = work / f"landing-{fmt}"
        path = make_file(a.rows, landing, fmt)
        make_file(a.rows, landing, fmt, seed=1, day=DAY + timedelta(days=1))
        runs = {"bare": [], "ingest": [], "day2": []}
        for i in range(a.repeat):
            runs["bare"].append(measure("bare", path, work / "unused"))
            runs["ingest"].append(measure("ingest", path, work / f"home-{fmt}-{i}"))
            runs["day2"].append(measure("day2", path, work / f"home2-{fmt}-{i}"))
        best = {k: min(r, key=lambda x: x["seconds"]) for k, r in runs.items()}
        results[fmt] = {
            "file_mb": round(path.stat().st_size / 2**20, 1),
            "rows": best["ingest"]["rows"],
            "bare_read_s": round(best["bare"]["seconds"], 3),
            "bare_cpu_s": round(best["bare"]["cpu_seconds"], 3),
            "bare_rows_per_s": round(best["bare"]["rows"] / best["bare"]["seconds"]),
            "bare_peak_rss_mib": round(max(x["peak_rss"] for x in runs["bare"]) / 2**20),
        }
        for task in ("ingest", "day2"):
            b = best[task]
            results[fmt][task] = {
                "seconds": round(b["seconds"], 3),
                "all_seconds": [round(x["seconds"], 3) for x in runs[task]],
                "rows_per_s": round(b["rows"] / b["seconds"]),
                "cpu_s": round(b["cpu_seconds"], 3),
                "min_cpu_s": round(min(x["cpu_seconds"] for x in runs[task]), 3),
                "peak_rss_mib": round(max(x["peak_rss"] for x in runs[task]) / 2**20),
                "ratio_to_bare": round(b["seconds"] / best["bare"]["seconds"], 2),
                "cpu_ratio_to_bare": round(b["cpu_seconds"] / max(best["bare"]["cpu_seconds"], 1e-9), 2),
            }
    print(
        json.dumps(
            {
                "machine": f"{platform.machine()} {mp.cpu_count()} cores, Python {platform.python_version()}",
                "pyarrow": pa.__version__,
                "load_average_before": load_before,
                "load_average_after": list(os.getloadavg()),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
