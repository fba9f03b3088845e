"""Publish a judged day again with other scoring settings, and judge the change on the same models.

    .venv/bin/python bench/judge_rescore.py --root R --out O --worlds default,habits \\
        --model-seeds 42,43 --set hour_lean_share=2

For each world and model seed of a ``bench/judge_worlds.py`` root: copies ``R/W/home-seed<S>``
to ``O/W/home-seed<S>`` (``O/W/landing`` links to ``R/W/landing``), runs ``score`` and
``publish`` of the home's last export date with the settings changed by ``--set``, judges both
files (``judge.judge_run``, without the ceiling) and prints, per world and seed, the two files'
capture / hour / ECE and the paired difference of each person's rank-1 true p (at its
``best_hour``) as a share of the random→oracle gap, with its standard error over persons and the
share of persons whose rank-1 address or hour moved.

Why: a scoring change (the hour choice, exploration, how the score is put together) leaves the
served model as it was. Retraining for each variant adds the model's seed spread (up to .037 of
capture on one world, docs/benchmarks.md) to differences of a few thousandths; on the same model
the difference is exact for the persons judged, and its error is the population's alone. Without
``--set`` the copy's files are byte-identical to the originals: a check of the method.
``--steps features,score,publish`` builds the day's features again first, for a change that
reaches them (the habit fits; the model reads the profiles, so a change to those is then judged
on a model trained without it); ``--daily-days N`` with it builds the last N days' daily aggregates
again first (a change to them, such as the population counts); ``--features-days-before K`` builds
the features of the day K days before the last first, with the same changes (with
``--set hour_curve_refit_days=7``: the last day reads the hour-curve prior fitted K days before).
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import judge  # noqa: E402  (the bench folder is not a package)
from judge_worlds import seed_suffix, settings_for  # noqa: E402

from contactrank.features.history import DAILY_AGG  # noqa: E402
from contactrank.features.lake import partition_dir  # noqa: E402
from contactrank.pipeline import run_date  # noqa: E402
from contactrank.settings import runtime_env  # noqa: E402


def last_export(home: Path) -> date:
    """The newest date of the home's priority exports."""
    dates = sorted(p.name.removeprefix("date=") for p in (home / "exports" / "priority").glob("date=*"))
    if not dates:
        raise SystemExit(f"{home}: no priority export to publish again")
    return date.fromisoformat(dates[-1])


def rank1(landing: Path, home: Path, d: date) -> pd.DataFrame:
    """Per person: the rank-1 address, its hour and its true p there."""
    rows, p = judge.load_candidates(landing, home, d)
    person = pd.factorize(rows["person_id"])[0]
    tie = rows["contact_id"].rank(method="first").to_numpy()
    first = judge.pick_first(person, rows["rank"].to_numpy(), tie)
    hour = np.nan_to_num(judge.hour_columns(rows), nan=0).astype(int)
    return pd.DataFrame(
        {"contact_id": rows["contact_id"].to_numpy()[first], "hour": hour[first], "p": p[first, hour[first]]},
        index=rows["person_id"].to_numpy()[first],
    )


def paired(before: pd.DataFrame, after: pd.DataFrame, gap: float) -> tuple[float, float, float]:
    """Mean and standard error of the capture difference over the persons both files list, and
    the share of them whose rank-1 address or hour moved."""
    common = before.index.intersection(after.index)
    b, a = before.loc[common], after.loc[common]
    diff = (a["p"] - b["p"]).to_numpy() / gap
    moved = ((a["contact_id"] != b["contact_id"]) | (a["hour"] != b["hour"])).to_numpy()
    return float(diff.mean()), float(diff.std(ddof=1) / np.sqrt(len(diff))), float(moved.mean())


def figures(report: dict) -> str:
    f = report["arms"]["contactrank"]
    return f"{f['capture']:.3f} / {f['hour']:.3f} / {f['ece']:.4f}"


