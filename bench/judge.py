"""Judge a published priority file against the simulator's truth (not the test-day AUC).

    .venv/bin/python bench/judge.py --landing L --home H --date D [--world NAME] [--no-ceiling]

Reads ``<H>/exports/priority/date=D/priority.parquet`` and ``<L>/truth.parquet`` (true p of every
address at every local hour of D+1, the day the file is used) and, per person, the value of the
rank-1 pick (address at ``best_hour``, in the person's own clock) for:

- ``random``: a uniform listed address at a uniform allowed hour (its exact expectation);
- ``heuristic``: "last success first, else the customer's own" (``f_c_days_since_reach`` then
  ``f_source == 'customer'`` of ``features/date=D``) at a uniform allowed hour;
- ``contactrank``: the published rank 1 at its ``best_hour``; ``contactrank greedy``: the
  highest ``score`` (rank 1 without the address promotions of exploration; a row whose hour was
  explored keeps that hour and its score, as the export does not carry the greedy ones);
- ``ceiling``: bench/judge_ceiling.py, a Bayesian estimator of the world's own structure fitted on
  the same history (landing files up to D); its pick is the best posterior mean
  (``--ceiling-told buckets``: told each attempt's hour bucket only, as the habit counts keep it;
  ``buckets_no_fatigue``: nor the address's earlier tries; ``--ceiling-learns-habits CYCLES``:
  not told the world's hour-habit types but fitting them on the history, bench/judge_ceiling_learned.py);
- ``oracle``: the best true p over the listed addresses and allowed hours.

Columns: mean true p of the pick; ``capture`` of the random -> oracle gap; ``address``: capture
by the address alone (each address at its mean hour, against the best address at its mean
hour); ``hour``: share of the chosen address's available hour gain realised (true p at the pick
minus its mean hour, over its best hour minus its mean hour); ``of ceil``: capture as a share
of the ceiling's; dead / reassigned at rank 1; share of picks at 19h and within an hour of the
chosen address's true best hour (the JSON adds the most frequent pick hour and its share); ECE
(15 equal-width bins) of the scores against the true p at their hour, over every listed row and
over rank 1; in the JSON also the mean score over the mean true p at rank 1 and below it
(``score_over_truth_rank1``, ``score_over_truth_below``).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))

from judge_ceiling import TOLD, ceiling_matrix, told_habits, world_spec  # noqa: E402  (the bench folder is not a package)
from judge_ceiling_learned import as_json, describe, learn_habits  # noqa: E402

HOURS = np.arange(8, 22)  # the pipeline's default allowed hours (settings.hours_start..hours_end)
FIT_PERSONS = 4000  # persons the learned ceiling fits the habit types on: each EM step is a pass over them
ARMS = ("random", "heuristic", "contactrank", "contactrank greedy", "ceiling", "oracle")


def load_candidates(landing: Path, home: Path, d: date) -> tuple[pd.DataFrame, np.ndarray]:
    """The published rows of D joined with the truth: (rows, true p of each row at each allowed hour)."""
    export = pq.read_table(home / "exports" / "priority" / f"date={d.isoformat()}" / "priority.parquet")
    rows = export.to_pandas()
    truth = pq.read_table(landing / "truth.parquet").to_pandas()
    truth = truth[truth["hour"].isin(HOURS)]
    wide = truth.pivot_table(index=["person_id", "contact_id"], columns="hour", values="p_reach")
    status = truth.drop_duplicates(["person_id", "contact_id"]).set_index(["person_id", "contact_id"])
    keys = pd.MultiIndex.from_frame(rows[["person_id", "contact_id"]])
    p = wide.reindex(keys).to_numpy()
    rows["status"] = status["status"].reindex(keys).to_numpy()
    if "timezone" in status.columns:
        rows["true_timezone"] = status["timezone"].reindex(keys).to_numpy()
    known = np.isfinite(p).all(axis=1)
    rows = rows[known].reset_index(drop=True)
    rows.attrs["unmatched"] = int((~known).sum())
    return rows, p[known]


def heuristic_order(home: Path, d: date, rows: pd.DataFrame) -> np.ndarray:
    """Within-person preference of the heuristic (lower is better): last success, then customer's own."""
    feats = pq.read_table(
        home / "lake" / "features" / f"date={d.isoformat()}",
        columns=["person_id", "contact_id", "f_c_days_since_reach", "f_source"],
    ).to_pandas()
    f = feats.drop_duplicates(["person_id", "contact_id"]).set_index(["person_id", "contact_id"])
    keys = pd.MultiIndex.from_frame(rows[["person_id", "contact_id"]])
    since = pd.to_numeric(f["f_c_days_since_reach"].reindex(keys), errors="coerce").to_numpy()
    customer = (f["f_source"].reindex(keys).to_numpy() == "customer").astype(float)
    return np.nan_to_num(since, nan=1e9) * 2 - customer


