"""How much of the hour gain other hour choices would realise for the published rank-1 addresses.

    .venv/bin/python bench/judge_hours.py --landing L --home H --date D

For each person's published rank-1 address, the share of its available hour gain (the judge's
``hour`` column: true p at the hour minus at its mean hour, over best minus mean) realised by:

- ``published``: the file's ``best_hour``;
- ``population``: one hour for everyone, the population's highest raw reach rate;
- ``mixture``: a 6-profile binomial mixture fitted by EM to every person's attempts and reaches
  per local hour (neighbouring hours shared), each person's posterior-mean curve;
- ``buckets``: the same at the pipeline's bucket resolution, the population's curve within the
  bucket.

A diagnostic of where the hour is lost (docs/benchmarks.md, "The hour chosen by the habit
profile"), not a model: it reads the landing files' history up to D as bench/judge_ceiling.py does.
"""

from __future__ import annotations

import argparse
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import judge  # noqa: E402  (the bench folder is not a package)
import judge_ceiling  # noqa: E402

HOURS = judge.HOURS
BUCKETS = [(8, 11), (12, 14), (15, 17), (18, 21)]  # features.daily_aggregates.BUCKETS in 8-21


def hour_counts(landing: Path, d: date, persons: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(persons x 24) attempts and reaches per local hour, from the landing files up to D."""
    _, _, _, att = judge_ceiling._history(landing, d)
    index = {p: i for i, p in enumerate(persons)}
    who = att["person_id"].map(index)
    known = who.notna().to_numpy()
    rows = who[known].astype(int).to_numpy()
    hours = att["hour"].to_numpy()[known]
    reached = att["outcome"].isin(judge_ceiling._REACH).to_numpy()[known].astype(float)
    n, r = np.zeros((len(persons), 24)), np.zeros((len(persons), 24))
    np.add.at(n, (rows, hours), 1.0)
    np.add.at(r, (rows, hours), reached)
    return n, r


def _with_neighbours(x: np.ndarray, weight: float) -> np.ndarray:
    out = x.copy()
    out[:, 1:] += weight * x[:, :-1]
    out[:, :-1] += weight * x[:, 1:]
    return out


def mixture(n: np.ndarray, r: np.ndarray, k: int, smooth: float, restarts: int = 5) -> np.ndarray:
    """Posterior-mean reach curve per person under the best of ``restarts`` EM fits of ``k`` profiles."""
    pop = np.clip(r.sum(0) / np.maximum(n.sum(0), 1), 1e-3, 1.0)
    best, best_ll = None, -np.inf
    for seed in range(restarts):
        post = np.random.default_rng(seed).dirichlet(np.ones(k), len(n))
        for _ in range(300):
            num, den = post.T @ r + pop, post.T @ n + 1.0
            if smooth:  # share evidence with the neighbouring hours (not across the night)
                num, den = _with_neighbours(num, smooth), _with_neighbours(den, smooth)
            prof = np.clip(num / den, 1e-3, 0.99)
            ll = r @ np.log(prof).T + (n - r) @ np.log1p(-prof).T + np.log(post.mean(0))
            top = ll.max(1, keepdims=True)
            post = np.exp(ll - top)
            z = post.sum(1, keepdims=True)
            post /= z
        total = float((np.log(z) + top).sum())
        if total > best_ll:
            best, best_ll = post @ prof, total
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--landing", type=Path, required=True)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--date", type=date.fromisoformat, required=True)
    a = ap.parse_args()
    rows, p = judge.load_candidates(a.landing, a.home, a.date)
    person = pd.factorize(rows["person_id"])[0]
    tie = rows["contact_id"].rank(method="first").to_numpy()
    first = judge.pick_first(person, rows["rank"].to_numpy(), tie)
    truth = p[first]
    mean, best = truth.mean(1), truth.max(1)

    def realised(cols: np.ndarray) -> float:
        return float((truth[np.arange(len(first)), cols] - mean).sum() / (best - mean).sum())

    n, r = hour_counts(a.landing, a.date, rows["person_id"].unique())
    n, r = n[:, HOURS], r[:, HOURS]
    pop = r.sum(0) / np.maximum(n.sum(0), 1)
    nb = np.zeros_like(n)
    rb = np.zeros_like(r)
    for lo, hi in BUCKETS:  # bucket counts placed at the bucket's first hour
        nb[:, lo - 8] = n[:, lo - 8 : hi - 7].sum(1)
        rb[:, lo - 8] = r[:, lo - 8 : hi - 7].sum(1)
    by_bucket = mixture(nb, rb, 6, 0.0)
    spread = np.zeros_like(by_bucket)
    for lo, hi in BUCKETS:
        spread[:, lo - 8 : hi - 7] = by_bucket[:, [lo - 8]]
    choices = {
        "published": np.clip(rows["best_hour"].to_numpy()[first] - HOURS[0], 0, HOURS.size - 1),
        "population": np.full(len(first), int(np.argmax(pop))),
        "mixture": mixture(n, r, 6, 0.5)[person[first]].argmax(1),
        "buckets": (spread + 1e-3 * pop)[person[first]].argmax(1),
    }
    for name, cols in choices.items():
        print(f"{name:12s} hour gain realised {realised(np.asarray(cols, dtype=int)):.3f}")


if __name__ == "__main__":
    main()
