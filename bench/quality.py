"""Quality bar (issue 4, item 7): on the project's simulator, test AUC vs the oracle and baselines.

    nice .venv/bin/python bench/quality.py                    # 60 days x 50k persons
    .venv/bin/python bench/quality.py --days 15 --persons 5000 # smoke

Simulates the world (features.simulate.simulate), then runs ingest -> features -> train through
``contactrank.pipeline.run_step`` for every date with default settings except the retrain cadence
(``--retrain-every``, default 7 days, to keep the run short: the step is still called daily and
says when it is not due); the last date is always trained (forced if the cadence skipped it).
Prints the test-day AUC of the model, the oracle (true probabilities of the same attempts) and
both baselines, plus the training time of the last model.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--days", type=int, default=60)
    ap.add_argument("--persons", type=int, default=50_000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--start", type=date.fromisoformat, default=date(2026, 9, 1))
    ap.add_argument("--retrain-every", type=int, default=7)
    ap.add_argument("--home", help="keep the run here instead of a temp dir")
    a = ap.parse_args()
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    logging.basicConfig(level=logging.WARNING)

    from contactrank.pipeline import run_step
    from contactrank.settings import load_settings
    from features.simulate import simulate
    from ml.train import train

    tmp = None if a.home else tempfile.TemporaryDirectory(prefix="bench-quality-")
    home = Path(a.home or tmp.name)
    landing = home / "landing"
    t = time.perf_counter()
    sim = simulate(landing, a.start, a.days, persons=a.persons, seed=a.seed, fmt="parquet")
    print(
        f"simulate: {a.days} days x {a.persons:,} persons in {time.perf_counter() - t:.0f} s "
        f"({sim.get('attempts', '?')} attempts)",
        flush=True,
    )
    s = load_settings(home=home / "home", landing_dir=landing, retrain_every_days=a.retrain_every)
    end = a.start + timedelta(days=a.days - 1)
    step_s = {"ingest": 0.0, "features": 0.0, "train": 0.0}
    history = []
    last = None
    d = a.start
    while d <= end:
        for step in ("ingest", "features", "train"):
            t = time.perf_counter()
            out = run_step(step, s, d)
            step_s[step] += time.perf_counter() - t
            if step == "train":
                if d == end and out.get("status") != "trained":
                    t = time.perf_counter()
                    out = train(s, d, force=True)
                    step_s[step] += time.perf_counter() - t
                if out.get("status") == "trained":
                    m = out["metrics"]
                    history.append((d, m.get("auc"), m.get("baseline_oracle_auc"), out["timings"]))
                    print(
                        f"{d} trained v{out['version']}: auc {m.get('auc'):.4f} oracle {m.get('baseline_oracle_auc', float('nan')):.4f} "
                        f"heuristic {m.get('baseline_heuristic_auc'):.4f} random {m.get('baseline_random_auc'):.4f} "
                        f"({out['counts']['rows_train']:,} train rows, fit {out['timings']['fit_s']:.0f} s)",
                        flush=True,
                    )
                    last = out
        d += timedelta(days=1)

    if last is None:
        raise SystemExit("no model was trained")
    m = last["metrics"]
    auc, oracle = m["auc"], m.get("baseline_oracle_auc", float("nan"))
    auc_same = m.get("auc_on_oracle_rows", auc)
    print("\n== quality on the last test day", end.isoformat(), "==")
    print(
        f"model AUC              {auc:.4f}   (on the oracle's rows: {auc_same:.4f}, coverage {m.get('oracle_coverage', float('nan')):.3f})"
    )
    print(f"oracle AUC             {oracle:.4f}   gap {oracle - auc_same:+.4f} (target <= 0.02)")
    print(
        f"heuristic baseline AUC {m['baseline_heuristic_auc']:.4f}   model - heuristic {auc - m['baseline_heuristic_auc']:+.4f}"
    )
    print(
        f"random baseline AUC    {m['baseline_random_auc']:.4f}   model - random {auc - m['baseline_random_auc']:+.4f}"
    )
    print(
        f"hit@1 model {m['hit1']:.4f} oracle {m.get('baseline_oracle_hit1', float('nan')):.4f} "
        f"heuristic {m['baseline_heuristic_hit1']:.4f} random {m['baseline_random_hit1']:.4f}"
    )
    print(
        f"ECE {m['ece']:.4f} (uncalibrated {m.get('ece_uncalibrated', float('nan')):.4f}, calibration {last['calibration']['method']})"
    )
    print(
        f"last training: {last['counts']['rows_train']:,} rows, {last['counts']['best_iteration']} trees, timings {last['timings']}"
    )
    print(f"step totals (s): {json.dumps({k: round(v) for k, v in step_s.items()})}")
    print(
        json.dumps(
            {"metrics": m, "counts": last["counts"], "timings": last["timings"], "steps_s": step_s},
            default=float,
        )
    )
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
