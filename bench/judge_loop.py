"""Closed loop: the simulated dialer follows yesterday's priority file; compare arms on the same luck.

    nice .venv/bin/python bench/judge_loop.py --root R --world habits --persons 3000 \\
        --warmup 20 --days 20 --last 10

Every arm simulates the same world with the same seed: ``warmup`` days under the incumbent, then
``days`` days in which the same persons are called with the same budget (1-3 tries) and the same
outcome luck (``features.simulate``'s closed-loop streams), tried in the order of:

- ``incumbent``: the incumbent's own rule (its address order at random hours);
- ``truth``: the true best address first, each at its true best hour;
- ``contactrank``: the priority file the pipeline published the day before (rank order, at
  ``best_hour``), the pipeline running every day on what the loop produced (without the HTML
  report; retrain cadence ``--retrain-every``);
- ``contactrank no explore``: the same with ``explore_share = 0`` (CONTACTRANK_EXPLORE_SHARE=0);
- ``contactrank true hours`` (on request only): the same file, each row at its address's true
  best hour, to tell how much of the gap to the truth is the hour;
- ``ceiling`` (on request only): the history ceiling of ``judge_ceiling`` as the dialer's ranking,
  refitted every day on the landing files so far (what the loop produced): each called person's
  addresses by posterior p(reach) at their best hour (none it is sure is dead or someone else's).
  Greedy, no exploration: the loop's reference for what an estimator of the world's own form gets
  out of the history it chooses.

Reports, over the last ``--last`` days: attempts, reaches, reach per attempt, mean true p per
attempt (``truth_attempts.parquet``), and reaches per called person-day; for the pipeline's arms
also the last file they followed judged against the truth (``last_file_*``: capture, hour share,
ECE, mean score over true p at rank 1).
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

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

import judge  # noqa: E402  (not a package)
from judge_ceiling import ceiling_matrix, contact_book  # noqa: E402
from judge_worlds import LEARNING, PUBLISHING, settings_for  # noqa: E402

from contactrank.features.simulate import (  # noqa: E402
    called_persons,
    person_id_of,
    simulate,
    true_best_hours,
)
from contactrank.pipeline import run_date  # noqa: E402
from contactrank.settings import runtime_env  # noqa: E402

ARMS = ("incumbent", "truth", "contactrank", "contactrank no explore")
# Diagnostic arm (not in the default list): contactrank's file, each row at its address's true
# best hour, so that the loop's gap splits into the address choice and the hour choice.
TRUE_HOURS = "contactrank true hours"
CEILING = "ceiling"  # diagnostic arm: the history ceiling ranks, refitted daily
_CEILING_HOURS = np.arange(8, 22)  # the simulator's truth arm's hours
_CEILING_FLOOR = 0.001  # posterior p(reach) below which the ceiling drops an address
_REACH = ("right_party", "converted", "opt_out")


class PipelineDialer:
    """The simulator's ``dialer`` for a contactrank arm: before day t it runs the pipeline on the
    landing of day t-1 and hands over that day's priority file."""

    def __init__(self, settings, start: date, warmup: int, landing: Path) -> None:
        self.s, self.start, self.warmup, self.landing = settings, start, warmup, landing
        self.done = -1  # the last day index the pipeline has run
        self.seconds = 0.0

    def __call__(self, t: int, day: date, world) -> object:
        if t < self.warmup:
            return None
        t0 = time.perf_counter()
        while self.done < t - 1:
            self.done += 1
            d = self.start + timedelta(days=self.done)
            steps = PUBLISHING if self.done >= self.warmup - 1 else LEARNING
            run_date(self.s, d, self.landing, steps=steps)
        self.seconds += time.perf_counter() - t0
        path = self.s.home / "exports" / "priority" / f"date={(day - timedelta(days=1)).isoformat()}"
        if not (path / "priority.parquet").is_file():
            return "incumbent"  # no champion yet: the incumbent keeps dialling
        return pq.read_table(
            path / "priority.parquet", columns=["person_id", "contact_id", "rank", "best_hour"]
        )


class TrueHourDialer(PipelineDialer):
    """``PipelineDialer`` whose file rows are tried at their address's true best hour of the day."""

    def __call__(self, t: int, day: date, world) -> object:
        plan = super().__call__(t, day, world)
        if not isinstance(plan, pa.Table) or not plan.num_rows:
            return plan
        address = pc.fill_null(pc.index_in(plan["contact_id"], value_set=world.ids()), 0).to_numpy()
        _, hour = true_best_hours(world, address, day)
        return plan.set_column(plan.schema.get_field_index("best_hour"), "best_hour", pa.array(hour))


class CeilingDialer:
    """The simulator's ``dialer`` for the ``ceiling`` arm: the history ceiling fitted on the landing
    files up to day t-1, for the persons called on day t (the same draw as every arm's)."""

    def __init__(self, world: str, seed: int, warmup: int, landing: Path) -> None:
        self.world, self.seed, self.warmup, self.landing = world, seed, warmup, landing
        self.seconds = 0.0

    def __call__(self, t: int, day: date, world) -> object:
        if t < self.warmup:
            return None
        t0 = time.perf_counter()
        d = day - timedelta(days=1)
        called = person_id_of(called_persons(world, t, self.seed)).to_pylist()
        rows = contact_book(self.landing, d)
        rows = rows[rows["person_id"].isin(called)].reset_index(drop=True)
        p = ceiling_matrix(self.landing, d, rows, _CEILING_HOURS, self.world)
        rows["best"], rows["best_hour"] = p.max(axis=1), _CEILING_HOURS[p.argmax(axis=1)]
        # what it is sure is dead or someone else's it does not publish (contactrank drops an
        # address whose last outcome was invalid)
        rows = rows[rows["best"] >= _CEILING_FLOOR]
        rows = rows.sort_values(["person_id", "best"], ascending=[True, False], kind="mergesort")
        rows["rank"] = rows.groupby("person_id").cumcount() + 1
        self.seconds += time.perf_counter() - t0
        plan = rows[["person_id", "contact_id", "rank", "best_hour"]]
        return pa.Table.from_pandas(plan, preserve_index=False)


