"""The cost of sharding: one day's features and score split into 1, 2, 4 and 8 shards of persons.

Takes a home set up by ``bench/daily_load.py`` (any ``--scale``; its run date ingested and a
champion registered, as after a daily-load run) and copies it to ``--work``. For every shard count
N it measures, each task in its own process as an Airflow worker runs it, the CPU seconds, wall
time and peak RSS of the library call of every task of the run date:

- N = 1: ``features`` and ``score`` whole (what runs today);
- N > 1: ``features`` as ``prepare``, ``state[k]``, ``shared_rates``, ``rows[k]``, and ``score[k]``,
  after the day before was built with the same N (unmeasured), so that each shard reads its own
  state as it does every day after the first.

Figures: the per-shard cost (state + rows + score of one shard, mean and max over shards) against
a 1/N share of the unsharded cost, with and without the steps that run once (prepare and the
shared rates). The target: at 4 shards, per shard <= 1.15 x a quarter of one shard.

    .venv/bin/python bench/shards.py --home /tmp/load --work /tmp/load-shards [--counts 1,2,4,8]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]


def child(spec: dict) -> dict:
    """One task, in this process: the library call alone is timed (imports are not)."""
    from contactrank.settings import load_settings, runtime_env

    runtime_env()
    from contactrank.features import feature_shards
    from contactrank.ml.score import score
    from contactrank.pipeline import run_step
    from contactrank.shards import Shard

    settings = load_settings(home=Path(spec["home"]), shards=spec["shards"])
    d = date.fromisoformat(spec["date"])
    shard = Shard(spec["shard"], spec["shards"]) if spec.get("shard") is not None else None
    calls = {
        "features": lambda: run_step("features", settings, d),
        "score": lambda: run_step("score", settings, d),
        "prepare": lambda: feature_shards.prepare_features(settings, d),
        "state": lambda: feature_shards.build_state_shard(settings, d, shard),
        "shared_rates": lambda: feature_shards.build_shared_rates(settings, d),
        "rows": lambda: feature_shards.build_rows_shard(settings, d, shard),
        "score_shard": lambda: score(settings, d, shard=shard),
    }
    wall, cpu = time.perf_counter(), time.process_time()
    calls[spec["task"]]()
    return {
        **spec,
        "cpu_seconds": round(time.process_time() - cpu, 2),
        "wall_seconds": round(time.perf_counter() - wall, 2),
        "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
        "load_avg_1m": round(os.getloadavg()[0], 1),
    }


def _task(work: Path, shards: int, d: date, task: str, shard: int | None = None) -> dict:
    spec = {"home": str(work), "shards": shards, "date": d.isoformat(), "task": task, "shard": shard}
    out = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True, cwd=ROOT
    )
    if out.returncode != 0:
        raise SystemExit(f"{task} {shard} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    which = "" if shard is None else shard
    print(f"  {shards} shard(s): {task}[{which}] {result['cpu_seconds']} CPU-s", flush=True)
    return result


def _prebuild(work: Path, shards: int, d: date) -> None:
    """The features of ``d`` with ``shards`` shards, unmeasured (the day before the measured one)."""
    from contactrank.features.feature_shards import build_all_shards
    from contactrank.pipeline import run_step
    from contactrank.settings import load_settings

    if shards == 1:
        run_step("features", load_settings(home=work), d)
    else:
        build_all_shards(load_settings(home=work, shards=shards), d)


def measure(work: Path, d: date, shards: int) -> dict:
    # the day before built with the same code and split, as every N does: its saved rates are
    # read by the measured day's training rows (a home set up by older code has none)
    _prebuild(work, shards, d - timedelta(days=1))
    if shards == 1:
        tasks = [_task(work, 1, d, "features"), _task(work, 1, d, "score")]
        return {
            "shards": 1,
            "tasks": tasks,
            "per_shard_cpu": [sum(t["cpu_seconds"] for t in tasks)],
            "once_cpu": 0.0,
        }
    tasks = [_task(work, shards, d, "prepare")]
    tasks += [_task(work, shards, d, "state", k) for k in range(shards)]
    tasks.append(_task(work, shards, d, "shared_rates"))
    tasks += [_task(work, shards, d, "rows", k) for k in range(shards)]
    tasks += [_task(work, shards, d, "score_shard", k) for k in range(shards)]
    per_shard = [sum(t["cpu_seconds"] for t in tasks if t.get("shard") == k) for k in range(shards)]
    once = sum(t["cpu_seconds"] for t in tasks if t.get("shard") is None)
    return {"shards": shards, "tasks": tasks, "per_shard_cpu": per_shard, "once_cpu": round(once, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", help="a home set up and run by bench/daily_load.py")
    ap.add_argument("--work", help="where the copy is made (replaced)")
    ap.add_argument("--counts", default="1,2,4,8")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.child:
        print(json.dumps(child(json.loads(ns.child))))
        return
    work = Path(ns.work).resolve()
    shutil.rmtree(work, ignore_errors=True)
    shutil.copytree(Path(ns.home).resolve(), work, symlinks=True)
    d = date.fromisoformat(json.loads((work / "setup.json").read_text())["run_date"])
    results = []
    for shards in [int(x) for x in ns.counts.split(",")]:
        results.append(measure(work, d, shards))
        r = results[-1]
        print(json.dumps({k: v for k, v in r.items() if k != "tasks"}), flush=True)
    whole = sum(results[0]["per_shard_cpu"])
    summary = []
    for r in results:
        n = r["shards"]
        mean = sum(r["per_shard_cpu"]) / n
        summary.append({
            "shards": n,
            "per_shard_cpu_mean": round(mean, 2),
            "per_shard_cpu_max": round(max(r["per_shard_cpu"]), 2),
            "once_cpu": r["once_cpu"],
            "ratio_to_share_of_one": round(mean / (whole / n), 3),
            "ratio_with_once_steps": round((mean + r["once_cpu"] / n) / (whole / n), 3),
            "total_cpu": round(sum(r["per_shard_cpu"]) + r["once_cpu"], 2),
        })  # fmt: skip
        print(json.dumps(summary[-1]), flush=True)
    (work / "shards.json").write_text(json.dumps({"results": results, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
