"""Simulate worlds of different structure, backfill the pipeline on each, judge the last export.

    nice .venv/bin/python bench/judge_worlds.py --root R --worlds habits,timezones \\
        --persons 5000 --days 42 --retrain-every 7

For each world: ``features.simulate.simulate(..., world=NAME)`` into ``R/NAME/landing`` (Parquet),
then ``contactrank.pipeline.run_date`` for every day into ``R/NAME/home`` (the steps of
``contactrank backfill`` without the HTML report; score and publish only on the last day, since
earlier exports feed nothing when the incumbent dials), then ``bench/judge.py`` on the export of the
last day (``--judge-only`` skips the first two steps and re-judges an earlier run). The retrain
cadence is the one setting changed, to keep a world affordable; choose ``--days`` so the last day
is a training day (with 7 labelled days needed first, 42 days and a cadence of 7 train on day 42).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from judge import judge_run, print_table  # noqa: E402  (the bench folder is not a package)

from contactrank.features.simulate import simulate  # noqa: E402
from contactrank.pipeline import run_date  # noqa: E402
from contactrank.settings import load_settings, runtime_env  # noqa: E402


def settings_for(home: Path, landing: Path, retrain_every: int, **overrides):
    """Default settings of a run, but for the home, the landing and the retrain cadence."""
    return load_settings(home=home, landing_dir=landing, retrain_every_days=retrain_every, **overrides)


def pipeline_days(settings, start: date, end: date, landing: Path, publish_from: date) -> dict:
    """``contactrank.pipeline.run_date`` for every day, without the HTML report (nothing reads it),
    scoring and publishing from ``publish_from`` on: earlier exports feed nothing in an open loop.
    Returns seconds per step."""
    spent: dict[str, float] = {}

    def clock(step: str) -> None:
        now = time.perf_counter()
        if clock.step:
            spent[clock.step] = spent.get(clock.step, 0.0) + now - clock.t
        clock.step, clock.t = step, now

    clock.step, clock.t = None, 0.0
    d = start
    while d <= end:
        steps = PUBLISHING if d >= publish_from else LEARNING
        run_date(settings, d, landing, on_step=clock, steps=steps)
        clock("")
        d += timedelta(days=1)
    return {k: round(v, 1) for k, v in spent.items() if k}


LEARNING = ("ingest", "features", "train", "gate")
PUBLISHING = (*LEARNING, "score", "publish")


def run_world(root: Path, name: str, a: argparse.Namespace) -> dict:
    """Simulate one world and run the pipeline over it; returns sizes and times."""
    base = root / name
    landing, home = base / "landing", base / "home"
    end = a.start + timedelta(days=a.days - 1)
    out: dict = {"world": name, "persons": a.persons, "days": a.days, "seed": a.seed}
    t = time.perf_counter()
    sim = simulate(landing, a.start, a.days, persons=a.persons, seed=a.seed, fmt="parquet", world=name)
    out["simulate_s"] = round(time.perf_counter() - t, 1)
    out["attempts"] = sim["attempts"]
    t, cpu = time.perf_counter(), time.process_time()
    out["steps_s"] = pipeline_days(settings_for(home, landing, a.retrain_every), a.start, end, landing, end)
    out["pipeline_s"] = round(time.perf_counter() - t, 1)
    out["pipeline_cpu_s"] = round(time.process_time() - cpu, 1)
    out["load_after"] = round(os.getloadavg()[0], 1)
    (base / "run.json").write_text(json.dumps(out, indent=1))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--worlds", default="habits,office_hours_incumbent,timezones")
    ap.add_argument("--persons", type=int, default=5000)
    ap.add_argument("--days", type=int, default=42)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--start", type=date.fromisoformat, default=date(2026, 9, 1))
    ap.add_argument("--retrain-every", type=int, default=7)
    ap.add_argument("--judge-only", action="store_true")
    ap.add_argument("--no-ceiling", action="store_true", help="skip the history-ceiling estimator")
    ap.add_argument(
        "--ceiling-file-order",
        action="store_true",
        help="let the ceiling read the addresses' age order from the first contacts file's rows",
    )
    a = ap.parse_args()
    runtime_env()  # before LightGBM loads: idle OpenMP threads sleep on a shared machine
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    logging.basicConfig(level=logging.WARNING)
    for name in a.worlds.split(","):
        if not a.judge_only:
            print(json.dumps(run_world(a.root, name, a)), flush=True)
        base = a.root / name
        end = a.start + timedelta(days=a.days - 1)
        report = judge_run(base / "landing", base / "home", end, name, not a.no_ceiling, a.ceiling_file_order)
        print_table(report)
        (base / "judge.json").write_text(json.dumps(report, indent=1, default=float))


if __name__ == "__main__":
    main()