def pick_first(person: np.ndarray, key: np.ndarray, tie: np.ndarray) -> np.ndarray:
    """Index of the row with the smallest ``key`` per person (ties: smallest ``tie``)."""
    o = np.lexsort((tie, key, person))
    first = np.r_[True, person[o][1:] != person[o][:-1]]
    return o[first]


def ece(score: np.ndarray, truth: np.ndarray, bins: int = 15) -> float:
    """Expected calibration error against known true probabilities (15 equal-width bins)."""
    b = np.minimum((score * bins).astype(int), bins - 1)
    n = np.bincount(b, minlength=bins)
    gap = np.abs(np.bincount(b, score, bins) - np.bincount(b, truth, bins))
    return float(gap.sum() / max(n.sum(), 1))


def arm_figures(p: np.ndarray, rows_pick: np.ndarray, hour_pick: np.ndarray | None, base: dict) -> dict:
    """Figures of one arm: its pick per person (row, hour index or None for a uniform hour)."""
    pr = p[rows_pick]
    mean_h = pr.mean(axis=1)
    value = mean_h if hour_pick is None else pr[np.arange(len(rows_pick)), hour_pick]
    best_h = pr.max(axis=1)
    out = {
        "p": float(value.mean()),
        "capture": (value.mean() - base["random"]) / (base["oracle"] - base["random"]),
        "address": (mean_h.mean() - base["random"]) / (base["best_address"] - base["random"]),
        "hour": float((value - mean_h).sum() / max((best_h - mean_h).sum(), 1e-12)),
    }
    if hour_pick is not None:
        out["at_19h"] = float((HOURS[hour_pick] == 19).mean())
        counts = np.bincount(hour_pick, minlength=HOURS.size)
        out["top_hour"], out["top_hour_share"] = (
            int(HOURS[counts.argmax()]),
            float(counts.max() / counts.sum()),
        )
        out["near_best_hour"] = float((np.abs(hour_pick - pr.argmax(axis=1)) <= 1).mean())
    return out


def hour_columns(rows: pd.DataFrame) -> np.ndarray:
    """Each published row's ``best_hour`` as a column of HOURS (NaN: an hour outside them)."""
    return rows["best_hour"].map({h: i for i, h in enumerate(HOURS)}).to_numpy(dtype=float)


def truth_at_best_hour(rows: pd.DataFrame, p: np.ndarray) -> np.ndarray:
    """The true p of each published row at its ``best_hour`` (an hour outside HOURS judged at the first)."""
    return p[np.arange(len(rows)), np.nan_to_num(hour_columns(rows), nan=0).astype(int)]