def arm_figures(landing: Path, first: date) -> dict:
    """Attempts, reaches and true p per attempt on the dialer's days from ``first`` on."""
    parts = sorted((landing / "attempts").glob("date=*/part-0.parquet"))
    att = pd.concat(
        [pq.read_table(p).to_pandas() for p in parts if p.parent.name[5:] >= first.isoformat()],
        ignore_index=True,
    )
    truth = pq.read_table(landing / "truth_attempts.parquet").to_pandas().set_index("attempt_id")
    att["reached"] = att["outcome"].isin(_REACH)
    att["day"] = att["attempted_at"].dt.tz_convert("America/Sao_Paulo").dt.date  # the dialer's day
    called = att[["person_id", "day"]].drop_duplicates().shape[0]
    return {
        "attempts": len(att),
        "reaches": int(att["reached"].sum()),
        "reach_per_attempt": float(att["reached"].mean()),
        "true_p_per_attempt": float(truth["p_reach"].reindex(att["attempt_id"]).mean()),
        "called_person_days": called,
        "reaches_per_called": float(att["reached"].sum() / max(called, 1)),
        "invalid_share": float((att["outcome"] == "invalid").mean()),
        "wrong_party_share": float((att["outcome"] == "wrong_party").mean()),
    }


def last_file_figures(landing: Path, home: Path) -> dict:
    """The last priority file the dialer followed, judged against the truth the simulator wrote at
    the end (``judge.judge_run``, no ceiling): its capture, hour share, ECE and mean score over
    true p at rank 1. Why: in the loop the model learns from the history its files chose, and a
    file can rank well while its probabilities drift from the truth."""
    dates = sorted(p.name.removeprefix("date=") for p in (home / "exports" / "priority").glob("date=*"))
    if not dates or not (landing / "truth.parquet").is_file():
        return {}
    report = judge.judge_run(landing, home, date.fromisoformat(dates[-1]), ceiling=False)
    figures = report["arms"]["contactrank"]
    return {f"last_file_{k}": figures[k] for k in ("capture", "hour", "ece", "score_over_truth_rank1")}


def run_arm(root: Path, arm: str, a: argparse.Namespace) -> dict:
    """One arm of the loop; returns its figures over the last days and its cost."""
    base = root / arm.replace(" ", "_")
    landing = base / "landing"
    t0 = time.perf_counter()
    if arm in ("incumbent", "truth"):
        dialer = lambda t, day, w: None if t < a.warmup else arm  # noqa: E731
    elif arm == CEILING:
        dialer = CeilingDialer(a.world, a.seed, a.warmup, landing)
    else:
        extra = {"explore_share": 0.0} if arm.endswith("no explore") else {}
        s = settings_for(base / "home", landing, a.retrain_every, **extra)
        dialer = (TrueHourDialer if arm == TRUE_HOURS else PipelineDialer)(s, a.start, a.warmup, landing)
    out = simulate(
        landing,
        a.start,
        a.warmup + a.days,
        persons=a.persons,
        seed=a.seed,
        fmt="parquet",
        world=a.world,
        dialer=dialer,
    )
    pipeline_s = getattr(dialer, "seconds", 0.0)
    first = a.start + timedelta(days=a.warmup + a.days - a.last)
    fig = arm_figures(landing, first)
    if isinstance(dialer, PipelineDialer):
        fig.update(last_file_figures(landing, base / "home"))
    fig.update(
        arm=arm,
        closed_days=out["closed_loop"],
        seconds=round(time.perf_counter() - t0, 1),
        pipeline_s=round(pipeline_s, 1),
    )
    return fig


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--world", default="habits")
    ap.add_argument("--persons", type=int, default=3000)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--days", type=int, default=20)
    ap.add_argument("--last", type=int, default=10)
    ap.add_argument("--seed", type=int, default=21)
    ap.add_argument("--start", type=date.fromisoformat, default=date(2026, 9, 1))
    ap.add_argument("--retrain-every", type=int, default=7)
    ap.add_argument("--arms", default=",".join(ARMS))
    a = ap.parse_args()
    runtime_env()  # before LightGBM loads
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    logging.basicConfig(level=logging.WARNING)
    root = a.root / a.world
    rows = []
    for arm in a.arms.split(","):
        rows.append(run_arm(root, arm, a))
        print(json.dumps(rows[-1]), flush=True)
    print(
        f"\n== closed loop, world {a.world}: {a.persons:,} persons, {a.warmup} warm-up + {a.days} days, "
        f"last {a.last} days =="
    )
    print(
        f"{'arm':24s} {'attempts':>8s} {'reaches':>7s} {'reach/att':>9s} {'true p':>7s} "
        f"{'reach/called':>12s} {'invalid':>7s} {'wrong p':>7s} {'s':>6s} {'file ECE':>8s}"
    )
    for r in rows:
        print(
            f"{r['arm']:24s} {r['attempts']:8d} {r['reaches']:7d} {r['reach_per_attempt']:9.4f} "
            f"{r['true_p_per_attempt']:7.4f} {r['reaches_per_called']:12.4f} {r['invalid_share']:7.4f} "
            f"{r['wrong_party_share']:7.4f} {r['seconds']:6.0f} {r.get('last_file_ece', float('nan')):8.4f}"
        )
    (root / "loop.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