def rescore(
    root: Path,
    out: Path,
    world: str,
    seed: int | None,
    changes: dict[str, str],
    steps: tuple[str, ...],
    daily_days: int = 0,
    days_before: tuple[int, ...] = (),
) -> None:
    """Copy one judged home, publish its last day again with ``changes``, judge both, print.
    ``daily_days``: the copy's daily aggregates of that many days up to the last are removed first,
    so that its features step builds them again (a change to them)."""
    landing, source = root / world / "landing", root / world / f"home{seed_suffix(seed)}"
    d = last_export(source)
    (out / world).mkdir(parents=True, exist_ok=True)
    if not (out / world / "landing").exists():
        (out / world / "landing").symlink_to(landing.resolve())
    home = out / world / f"home{seed_suffix(seed)}"
    copy_home(source, home)
    overrides = {} if seed is None else {"seed": seed}
    settings = settings_for(home, landing, 7, **overrides, **changes)  # the cadence: unused here
    for x in range(daily_days):  # the copy's lake is local: its partitions are folders
        shutil.rmtree(partition_dir(settings, DAILY_AGG, d - timedelta(days=x)), ignore_errors=True)
    for k in sorted(days_before, reverse=True):
        run_date(settings, d - timedelta(days=k), landing, steps=("features",))
    run_date(settings, d, landing, steps=steps)
    was, now = (judge.judge_run(landing, h, d, world, ceiling=False) for h in (source, home))
    gap = was["base"]["oracle"] - was["base"]["random"]  # the judge's capture denominator
    mean, se, moved = paired(rank1(landing, source, d), rank1(landing, home, d), gap)
    print(
        f"{world:24s} seed {seed}: capture / hour / ECE {figures(was)} -> {figures(now)}; "
        f"paired capture {mean:+.4f} ± {se:.4f}, rank 1 moved for {moved:.1%} of persons",
        flush=True,
    )


# The copy's run writes new partitions (features, scores, exports) beside the copied ones.
ROOM_FOR_THE_RUN = 1.25


def copy_home(source: Path, home: Path) -> None:
    """Copy ``source`` to ``home`` (replacing it), after checking the disk has room for it and
    for what the run writes.

    Why: a full disk fails every later write, the shell's included, far from the cause, and a
    sweep makes one copy of a whole home per world and seed."""
    if home.exists():
        shutil.rmtree(home)
    home.parent.mkdir(parents=True, exist_ok=True)
    need = ROOM_FOR_THE_RUN * sum(
        p.stat().st_size for p in source.rglob("*") if p.is_file() and not p.is_symlink()
    )
    free = shutil.disk_usage(home.parent).free
    if free < need:
        raise SystemExit(
            f"{home.parent}: {free / 1e9:.2f} GB free, copying {source} and running it needs about "
            f"{need / 1e9:.2f} GB; free some space or give another --out"
        )
    shutil.copytree(source, home, symlinks=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True, help="a bench/judge_worlds.py root")
    ap.add_argument("--out", type=Path, required=True, help="where the copies go")
    ap.add_argument("--worlds", default="default,habits,office_hours_incumbent,timezones")
    ap.add_argument("--model-seeds", help="comma-separated; none: the homes without a seed suffix")
    ap.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="a setting changed (repeatable)"
    )
    ap.add_argument(
        "--steps", default="score,publish", help="the steps run again (e.g. features,score,publish)"
    )
    ap.add_argument(
        "--daily-days",
        type=int,
        default=0,
        help="build this many days of daily aggregates again (with --steps features,...)",
    )
    ap.add_argument(
        "--features-days-before",
        default="",
        help="comma-separated K: build the features of the day K days before the last first",
    )
    a = ap.parse_args()
    before = tuple(int(k) for k in a.features_days_before.split(",") if k)
    changes = dict(item.split("=", 1) for item in a.set)
    runtime_env()
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.pop("MLFLOW_TRACKING_URI", None)
    logging.basicConfig(level=logging.WARNING)
    seeds: list[int | None] = [int(s) for s in a.model_seeds.split(",")] if a.model_seeds else [None]
    for world in a.worlds.split(","):
        for seed in seeds:
            rescore(a.root, a.out, world, seed, changes, tuple(a.steps.split(",")), a.daily_days, before)


if __name__ == "__main__":
    main()
