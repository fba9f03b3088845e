"""Split the published score's error against the truth into the model's level and the hour's lift.

    nice .venv/bin/python bench/judge_score_parts.py --root R --worlds default,office_hours_incumbent \\
        --model-seeds 42,43,44 --work W

For each home of a ``bench/judge_worlds.py`` run (``R/<world>/home-seed<S>``), a copy under ``W``
scores the judged day again with ``contactrank.ml.hours.hour_scores`` watched: every candidate's
smoothed outputs at every allowed hour, the chosen hour, the profile's lift there and whether
the person was ever tried in that bucket. Joined to the truth (``R/<world>/landing``), it prints
per home:

- the share of picks in a bucket the person was never tried in ("untried");
- on untried picks: the truth at the pick over the person's mean across hours, and the model's
  own calibrated output there over its mean (what the lift, held to 1 there, leaves out);
- on tried picks: the truth's ratio and the profile's lift (what the score promises);
- the model's level: its calibrated mean over the hours against the truth's mean;
- the published score over the truth at the pick, on untried and on tried picks.

The published score is the level times the lift (docs/scoring.md), so a level under the truth
shows in full where the lift is held to 1. docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))

from judge import load_candidates, truth_at_best_hour  # noqa: E402  (the bench folder is not a package)
from judge_rescore import copy_home  # noqa: E402
from judge_worlds import settings_for  # noqa: E402

import contactrank.ml.score as scoring  # noqa: E402
from contactrank.ml.hours import raw_at, raw_level  # noqa: E402


def watched_scores(settings, d: date) -> pd.DataFrame:
    """Score ``d`` again; per candidate: the parts of the score at its chosen hour."""
    parts: list[pd.DataFrame] = []
    seen: dict = {}
    hour_scores, score_frame = scoring.hour_scores, scoring.score_frame

    def watch_hours(predictor, raws, cols, profile):
        out = hour_scores(predictor, raws, cols, profile)
        if "best" not in seen:  # the first call of a batch scores the best hour, the second exploration's
            seen["best"] = {
                "own": predictor.calibrate(raw_at(raws, cols)),
                "level": predictor.calibrate(raw_level(raws)),
                "lift": profile.lift(raws, cols) if profile is not None else np.ones(len(raws)),
                "tried": profile.tried[np.arange(len(raws)), cols]
                if profile is not None
                else np.ones(len(raws), bool),
                "score": np.clip(out, 0.0, 1.0),
            }
        return out

    def watch_batch(settings, d, model, df, *args, **kwargs):
        seen.clear()
        out = score_frame(settings, d, model, df, *args, **kwargs)
        keys = df[["person_id", "contact_id"]].reset_index(drop=True)
        parts.append(pd.concat([keys.astype(str), pd.DataFrame(seen["best"])], axis=1))
        return out

    scoring.hour_scores, scoring.score_frame = watch_hours, watch_batch
    try:
        scoring.score(settings, d)
    finally:
        scoring.hour_scores, scoring.score_frame = hour_scores, score_frame
    return pd.concat(parts, ignore_index=True)


def parts_of(landing: Path, home: Path, d: date, seed: int, retrain_every: int) -> dict:
    """The figures of one home (see the module docstring)."""
    watched = watched_scores(settings_for(home, landing, retrain_every, seed=seed), d)
    rows, p = load_candidates(landing, home, d)
    keys = rows[["person_id", "contact_id"]].astype(str)
    w = keys.merge(watched, on=["person_id", "contact_id"], how="left")
    truth = truth_at_best_hour(rows, p)
    mean_truth = p.mean(axis=1)
    untried = ~w["tried"].to_numpy(dtype=bool)
    own, level, lift, score = (w[c].to_numpy() for c in ("own", "level", "lift", "score"))

    def ratio(a: np.ndarray, b: np.ndarray, m: np.ndarray) -> float:
        return float(a[m].mean() / b[m].mean()) if m.any() else float("nan")

    return {
        "untried": float(untried.mean()),
        "untried_truth_lift": ratio(truth, mean_truth, untried),
        "untried_own_lift": ratio(own, level, untried),
        "tried_truth_lift": ratio(truth, mean_truth, ~untried),
        "tried_profile_lift": ratio(level * lift, level, ~untried),
        "level": float(level.mean() / mean_truth.mean()),
        "score_untried": ratio(score, truth, untried),
        "score_tried": ratio(score, truth, ~untried),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--root", type=Path, required=True)
    ap.add_argument("--worlds", default="default,habits,office_hours_incumbent,timezones")
    ap.add_argument("--model-seeds", default="42,43,44")
    ap.add_argument("--date", type=date.fromisoformat, default=date(2026, 10, 12))
    ap.add_argument("--retrain-every", type=int, default=7)
    ap.add_argument("--work", type=Path, required=True, help="where the homes are copied (scoring writes)")
    a = ap.parse_args()
    rows = []
    for world in a.worlds.split(","):
        for seed in (int(s) for s in a.model_seeds.split(",")):
            home = a.work / f"{world}-seed{seed}"
            if not home.exists():
                copy_home((a.root / world / f"home-seed{seed}").resolve(), home)
            figures = parts_of(a.root / world / "landing", home, a.date, seed, a.retrain_every)
            rows.append({"world": world, "seed": seed, **figures})
            print(rows[-1], flush=True)
    print(pd.DataFrame(rows).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
