"""Load test of the daily run: one whole day at the scale of the features benchmark.

History: 120 days x 300k attempts (36M rows), 2M persons, 5M contacts (the generator of
``bench/features.py``). Set-up (not measured): the last day's attempts become a landing file with
contact upserts and suppressions, the features are rebuilt in full at day 108 and built
incrementally up to day 118, so that 11 labelled days feed training. Measured: every step of
``contactrank run`` for day 119 (ingest, features, train, gate, score, publish, report), each in
its own process, with wall time, CPU seconds and peak RSS against the 6 GiB bound.

``--s3``: the same day is then run a second time with ``lake_uri``/``exports_uri`` on a local S3
server (moto, in a process of its own unless ``--s3-endpoint`` names a running server), and the
S3/local ratios are printed. The set-up stays on the local disk; before the local run its lake (and
exports) are uploaded in the layout the S3 backend writes (one committed folder per local folder),
so both runs start from the same state. MLflow, the landing files and the scratch folders stay
local in both runs. The upload is reported, not measured with the day.

    nice .venv/bin/python bench/daily_load.py --home bench/out/load            # set-up + run
    nice .venv/bin/python bench/daily_load.py --home bench/out/load --run-only # run again
    nice .venv/bin/python bench/daily_load.py --home bench/out/load --s3       # set-up + local and S3 runs
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
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]

from contactrank.stages import STAGE_NAMES as STEPS  # noqa: E402

DAYS = 120
FIRST_TRAINING_DAY = 108  # 11 labelled days before the run date: 7 train + 3 validation + the test day
RSS_BOUND_GIB = 6.0
BUCKET = "contactrank-load"


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

    settings = _settings(home)
    t0 = time.perf_counter()
    out = run_step(name, settings, d)
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
        "timings",
    )
    return {
        "step": name,
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "peak_rss_gib": round(usage.ru_maxrss / 2**20, 2),
        "load_avg_1m": round(os.getloadavg()[0], 1),
        **{k: v for k, v in out.items() if k in keep},
    }


def serve_s3(ranges: bool) -> None:
    """A moto S3 server in this process (called in a child by ``main``): prints its endpoint, then
    serves until its standard input closes, so it ends with the run that started it. With
    ``ranges``, its ranged GETs read only the range (bench/ranged_moto.py)."""
    sys.path.insert(0, str(ROOT))
    from tests.helpers.s3 import aws_env, start_server

    if ranges:
        sys.path.insert(0, str(Path(__file__).parent))
        import ranged_moto  # a sibling script of the benchmarks, not a package

        ranged_moto.patch()

    server = start_server()
    try:
        print(aws_env(server)["AWS_ENDPOINT_URL"], flush=True)
        sys.stdin.read()
    finally:
        server.stop()


def s3_env(endpoint: str) -> dict[str, str]:
    """The variables of a run whose lake and exports are on the bucket of ``endpoint``."""
    sys.path.insert(0, str(ROOT))
    from tests.helpers.s3 import AWS_UNSET, endpoint_env, s3_uris

    env = {k: v for k, v in os.environ.items() if k not in AWS_UNSET}
    env.update(endpoint_env(endpoint))
    env.update({f"CONTACTRANK_{key.upper()}": uri for key, uri in s3_uris(BUCKET).items()})
    return env


def upload(home: Path, env: dict[str, str]) -> dict:
    """Copy the home's local lake and exports to the bucket, each folder holding files as one
    committed folder (what the S3 backend's own writes leave); a bucket left by an earlier run is
    emptied first."""
    sys.path.insert(0, str(ROOT))
    import pyarrow.fs as pafs

    from contactrank import storage
    from tests.helpers.s3 import create_bucket

    aws = {k: v for k, v in env.items() if k.startswith("AWS_")}
    saved = {k: os.environ.get(k) for k in aws}
    os.environ.update(aws)  # the storage module reads the endpoint and credentials from here
    try:
        fs = storage.s3_filesystem()
        if fs.get_file_info(BUCKET).type == pafs.FileType.NotFound:
            create_bucket(env["AWS_ENDPOINT_URL"], BUCKET)
        else:
            fs.delete_dir_contents(BUCKET, missing_dir_ok=True)
        jobs = []
        for kind in ("lake", "exports"):
            local, remote = home / kind, storage.location(env[f"CONTACTRANK_{kind.upper()}_URI"])
            files = [p for p in local.rglob("*") if p.is_file()] if local.is_dir() else []
            # hidden names are a crashed local writer's staging or moved-aside folders, never read
            files = [p for p in files if not any(x.startswith(".") for x in p.relative_to(local).parts)]
            for folder in sorted({p.parent for p in files}):
                if folder == local:
                    raise SystemExit(f"{folder}: a file at the top of the {kind} has no S3 layout")
                jobs.append((folder, remote / folder.relative_to(local).as_posix()))

        def commit(job) -> int:
            folder, target = job
            size = 0
            with storage.object_transaction(target) as staging:
                for f in folder.iterdir():
                    if f.is_file():
                        try:
                            os.link(f, staging / f.name)  # no copy when the scratch folder shares the disk
                        except OSError:
                            shutil.copy2(f, staging / f.name)
                        size += f.stat().st_size
            return size

        t0 = time.perf_counter()
        with ThreadPoolExecutor(max_workers=4) as pool:  # many small folders: the round trips overlap
            sizes = list(pool.map(commit, jobs))
        seconds = round(time.perf_counter() - t0, 1)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {"folders": len(jobs), "gib": round(sum(sizes) / 2**30, 2), "seconds": seconds}


def reset(home: Path) -> None:
    """What a run of the day finds in the home: no model registry (train and gate do their work
    instead of finding an earlier run's model) and no compiled model (the day's new model is
    compiled, as in a daily run, not taken from the cache an earlier run of the same model left).
    Every other step replaces its output."""
    (home / "mlflow.db").unlink(missing_ok=True)
    shutil.rmtree(home / "mlartifacts", ignore_errors=True)
    shutil.rmtree(home / "tmp" / "lleaves", ignore_errors=True)


def _cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process (the S3 server's share of a step), from /proc."""
    if pid is None:
        return None
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_day(home: Path, d: str, env: dict[str, str] | None = None, server_pid: int | None = None) -> dict:
    """Every step of the day, each in its own process; ``env``: the variables of an S3 run."""
    reset(home)
    steps = []
    load = [round(x, 2) for x in os.getloadavg()]
    t0 = time.perf_counter()
    for name in STEPS:
        before = _cpu_seconds(server_pid)
        out = subprocess.run([sys.executable, __file__, "--home", str(home), "--step", name, "--date", d],
                             capture_output=True, text=True, cwd=ROOT, env=env)  # fmt: skip
        if out.returncode != 0:
            raise SystemExit(f"step {name} failed:\n{out.stderr[-3000:]}")
        steps.append(json.loads(out.stdout.strip().splitlines()[-1]))
        if server_pid is not None:
            steps[-1]["server_cpu_seconds"] = round(_cpu_seconds(server_pid) - before, 1)
        print(json.dumps(steps[-1], default=str), flush=True)
    return {
        "steps": steps,
        "total_wall_seconds": round(time.perf_counter() - t0, 1),
        "total_cpu_seconds": round(sum(x["cpu_seconds"] for x in steps), 1),
        "max_peak_rss_gib": max(x["peak_rss_gib"] for x in steps),
        "load_avg_before": load,
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
        "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def _ratios(local: dict, s3: dict) -> dict:
    def ratio(a: float, b: float) -> float | None:
        return round(b / a, 2) if a else None

    pairs = list(zip(local["steps"], s3["steps"], strict=True))
    wall = {x["step"]: ratio(x["wall_seconds"], y["wall_seconds"]) for x, y in pairs}
    cpu = {x["step"]: ratio(x["cpu_seconds"], y["cpu_seconds"]) for x, y in pairs}
    wall["total"] = ratio(local["total_wall_seconds"], s3["total_wall_seconds"])
    cpu["total"] = ratio(local["total_cpu_seconds"], s3["total_cpu_seconds"])
    return {"wall": wall, "cpu": cpu}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", default=str(ROOT / "bench" / "out" / "load"))
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--run-only", action="store_true", help="skip the set-up (a previous run's home)")
    ap.add_argument("--s3", action="store_true", help="run the day locally, then on S3; compare")
    ap.add_argument("--s3-endpoint", help="with --s3: a running S3 server (default: moto, started here)")
    ap.add_argument(
        "--s3-ranges", action="store_true", help="with --s3: moto reading a ranged GET's range only"
    )
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--step-setup", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--serve-s3", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--date", help=argparse.SUPPRESS)
    ns = ap.parse_args()
    home = Path(ns.home).resolve()
    if ns.serve_s3:
        serve_s3(ns.s3_ranges)
        return
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
    d = json.loads((home / "setup.json").read_text())["run_date"]
    if not ns.s3:
        res.update(run_day(home, d))
        res["within_bound"] = res["max_peak_rss_gib"] <= RSS_BOUND_GIB
        print(json.dumps({k: v for k, v in res.items() if k != "steps"}, default=str))
        (home / "run.json").write_text(json.dumps(res, indent=2, default=str))
        return
    server = None
    if ns.s3_endpoint:
        endpoint = ns.s3_endpoint
    else:
        # Its own process, as a real store would be: no GIL shared with the upload from this
        # process, and its CPU time (the S3 side of each step) can be read on its own.
        serve = ["--serve-s3", *(["--s3-ranges"] if ns.s3_ranges else [])]
        server = subprocess.Popen([sys.executable, __file__, *serve], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, text=True, cwd=ROOT)  # fmt: skip
        endpoint = server.stdout.readline().strip()
    try:
        env = s3_env(endpoint)
        res["s3_endpoint"] = endpoint
        res["s3_server"] = (
            "given"
            if ns.s3_endpoint
            else "moto, its own process" + (", ranges read from the range" if ns.s3_ranges else "")
        )
        res["upload"] = upload(home, env)
        print(json.dumps({"upload": res["upload"]}), flush=True)
        res["local"] = run_day(home, d)
        res["s3"] = run_day(home, d, env, server.pid if server else None)
    finally:
        if server is not None:
            server.stdin.close()
            server.wait(timeout=60)
    res["ratio"] = _ratios(res["local"], res["s3"])
    res["max_peak_rss_gib"] = max(res["local"]["max_peak_rss_gib"], res["s3"]["max_peak_rss_gib"])
    res["within_bound"] = res["max_peak_rss_gib"] <= RSS_BOUND_GIB
    summary = {
        **{k: v for k, v in res.items() if k not in ("local", "s3", "setup")},
        **{
            f"{name}_{key}": res[name][key]
            for name in ("local", "s3")
            for key in ("total_wall_seconds", "total_cpu_seconds", "load_avg_before", "load_avg_after")
        },
    }
    print(json.dumps(summary, default=str))
    (home / "run_s3.json").write_text(json.dumps(res, indent=2, default=str))


if __name__ == "__main__":
    main()
