"""The cost of the hour-habit fit (profiles and shapes) on a synthetic state of many persons.

    nice .venv/bin/python bench/hour_fit.py --persons 2000000

Builds a state of ``--persons`` persons (a few attempts each at random day buckets, four age
bands, five regions) in DuckDB and times ``features.hour_profiles.fit_hour_profiles`` (every temp
table it writes included; ``--no-shapes`` leaves the habit shapes out), printing CPU and wall
seconds, the distinct count vectors and the pairs of vector and attribute values the posteriors
are computed for.
"""

from __future__ import annotations

import argparse
import json
import time

import duckdb
import numpy as np
import pandas as pd

from contactrank.features.daily_aggregates import BUCKETS
from contactrank.features.hour_profiles import fit_hour_profiles


def synthetic_state(persons: int, seed: int = 1) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    names = list(BUCKETS)
    attempts = rng.poisson(6, persons)
    level = rng.choice([0.05, 0.15, 0.35], persons)
    state = {"person_id": np.char.add("p", np.arange(persons).astype(str))}
    for j, b in enumerate(names):
        share = 0.0 if b == "night" else 0.25
        att = rng.binomial(attempts, share)
        state[f"attempt_hour_{b}"] = att
        state[f"reach_hour_{b}"] = rng.binomial(att, level * (1.5 if j == rng.integers(4) else 1.0))
    attrs = pd.DataFrame(
        {
            "person_id": state["person_id"],
            "age_band": rng.choice(["18-29", "30-44", "45-59", "60+"], persons),
            "region": rng.choice([f"r{i}" for i in range(5)], persons),
        }
    )
    return pd.DataFrame(state), attrs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--persons", type=int, default=2_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument(
        "--shapes", action=argparse.BooleanOptionalAction, default=True, help="fit the habit shapes too"
    )
    args = ap.parse_args()
    state, attrs = synthetic_state(args.persons)
    con = duckdb.connect()
    con.execute("SET preserve_insertion_order=false")
    con.register("state_df", state)
    con.execute("CREATE TABLE state AS SELECT * FROM state_df")
    con.register("attrs_df", attrs)
    con.execute("CREATE TABLE attrs AS SELECT * FROM attrs_df")
    runs = []
    for _ in range(args.repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        fit_hour_profiles(con, "state", "attrs", shapes=args.shapes)
        runs.append(
            {"wall_s": round(time.perf_counter() - wall, 2), "cpu_s": round(time.process_time() - cpu, 2)}
        )
    columns = [c[0] for c in con.execute("DESCRIBE profile_by_counts").fetchall()]
    counts = [c for c in columns if c.startswith(("attempt_", "reach_"))]
    vectors = con.execute(
        f"SELECT count(*) FROM (SELECT DISTINCT {', '.join(counts)} FROM profile_by_counts)"
    )
    out = {
        "persons": args.persons,
        "runs": runs,
        "distinct_count_vectors": vectors.fetchone()[0],
        "posterior_rows": con.execute("SELECT count(*) FROM profile_by_counts").fetchone()[0],
        "shapes": args.shapes,
    }
    print(json.dumps(out))


if __name__ == "__main__":
    main()
