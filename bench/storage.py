"""The S3 backend against the local one on a small simulated world.

Simulates a world, then runs the real CLI (`backfill`, then each step of the last day again, one
process per step, as the DAG runs them) once on a local home and once with `lake_uri`/`exports_uri`
on a local S3 server (moto, in a thread of this process: a pure-Python server on the same 2 cores,
so a pessimistic stand-in for MinIO or S3). Runs one after the other; prints one JSON line with the
wall times, the S3/local ratios and the load average. Figures go in docs/benchmarks.md.

    python bench/storage.py [--persons 2000] [--days 6]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from contactrank.features.simulate import simulate  # noqa: E402
from tests.helpers.s3 import aws_env, new_bucket, s3_uris, start_server  # noqa: E402

START = date(2026, 2, 2)
STEPS = ("ingest", "features", "train", "score", "publish", "report")  # train runs the gate too
FLAGS = {"train": ("--force",)}
FAST = {"CONTACTRANK_MIN_TRAIN_DAYS": "2", "CONTACTRANK_VALID_DAYS": "1", "CONTACTRANK_GATE_AUC_FLOOR": "0.5"}


def _cli(home: Path, landing: Path, extra: dict[str, str], *args: str) -> float:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONTACTRANK_", "AWS_"))}
    env.update(FAST)
    env.update(
        CONTACTRANK_HOME=str(home),
        CONTACTRANK_LANDING_DIR=str(landing),
        CONTACTRANK_CONFIG=str(home.parent / "absent.toml"),
        PYTHONPATH=str(ROOT),
        **extra,
    )
    home.parent.mkdir(parents=True, exist_ok=True)
    t = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "contactrank.cli", *args],
        env=env,
        cwd=home.parent,
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed: {proc.stderr[-2000:]}")
    return round(time.perf_counter() - t, 2)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--persons", type=int, default=2000)
    p.add_argument("--days", type=int, default=6)
    a = p.parse_args()
    last = START + timedelta(days=a.days - 1)
    server = start_server()
    try:
        env = aws_env(server)
        uris = s3_uris(new_bucket(env["AWS_ENDPOINT_URL"]))
        s3 = {**env, "CONTACTRANK_LAKE_URI": uris["lake_uri"], "CONTACTRANK_EXPORTS_URI": uris["exports_uri"]}
        with tempfile.TemporaryDirectory() as tmp:
            landing = Path(tmp) / "landing"
            simulate(landing, START, a.days + 1, persons=a.persons, seed=11)
            out: dict = {"persons": a.persons, "days": a.days, "load_before": os.getloadavg()[0]}
            for name, extra in (("local", {}), ("s3", s3)):
                home = Path(tmp) / name / "home"
                out[f"{name}_backfill_s"] = _cli(
                    home, landing, extra, "backfill", "--start", START.isoformat(), "--end", last.isoformat()
                )
                steps = {  # train is forced: it would be "not due" on a rerun, fitting nothing
                    step: _cli(home, landing, extra, step, "--date", last.isoformat(), *FLAGS.get(step, ()))
                    for step in STEPS
                }
                out[f"{name}_steps_s"] = steps
                out[f"{name}_day_s"] = round(sum(steps.values()), 2)
            out["backfill_ratio"] = round(out["s3_backfill_s"] / out["local_backfill_s"], 2)
            out["day_ratio"] = round(out["s3_day_s"] / out["local_day_s"], 2)
            out["step_ratio"] = {k: round(out["s3_steps_s"][k] / out["local_steps_s"][k], 2) for k in STEPS}
            out["load_after"] = os.getloadavg()[0]
    finally:
        server.stop()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