def judge_frame(rows: pd.DataFrame, p: np.ndarray, heur: np.ndarray, est: np.ndarray | None) -> dict:
    """Every arm's figures on the published rows ``rows`` with true p ``p`` (rows x HOURS)."""
    person = pd.factorize(rows["person_id"])[0]
    n_persons = person.max() + 1
    mean_h = p.mean(axis=1)
    row_best = p.max(axis=1)
    count = np.bincount(person)
    base = {
        "random": float((np.bincount(person, mean_h) / count).mean()),
        "oracle": float(
            np.maximum.reduceat(
                row_best[np.argsort(person, kind="stable")], np.r_[0, np.cumsum(count)[:-1]]
            ).mean()
        ),
        "best_address": float(pd.Series(mean_h).groupby(person).max().mean()),
    }
    tie = rows["contact_id"].rank(method="first").to_numpy()
    bh = hour_columns(rows)
    r1 = pick_first(person, rows["rank"].to_numpy(), tie)
    greedy = pick_first(person, -rows["score"].to_numpy(), tie)
    picks: dict[str, tuple[np.ndarray, np.ndarray | None]] = {
        "heuristic": (pick_first(person, heur, tie), None),
        "contactrank": (r1, bh[r1]),
        "contactrank greedy": (greedy, bh[greedy]),
    }
    if est is not None:
        e_best = est.max(axis=1)
        ce = pick_first(person, -e_best, tie)
        picks["ceiling"] = (ce, est[ce].argmax(axis=1))
    out: dict = {"persons": int(n_persons), "rows": len(rows), "base": base, "arms": {}}
    out["arms"]["random"] = {"p": base["random"], "capture": 0.0, "address": 0.0, "hour": 0.0}
    for name, (rp, hp) in picks.items():
        if hp is not None and np.isnan(hp.astype(float)).any():
            hp = np.nan_to_num(hp.astype(float), nan=0).astype(int)  # an hour outside 8-21 judged at 8h
        f = arm_figures(p, rp, None if hp is None else hp.astype(int), base)
        status = rows["status"].to_numpy()[rp]
        f["dead"] = float((status == "dead").mean())
        f["reassigned"] = float((status == "reassigned").mean())
        out["arms"][name] = f
    ob = pick_first(person, -row_best, tie)
    out["arms"]["oracle"] = arm_figures(p, ob, p[ob].argmax(axis=1), base)
    at, score = truth_at_best_hour(rows, p), rows["score"].to_numpy()
    out["arms"]["contactrank"]["ece"] = ece(score, at)
    out["arms"]["contactrank"]["ece_rank1"] = ece(score[r1], at[r1])
    # the file's mean promise over the truth's, for the rows a dialer tries first and the rest:
    # a shortfall at rank 1 is most of the file's ECE on the judged worlds
    first = np.zeros(len(rows), dtype=bool)
    first[r1] = True
    for name, m in (("score_over_truth_rank1", first), ("score_over_truth_below", ~first)):
        truth_sum = at[m].sum()
        out["arms"]["contactrank"][name] = float(score[m].sum() / truth_sum) if truth_sum else float("nan")
    out["arms"]["contactrank"]["explored_rank1"] = float(rows["explore"].to_numpy()[r1].mean())
    if est is not None:
        eh = est.argmax(axis=1)
        out["arms"]["ceiling"]["ece"] = ece(est[np.arange(len(rows)), eh], p[np.arange(len(rows)), eh])
    ceil = out["arms"].get("ceiling", {}).get("capture")
    for f in out["arms"].values():
        f["of_ceiling"] = float(f["capture"] / ceil) if ceil else float("nan")
    return out


def judge_run(
    landing: Path,
    home: Path,
    d: date,
    world: str | None = None,
    ceiling: bool = True,
    file_order: bool = False,
    ceiling_told: str = "attempts",
    learn_cycles: int = 0,
    fit_persons: int = FIT_PERSONS,
    learn_starts: int = 3,
) -> dict:
    """Judge the export of D of a simulated run (landing with truth, pipeline home); ``file_order``:
    the ceiling reads the addresses' age order from the first contacts file, ``ceiling_told``: what
    it reads of each attempt (``ceiling_matrix``); ``learn_cycles`` > 0: the ceiling fits the
    world's hour-habit types on the history of ``fit_persons`` of the file's persons instead of
    being told them, the likeliest fit of ``learn_starts`` starts (``judge_ceiling_learned.learn_habits``)."""
    rows, p = load_candidates(landing, home, d)
    heur = heuristic_order(home, d, rows)
    habits = None
    if ceiling and learn_cycles:
        types = told_habits(world_spec(world)).centres.size
        fit_rows = fit_sample(rows, fit_persons)
        habits = learn_habits(
            landing, d, fit_rows, world, types, learn_cycles, ceiling_told, starts=learn_starts
        )
    est = (
        ceiling_matrix(landing, d, rows, HOURS, world, file_order, ceiling_told, habits) if ceiling else None
    )
    out = judge_frame(rows, p, heur, est)
    out["ceiling_habits"] = "told" if habits is None else {"fitted": describe(habits), **as_json(habits)}
    out.update(world=world or "default", date=d.isoformat(), valid_day=(d + timedelta(days=1)).isoformat())
    out["unmatched_rows"] = rows.attrs.get("unmatched", 0)
    out["has_timezone_column"] = "timezone" in rows.columns
    if "best_hour_utc" in rows.columns and "true_timezone" in rows.columns:
        off = rows["true_timezone"].map(_UTC_OFFSETS)
        out["best_hour_utc_consistent"] = float(
            ((rows["best_hour"] - off) % 24 == rows["best_hour_utc"]).mean()
        )
    return out


def fit_sample(rows: pd.DataFrame, persons: int) -> pd.DataFrame:
    """The rows of ``persons`` of the file's persons drawn at random (a fixed draw; all when fewer)."""
    ids = rows["person_id"].unique()
    if ids.size <= persons:
        return rows
    chosen = np.random.default_rng(0).choice(ids, persons, replace=False)
    return rows[rows["person_id"].isin(chosen)].reset_index(drop=True)


