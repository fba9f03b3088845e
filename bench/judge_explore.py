"""What exploring costs the published rank 1, under other rules for the addresses it may promote.

    .venv/bin/python bench/judge_explore.py --landing L --home H --date D [--share 0.05]

From a published file (its scores and propensities) and the truth (``<L>/truth.parquet``), the
expected loss at rank 1 of promoting, with probability ``--share``, one of the person's explorable
addresses instead of the greedy top, each address valued by the truth at its mean allowed hour,
as a share of the address gap (best address minus a uniform one, the judge's ``address`` column):

- ``uniform``: every untested address (at most ``explore_max_attempts`` attempts), drawn uniformly
  (the rule before ``explore_min_score_ratio``);
- ``score``: the same, drawn in proportion to the score;
- ``ratio R``: only those whose score is at least R times the greedy top's, drawn uniformly.

Also the share of persons with something to explore under each rule, how many of the candidates
are dead or reassigned, and how often they truly beat the greedy top. Exact in expectation: no
draw. The explorable set is read from the file: rows with a positive propensity that are not the
greedy top, so the file must come from a rule at least as wide as the ones compared (ratio 0).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

import judge  # noqa: E402  (the bench folder is not a package)


def explore_costs(rows: pd.DataFrame, p: np.ndarray, share: float, ratios=(0.3, 0.5, 0.7)) -> dict:
    rows = rows.assign(value=p.mean(axis=1), pid=pd.factorize(rows["person_id"])[0])
    ordered = rows.sort_values(["pid", "score"], ascending=[True, False])
    top_index = ordered.groupby("pid").head(1).index
    top = rows.loc[top_index].set_index("pid")
    gap = (rows.groupby("pid")["value"].max() - rows.groupby("pid")["value"].mean()).mean()
    cand = rows[(rows["propensity"] > 0) & ~rows.index.isin(top_index)].copy()
    cand["top_score"] = top["score"].reindex(cand["pid"]).to_numpy()
    cand["top_value"] = top["value"].reindex(cand["pid"]).to_numpy()
    persons = len(top)

    def cost(weight: np.ndarray) -> dict:
        w = pd.Series(weight, index=cand.index, dtype=float)
        total = w.groupby(cand["pid"]).transform("sum")
        pick = w / total.where(total > 0, 1.0)
        loss = ((cand["top_value"] - cand["value"]) * pick).groupby(cand["pid"]).sum()
        exploring = w.groupby(cand["pid"]).sum() > 0
        return {
            "cost_of_address_gap": float(share * loss[exploring].sum() / persons / gap),
            "persons_with_something_to_explore": float(exploring.sum() / persons),
        }

    out = {"uniform": cost(np.ones(len(cand))), "score": cost(cand["score"].to_numpy())}
    for r in ratios:
        out[f"ratio {r}"] = cost((cand["score"] >= r * cand["top_score"]).to_numpy(dtype=float))
    plausible = cand["score"] >= 0.5 * cand["top_score"]
    out["candidates"] = {
        "dead_or_reassigned": float(cand["status"].isin(["dead", "reassigned"]).mean()),
        "mean_true_p": float(cand["value"].mean()),
        "greedy_top_mean_true_p": float(top["value"].mean()),
        "beat_the_top_all": float((cand["value"] > cand["top_value"]).mean()),
        "beat_the_top_ratio_0.5": float((cand["value"] > cand["top_value"])[plausible].mean()),
    }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--landing", type=Path, required=True)
    ap.add_argument("--home", type=Path, required=True)
    ap.add_argument("--date", type=date.fromisoformat, required=True)
    ap.add_argument("--share", type=float, default=0.05)
    a = ap.parse_args()
    rows, p = judge.load_candidates(a.landing, a.home, a.date)
    print(json.dumps(explore_costs(rows, p, a.share), indent=1))


if __name__ == "__main__":
    main()
