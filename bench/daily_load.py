"""Load test of the daily run: one whole day at the scale of the features benchmark.

History: 120 days x 300k attempts (36M rows), 2M persons, 5M contacts (the generator of
``bench/features.py``). Set-up (not measured): the last day's attempts become a landing file with
contact upserts and suppressions, the features are rebuilt in full at day 108 and built
incrementally up to day 118, so that 11 labelled days feed training. Measured: every step of
``contactrank run`` for day 119 (ingest, features, train, gate, score, publish, report), each in
its own process, with wall time, CPU seconds and peak RSS against the 6 GiB bound.

    nice .venv/bin/python bench/daily_load.py --home bench/out/load            # set-up + run
    nice .venv/bin/python bench/daily_load.py --home bench/out/load --run-only # run again
    .venv/bin/python bench/daily_load.py --home /tmp/load --scale 0.02         # smoke
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from contactrank.stages import STAGE_NAMES as STEPS  # noqa: E402

DAYS = 120
FIRST_TRAINING_DAY = 108  # 11 labelled days before the run date: 7 train + 3 validation + the test day
RSS_BOUND_GIB = 6.0


def _bench_features():
    """bench/features.py (its generator), loaded by path: its name clashes with the package."""
    spec = importlib.util.spec_from_file_location("bench_features", ROOT / "bench" / "features.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _settings(home: Path):
    from contactrank.settings import load_settings

    return load_settings(home=home)


def setup(home: Path, scale: float) -> dict:
    """Generate the history, turn its last day into landing files, build features up to the day before."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from contactrank.features.build import build_features
    from contactrank.features.lake import DATA_FILE, partition_dir
    from contactrank.features.schema import ATTEMPT_LANDING_COLUMNS

    bf = _bench_features()
    size = {k: max(int(v * scale), 1000) for k, v in bf.FULL.items() if k != "days"}
    shutil.rmtree(home, ignore_errors=True)
    t0 = time.perf_counter()
    gen = bf.generate(home, DAYS, size["per_day"], size["persons"], size["contacts"])
    s = _settings(home)
    run_day = bf.START + timedelta(days=DAYS - 1)
    # The run date's attempts and contact state leave the lake: ingest has to produce them.
    att = pq.read_table(partition_dir(s, "attempts", run_day) / DATA_FILE)
    shutil.rmtree(partition_dir(s, "attempts", run_day))
    shutil.rmtree(partition_dir(s, "contacts_state", run_day))
    land = s.landing
    (land / "attempts" / f"date={run_day}").mkdir(parents=True)
    pq.write_table(
        att.select(list(ATTEMPT_LANDING_COLUMNS)), land / "attempts" / f"date={run_day}" / "attempts.parquet"
    )
    state = pq.read_table(partition_dir(s, "contacts_state", run_day - timedelta(days=1)) / DATA_FILE)
    rng = np.random.default_rng(1)
    upd = state.take(pa.array(rng.choice(state.num_rows, max(state.num_rows // 250, 10), replace=False)))
    noon = int(datetime(run_day.year, run_day.month, run_day.day, 12, tzinfo=UTC).timestamp() * 1e6)
    contacts = pa.table({
        "person_id": upd["person_id"], "contact_id": upd["contact_id"], "channel": upd["channel"],
        "source": pa.array(["enrichment"] * upd.num_rows), "consent": upd["consent"],
        "active": pa.array(rng.random(upd.num_rows) > 0.2),
        "updated_at": pa.array(np.full(upd.num_rows, noon), pa.timestamp("us", tz="UTC")),
    })  # fmt: skip
    (land / "contacts" / f"date={run_day}").mkdir(parents=True)
    pq.write_table(contacts, land / "contacts" / f"date={run_day}" / "contacts.parquet")
    opt = att.filter(pa.compute.equal(att["outcome"], "opt_out"))
    (land / "suppressions" / f"date={run_day}").mkdir(parents=True)
    pq.write_table(
        pa.table(
            {
                "person_id": opt["person_id"],
                "contact_id": opt["contact_id"],
                "reason": pa.array(["opt_out"] * opt.num_rows),
            }
        ),
        land / "suppressions" / f"date={run_day}" / "suppressions.parquet",
    )
    t1 = time.perf_counter()
    built = [build_features(s, bf.START + timedelta(days=FIRST_TRAINING_DAY), full=True)]
    for day in range(FIRST_TRAINING_DAY + 1, DAYS - 1):
        built.append(build_features(s, bf.START + timedelta(days=day)))
        print(f"set-up: features of day {day}: {built[-1]['seconds']} s ({built[-1]['mode']})", flush=True)
    return {
        "generate": gen,
        "landing_attempts": att.num_rows,
        "landing_contacts": contacts.num_rows,
        "landing_suppressions": opt.num_rows,
        "features_setup_seconds": round(time.perf_counter() - t1, 1),
        "setup_seconds": round(time.perf_counter() - t0, 1),
        "run_date": run_day.isoformat(),
    }


def step(home: Path, name: str, d: date) -> dict:
    """One step of the daily run, in this process (called in a child by ``main``)."""
    from contactrank.settings import runtime_env

    runtime_env()  # before LightGBM loads
    from contactrank.pipeline import run_step

    t0 = time.perf_counter()
    out = run_step(name, _settings(home), d)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    keep = (
        "status",
        "mode",
        "rows",
        "state_rows",
        "training_rows",
        "candidates",
        "persons",
        "version",
        "reasons",
        "counts",
    )
    return {
        "step": name,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2),
        "load_avg_1m": round(os.getloadavg()[0], 1),
        **{k: v for k, v in out.items() if k in keep},
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", default=str(ROOT / "bench" / "out" / "load"))
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--run-only", action="store_true", help="skip the set-up (a previous run's home)")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--step-setup", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--date", help=argparse.SUPPRESS)
    ns = ap.parse_args()
    home = Path(ns.home).resolve()
    if ns.step:
        print(json.dumps(step(home, ns.step, date.fromisoformat(ns.date)), default=str))
        return
    res: dict = {"home": str(home), "scale": ns.scale}
    if ns.step_setup:
        print(json.dumps(setup(home, ns.scale), default=str))
        return
    if not ns.run_only:
        # In a child: Linux carries a process's peak RSS over fork and exec, so a parent that had
        # built the features itself would hand its peak to every measured step.
        out = subprocess.run(
            [sys.executable, __file__, "--home", str(home), "--scale", str(ns.scale), "--step-setup"],
            capture_output=True, text=True, cwd=ROOT,
        )  # fmt: skip
        if out.returncode != 0:
            raise SystemExit(f"set-up failed:\n{out.stderr[-3000:]}")
        res["setup"] = json.loads(out.stdout.strip().splitlines()[-1])
        (home / "setup.json").write_text(json.dumps(res["setup"], indent=2, default=str))
    else:
        # A second run of the same date: a fresh model registry, so train and gate do their work
        # again instead of finding the model of the first run (every other step replaces its output).
        (home / "mlflow.db").unlink(missing_ok=True)
        shutil.rmtree(home / "mlartifacts", ignore_errors=True)
    d = json.loads((home / "setup.json").read_text())["run_date"]
    res["steps"] = []
    t0 = time.perf_counter()
    for name in STEPS:
        out = subprocess.run([sys.executable, __file__, "--home", str(home), "--step", name, "--date", d],
                             capture_output=True, text=True, cwd=ROOT)  # fmt: skip
        if out.returncode != 0:
            raise SystemExit(f"step {name} failed:\n{out.stderr[-3000:]}")
        res["steps"].append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(json.dumps(res["steps"][-1], default=str), flush=True)
    res["total_wall_seconds"] = round(time.perf_counter() - t0, 1)
    res["max_peak_rss_gib"] = max(x["peak_rss_gib"] for x in res["steps"])
    res["within_bound"] = res["max_peak_rss_gib"] <= RSS_BOUND_GIB
    print(json.dumps({k: v for k, v in res.items() if k != "steps"}, default=str))
    (home / "run.json").write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