_UTC_OFFSETS = {
    "America/Sao_Paulo": -3,
    "America/Manaus": -4,
    "America/Rio_Branco": -5,
    "America/Noronha": -2,
}


SPREAD_FIGURES = ("capture", "of_ceiling", "address", "hour", "dead", "ece")


def spread(reports: list[dict], arm: str = "contactrank") -> dict[str, tuple[float, float, float, float]]:
    """Mean, sample sd, min and max of ``arm``'s figures over judged runs of one world that differ
    only in the model's seed: the spread a change to the ranking must exceed to be seen."""
    out = {}
    for k in SPREAD_FIGURES:
        v = np.array([r["arms"][arm][k] for r in reports if k in r["arms"].get(arm, {})], dtype=float)
        v = v[np.isfinite(v)]
        if len(v):
            sd = float(v.std(ddof=1)) if len(v) > 1 else float("nan")
            out[k] = (float(v.mean()), sd, float(v.min()), float(v.max()))
    return out


def print_table(r: dict) -> None:
    """The judge's table for one world."""
    print(
        f"\n== {r['world']}: export of {r['date']} judged on {r['valid_day']} "
        f"({r['persons']:,} persons, {r['rows']:,} rows) =="
    )
    print(
        f"{'arm':20s} {'p@1':>6s} {'capture':>7s} {'address':>7s} {'hour':>6s} {'of ceil':>7s} "
        f"{'dead':>6s} {'reass':>6s} {'19h':>5s} {'~best h':>7s} {'ECE':>6s}"
    )
    for name in ARMS:
        f = r["arms"].get(name)
        if f is None:
            continue

        def g(k, w=6, fmt=".3f", f=f):
            return f"{f[k]:{w}{fmt}}" if k in f else " " * (w - 1) + "-"

        print(
            f"{name:20s} {g('p')} {g('capture', 7)} {g('address', 7)} {g('hour')} {g('of_ceiling', 7)} "
            f"{g('dead')} {g('reassigned')} {g('at_19h', 5, '.2f')} {g('near_best_hour', 7, '.2f')} "
            f"{g('ece', 6, '.4f')}"
        )


def add_ceiling_told(ap: argparse.ArgumentParser) -> None:
    """The ``--ceiling-told`` and ``--ceiling-learns-habits`` options, shared with bench/judge_worlds.py."""
    ap.add_argument(
        "--ceiling-told",
        choices=TOLD,
        default=TOLD[0],
        help="what the ceiling reads of each attempt: everything, its hour bucket only, or that "
        "without the address's earlier tries (where its edge over a bucket-count learner lies)",
    )
    ap.add_argument(
        "--ceiling-learns-habits",
        type=int,
        default=0,
        metavar="CYCLES",
        help="fit the world's hour-habit types on the history (CYCLES of accelerated EM, three "
        "importance samples each) instead of telling the ceiling them",
    )
    ap.add_argument(
        "--ceiling-fit-persons",
        type=int,
        default=FIT_PERSONS,
        help="how many of the file's persons the habit types are fitted on (a fixed random draw)",
    )
    ap.add_argument(
        "--ceiling-learn-starts",
        type=int,
        default=3,  # one start stops at a local optimum on default
        help="generic starts of the habit fit (centres shifted by a share of their spacing); "
        "the likeliest fit is kept",
    )


def ceiling_options(a: argparse.Namespace) -> dict:
    """``judge_run``'s ceiling arguments from the options of ``add_ceiling_told`` and their neighbours."""
    return {
        "ceiling": not a.no_ceiling,
        "file_order": a.ceiling_file_order,
        "ceiling_told": a.ceiling_told,
        "learn_cycles": a.ceiling_learns_habits,
        "fit_persons": a.ceiling_fit_persons,
        "learn_starts": a.ceiling_learn_starts,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--landing", type=Path, required=True)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--date", type=date.fromisoformat, required=True)
    ap.add_argument("--world", help="the simulator preset the landing was made with (for the ceiling)")
    ap.add_argument("--no-ceiling", action="store_true")
    ap.add_argument(
        "--ceiling-file-order",
        action="store_true",
        help="let the ceiling read the addresses' age order from the first contacts file's rows",
    )
    add_ceiling_told(ap)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    a = ap.parse_args()
    r = judge_run(a.landing, a.home, a.date, a.world, **ceiling_options(a))
    print_table(r)
    if a.json:
        a.json.write_text(json.dumps(r, indent=1, default=float))


if __name__ == "__main__":
    main()
