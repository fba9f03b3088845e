"""Training in one process vs on a Dask LocalCluster (`train_engine = "dask"`): time and memory.

    nice -n 10 .venv/bin/python bench/train_dask.py --rows 1000000 --rows 3000000
    .venv/bin/python bench/train_dask.py --rows 100000 --days 12                  # smoke

Synthetic training days (``tests/helpers/synth_training.py``, padded with noise columns to
``--features`` model features, float32 Parquet) are written once per size; then ``train(force=True)``
runs in a fresh subprocess per engine. A sampler thread records the peak RSS of the training
process (the driver) and of all its descendants (the Dask scheduler runs in the driver; the
workers are child processes), and CPU seconds are counted for the process and its reaped children.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import sys
import tempfile
import threading
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "tests"))
END = date(2026, 11, 20)
GIB = 2**30


def _settings(home: Path, engine: str = "local"):
    from contactrank.settings import load_settings

    # every generated row trains (no sampling cap); 2 threads in one process or 2 workers of 1 thread
    return load_settings(home=home, train_max_rows=10**9, train_engine=engine, dask_workers=2, num_threads=2)


def gen(home: Path, rows: int, days: int, features: int) -> dict:
    from train import gen as write_synthetic_days  # bench/train.py, next to this script: the same days

    return write_synthetic_days(home, rows, days, features)


class Peak(threading.Thread):
    """Samples the RSS of this process and of its descendants every ``every`` seconds."""

    def __init__(self, every: float = 0.2) -> None:
        super().__init__(daemon=True)
        import psutil

        self.me, self.every, self.stop = psutil.Process(), every, threading.Event()
        self.driver = self.children = self.total = 0
        self.workers = 0

    def run(self) -> None:
        import psutil

        while not self.stop.is_set():
            try:
                mine = self.me.memory_info().rss
                kids = []
                for c in self.me.children(recursive=True):
                    try:
                        kids.append(c.memory_info().rss)
                    except psutil.Error:
                        pass
            except psutil.Error:
                continue
            self.driver = max(self.driver, mine)
            self.children = max(self.children, sum(kids))
            self.total = max(self.total, mine + sum(kids))
            self.workers = max(self.workers, max(kids, default=0))
            time.sleep(self.every)


def train_phase(home: Path, engine: str) -> dict:
    from contactrank.ml.train import train

    lines: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logging.getLogger("contactrank.ml.train_dask").addHandler(Keep())
    logging.getLogger("contactrank.ml.train_dask").setLevel(logging.INFO)
    peak = Peak()
    peak.start()
    t = time.perf_counter()
    out = train(_settings(home, engine), END, force=True)
    wall = time.perf_counter() - t
    peak.stop.set()
    peak.join()
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return {
        "engine": engine,
        "wall_s": wall,
        "timings": out["timings"],
        "rows_train": out["counts"]["rows_train"],
        "best_iteration": out["counts"]["best_iteration"],
        "auc": out["metrics"]["auc"],
        "cpu_s": own.ru_utime + own.ru_stime,
        "children_cpu_s": kids.ru_utime + kids.ru_stime,
        "driver_peak_gib": own.ru_maxrss * 1024 / GIB,
        "workers_peak_gib": peak.workers / GIB,  # the largest single child process
        "children_peak_gib": peak.children / GIB,
        "total_peak_gib": peak.total / GIB,
        "dask_log": lines,
        "load": os.getloadavg(),
    }


def _sub(*args: str) -> dict:
    from train import run_phase  # bench/train.py, next to this script

    return run_phase(__file__, *args)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, action="append", help="training rows (repeat for several sizes)")
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--features", type=int, default=100)
    ap.add_argument("--engines", default="local,dask")
    ap.add_argument("--phase", choices=["gen", "train"], help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    ap.add_argument("--engine", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.phase:
        home = Path(a.home)
        res = gen(home, a.rows[0], a.days, a.features) if a.phase == "gen" else train_phase(home, a.engine)
        print(json.dumps(res, default=float))
        return
    for rows in a.rows or [1_000_000]:
        with tempfile.TemporaryDirectory(prefix="bench-train-dask-") as tmp:
            home = Path(tmp) / "home"
            made = _sub("--phase", "gen", "--home", str(home), "--rows", str(rows), "--days", str(a.days),
                        "--features", str(a.features))  # fmt: skip
            print(json.dumps({"rows": rows, **made}), flush=True)
            for engine in a.engines.split(","):
                res = _sub("--phase", "train", "--home", str(home), "--engine", engine)
                print(json.dumps({"rows": rows, **res}, default=float), flush=True)


if __name__ == "__main__":
    main()
