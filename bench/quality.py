"""Quality bar: on the project's simulator, test AUC vs the oracle and baselines.

    nice .venv/bin/python bench/quality.py                    # 60 days x 50k persons
    .venv/bin/python bench/quality.py --days 15 --persons 5000 # smoke

Simulates the world (features.simulate.simulate), then runs ingest -> features -> train through
``contactrank.pipeline.run_step`` for every date with default settings except the retrain cadence
(``--retrain-every``, default 7 days, to keep the run short: the step is still called daily and
says when it is not due); the last date is always trained (forced if the cadence skipped it).
Prints the test-day AUC of the model, the oracle (true probabilities of the same attempts) and
both baselines, the training time of the last model, and where the gap to the oracle lies (AUC of
the model and of the oracle by subgroup of the test day; docs/model.md, "Quality gap").

    nice .venv/bin/python bench/quality.py --home H --train-only   # re-train the last date of H
    .venv/bin/python bench/quality.py --world habits                # another world (WorldSpec preset)

The published file itself (rank 1 x best_hour against the truth, with the history ceiling) is
judged by bench/judge.py; bench/judge_worlds.py runs it on several worlds and bench/judge_loop.py
closes the loop (the dialer follows the priority file).

``--train-only`` reuses the simulated landing and the lake of an earlier ``--home`` run and only
re-trains the last date (forced), as the pipeline's train step would: the quick loop for a
change in ``ml/``. A change in the features (features/, including ``features.context``) needs
the full run, since the training partitions hold them.
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
    ap.add_argument("--world", default=None, help="simulator preset (features.simulated_world.WORLDS)")
    ap.add_argument("--home", help="keep the run here instead of a temp dir")
    ap.add_argument(
        "--train-only", action="store_true", help="reuse --home's lake: only re-train the last date"
    )
    ap.add_argument(
        "--ceiling",
        action="store_true",
        help="also score the test day with the history ceiling (bench/judge_ceiling.py; minutes)",
    )
    a = ap.parse_args()
    if a.train_only and not a.home:
        ap.error("--train-only needs --home (the run to reuse)")
    from contactrank.settings import runtime_env

    runtime_env()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    logging.basicConfig(level=logging.WARNING)

    from contactrank.features.simulate import simulate
    from contactrank.ml.train import train
    from contactrank.pipeline import run_step
    from contactrank.settings import load_settings

    tmp = None if a.home else tempfile.TemporaryDirectory(prefix="bench-quality-")
    home = Path(a.home or tmp.name)
    landing = home / "landing"
    if not a.train_only:
        t = time.perf_counter()
        sim = simulate(landing, a.start, a.days, persons=a.persons, seed=a.seed, fmt="parquet", world=a.world)
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
    d = end if a.train_only else a.start
    while d <= end:
        for step in ("train",) if a.train_only else ("ingest", "features", "train"):
            t = time.perf_counter()
            out = train(s, d, force=True) if a.train_only else run_step(step, s, d)
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
                        f"{d} trained v{out['version']}: auc {m.get('auc'):.4f} "
                        f"oracle {m.get('baseline_oracle_auc', float('nan')):.4f} "
                        f"heuristic {m.get('baseline_heuristic_auc'):.4f} "
                        f"random {m.get('baseline_random_auc'):.4f} "
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
        f"model AUC              {auc:.4f}   (on the oracle's rows: {auc_same:.4f}, "
        f"coverage {m.get('oracle_coverage', float('nan')):.3f})"
    )
    print(f"oracle AUC             {oracle:.4f}   gap {oracle - auc_same:+.4f} (target <= 0.02)")
    print(
        f"heuristic baseline AUC {m['baseline_heuristic_auc']:.4f}   "
        f"model - heuristic {auc - m['baseline_heuristic_auc']:+.4f}"
    )
    print(
        f"random baseline AUC    {m['baseline_random_auc']:.4f}   "
        f"model - random {auc - m['baseline_random_auc']:+.4f}"
    )
    print(
        f"hit@1 model {m['hit1']:.4f} oracle {m.get('baseline_oracle_hit1', float('nan')):.4f} "
        f"heuristic {m['baseline_heuristic_hit1']:.4f} random {m['baseline_random_hit1']:.4f}"
    )
    print(
        f"ECE {m['ece']:.4f} (uncalibrated {m.get('ece_uncalibrated', float('nan')):.4f}, "
        f"calibration {last['calibration']['method']})"
    )
    print(
        f"last training: {last['counts']['rows_train']:,} rows, "
        f"{last['counts']['best_iteration']} trees, timings {last['timings']}"
    )
    print(f"step totals (s): {json.dumps({k: round(v) for k, v in step_s.items()})}")
    tuned = (s.home / "tuning" / "best_params.json").is_file()
    print(
        f"tuned parameters from {s.home / 'tuning' / 'best_params.json'}: "
        f"{'yes' if tuned else 'no (defaults)'}"
    )
    from contactrank.ml.registry import load_version

    model = load_version(s, last["version"])
    _gap_report(s, end, model, last["version"], a.world if a.ceiling else False)
    _hour_report(s, end, model)
    print(
        json.dumps(
            {"metrics": m, "counts": last["counts"], "timings": last["timings"], "steps_s": step_s},
            default=float,
        )
    )
    if tmp is not None:
        tmp.cleanup()


def _gap_report(s, d: date, model, version: int, ceiling_world: str | None | bool = False) -> None:
    """AUC of the model and of the oracle by subgroup of test day ``d`` (docs/model.md, "Quality gap").

    With ``ceiling_world`` (a preset name, or None for the default world) a column adds the history
    ceiling: what an estimator told the generator's form can say from the landing files up to D-1.
    """
    import numpy as np
    import pandas as pd
    from sklearn.metrics import roc_auc_score

    from contactrank.features.build import load_training
    from contactrank.features.lake import read_partition
    from contactrank.features.simulated_world import FATIGUE_SAME_DAY as _FATIGUE_SAME_DAY
    from contactrank.ml import evaluate as ev

    df = load_training(s, d, d)
    df = df[df["label_reach"].notna()].reset_index(drop=True)
    y = df["label_reach"].astype(int).to_numpy()
    p = model.predict_proba(df, num_threads=s.num_threads)
    oracle = ev.oracle_probabilities(s.landing / "truth_attempts.parquet", df["attempt_id"], "reach")
    if oracle is None or not np.isfinite(oracle).any():
        print("no truth for the test day: no gap report")
        return
    # earlier tries of the same address on d (the simulator's same-day fatigue): only the test day knows them
    att = read_partition(s, "attempts", d, columns=["attempt_id", "contact_id", "attempted_at"]).to_pandas()
    att = att.sort_values(["contact_id", "attempted_at", "attempt_id"], kind="mergesort")
    att["earlier_today"] = att.groupby("contact_id").cumcount()
    earlier = att.set_index("attempt_id")["earlier_today"].reindex(df["attempt_id"]).fillna(0).to_numpy()
    with np.errstate(divide="ignore"):
        logit = np.log(oracle) - np.log1p(-oracle)
    # the oracle without the same-day fatigue term: what the truth is at scoring time (end of D-1)
    no_fatigue = np.where(oracle > 0, 1.0 / (1.0 + np.exp(-(logit - _FATIGUE_SAME_DAY * earlier))), 0.0)
    c_att, p_att = (
        pd.to_numeric(df[c], errors="coerce").fillna(0).to_numpy()
        for c in ("f_c_attempts_365d", "f_p_attempts_365d")
    )
    groups = {
        "all": np.isfinite(oracle),
        "true p > 0 (live)": oracle > 0,
        "address never attempted": c_att == 0,
        "address attempted before": c_att > 0,
        "person attempts 0-3 (365d)": p_att <= 3,
        "person attempts 4-10": (p_att >= 4) & (p_att <= 10),
        "person attempts > 10": p_att > 10,
        "first try of the address that day": earlier == 0,
        "repeat try of the address that day": earlier > 0,
    }

    def auc(m, score):
        return roc_auc_score(y[m], score[m]) if 0 < y[m].sum() < m.sum() else float("nan")

    ceiling = None
    if ceiling_world is not False:
        t = time.process_time()
        ceiling = _ceiling_scores(s, d, df["attempt_id"], ceiling_world)
        print(f"\nhistory ceiling of {len(df):,} test attempts in {time.process_time() - t:.0f} CPU-s")
    print(f"\n== where the gap is, test day {d} (model v{version}) ==")
    print(
        f"{'subgroup':36s} {'rows':>6s} {'share':>6s} {'reach':>6s} {'p=0':>6s} {'model':>7s} "
        f"{'oracle':>7s} {'oracle w/o same-day fatigue':>28s}"
        + (f" {'ceiling':>8s}" if ceiling is not None else "")
    )
    for name, m in groups.items():
        m = m & groups["all"]  # attempts the truth covers (all of them on the simulator)
        print(
            f"{name:36s} {m.sum():6d} {m.mean():6.3f} {y[m].mean():6.3f} {(oracle[m] == 0).mean():6.3f} "
            f"{auc(m, p):7.4f} {auc(m, oracle):7.4f} {auc(m, no_fatigue):28.4f}"
            + (f" {auc(m, ceiling):8.4f}" if ceiling is not None else "")
        )


def _ceiling_scores(s, d: date, attempt_ids, world: str | None):
    """The history ceiling's p(reach) of each test attempt of ``d``, at its local hour and weekday.

    The ceiling of bench/judge_ceiling.py, fitted on the landing files up to D-1: it infers each
    address's status from the outcomes as the latents, so it knows what the history says and no
    more (docs/model.md's "generous" ceiling is told the status and the hour habit).
    """
    import numpy as np
    import pandas as pd

    sys.path.insert(0, str(ROOT / "bench"))
    from judge_ceiling import _history, ceiling_matrix  # noqa: PLC0415

    # the ceiling's own reading of the landing files: normalised contacts, the person's local hour
    att = _history(s.landing, d)[3]
    att = att[att["_date"] == d.isoformat()].drop_duplicates("attempt_id").set_index("attempt_id")
    att = att.reindex(attempt_ids.astype(str))
    hour = att["hour"].to_numpy().astype(int)
    rows = att[["person_id", "contact_id", "channel"]].reset_index(drop=True)
    keys = rows.drop_duplicates(["person_id", "contact_id"]).reset_index(drop=True)
    hours = np.unique(hour)
    grid = ceiling_matrix(s.landing, d - timedelta(days=1), keys, hours, world)
    at = pd.MultiIndex.from_frame(keys[["person_id", "contact_id"]]).get_indexer(
        pd.MultiIndex.from_frame(rows[["person_id", "contact_id"]])
    )
    return grid[at, np.searchsorted(hours, hour)]


def _hour_report(s, d: date, model) -> None:
    """How good ``best_hour`` is: true p (truth.parquet, the day after ``d``) at the scored hour.

    The test-day AUC cannot tell: the incumbent dialer picks hours at random. Scores every
    candidate of ``features/date=d`` with ``ml.score.score_frame`` and compares the true p at its
    best hour with a uniform allowed hour and with each address's true best hour.
    """
    import numpy as np
    import pyarrow.parquet as pq

    from contactrank.features.lake import DATA_FILE, partition_dir
    from contactrank.ml.score import Predictor, score_frame

    truth_path = s.landing / "truth.parquet"
    if not truth_path.is_file():
        return
    feats = pq.read_table(partition_dir(s, "features", d) / DATA_FILE).to_pandas()
    t0 = time.process_time()
    out = score_frame(s, d, model, feats, Predictor(s, model, 0))
    cpu = time.process_time() - t0
    hours = list(range(s.hours_start, s.hours_end + 1))
    truth = pq.read_table(truth_path, columns=["person_id", "contact_id", "hour", "p_reach"]).to_pandas()
    truth = truth[truth["hour"].isin(hours)]
    table = truth.pivot_table(index=["person_id", "contact_id"], columns="hour", values="p_reach")
    keys = out.set_index(["person_id", "contact_id"]).index
    true_p = table.reindex(keys).to_numpy()
    live = np.isfinite(true_p).all(axis=1) & (np.nan_to_num(true_p).max(axis=1) > 0)
    true_p = true_p[live]
    at = true_p[np.arange(len(true_p)), out["best_hour"].to_numpy()[live] - hours[0]]
    best, uniform = true_p.max(axis=1).mean(), true_p.mean()
    print(f"\n== best_hour on {d + timedelta(days=1)} (truth.parquet, {live.sum():,} live candidates) ==")
    print(
        f"mean true p at the scored best_hour {at.mean():.4f} | uniform allowed hour {uniform:.4f} | "
        f"each address's true best hour {best:.4f} | "
        f"share of the possible gain {(at.mean() - uniform) / (best - uniform):.3f}"
    )
    print(f"score_frame: {len(feats):,} candidates x {len(hours)} hours in {cpu:.1f} CPU-s")


if __name__ == "__main__":
    main()
