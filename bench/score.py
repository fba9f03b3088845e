"""Benchmark of scoring + publishing: N candidates x 14 hours with a 500-tree model.

    .venv/bin/python bench/score.py                       # 5M candidates (the target case)
    .venv/bin/python bench/score.py --candidates 200000   # a quick run

Steps: train a 500-tree LightGBM model (31 leaves, 40 features named as the feature store names
them) with an isotonic calibrator; write a synthetic lake for date D (features, contact state,
suppressions, 7 days of attempts for the caps); then run ``score`` and ``publish`` in a child
process per predictor and report wall time, model rows/s and the child's peak RSS. A separate
micro-benchmark compares the predictors on the same matrix (rows/s, max |difference|).
Targets on the 2-core machine: <= 5 min and <= 6 GiB for 5M candidates.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

D = date(2026, 11, 20)
WINDOWS = (7, 30, 90, 365)
COUNTS = ("attempts", "reach", "conv", "wrong_party", "invalid", "noanswer")
CHANNELS = np.array(["voice", "sms", "email", "whatsapp"], dtype=object)
SOURCES = np.array(["customer", "bureau", "enrichment", "attempts"], dtype=object)


def feature_frame(n: int, rng: np.random.Generator) -> pd.DataFrame:
    """36 stored features (+ 4 context features added by add_context = 40)."""
    cols: dict[str, np.ndarray] = {}
    base_rate = rng.beta(1.5, 4.0, n)
    for w in WINDOWS:
        att = rng.poisson(w / 10, n).astype(np.float64)
        cols[f"f_c_attempts_{w}d"] = att
        cols[f"f_c_reach_{w}d"] = rng.binomial(att.astype(np.int64), base_rate).astype(np.float64)
        cols[f"f_c_conv_{w}d"] = rng.binomial(cols[f"f_c_reach_{w}d"].astype(np.int64), 0.2).astype(
            np.float64
        )
        cols[f"f_c_wrong_party_{w}d"] = rng.binomial(att.astype(np.int64), 0.05).astype(np.float64)
        cols[f"f_c_invalid_{w}d"] = rng.binomial(att.astype(np.int64), 0.02).astype(np.float64)
        cols[f"f_c_noanswer_{w}d"] = att - cols[f"f_c_reach_{w}d"]
    cols["f_c_reach_rate_hl7"] = np.clip(base_rate + rng.normal(0, 0.05, n), 0, 1)
    cols["f_c_reach_rate_hl30"] = np.clip(base_rate + rng.normal(0, 0.03, n), 0, 1)
    cols["f_c_days_since_attempt"] = np.where(rng.random(n) < 0.2, np.nan, rng.exponential(5, n))
    cols["f_c_days_since_reach"] = np.where(rng.random(n) < 0.4, np.nan, rng.exponential(20, n))
    cols["f_c_fail_streak"] = rng.geometric(0.4, n).astype(np.float64) - 1
    cols["f_c_age_days"] = rng.integers(0, 720, n).astype(np.float64)
    cols["f_p_attempts_30d"] = rng.poisson(6, n).astype(np.float64)
    cols["f_p_reach_30d"] = rng.poisson(1.5, n).astype(np.float64)
    cols["f_p_n_live_addresses"] = rng.integers(1, 6, n).astype(np.float64)
    cols["f_g_reach_rate_7d"] = np.full(n, 0.21)
    df = pd.DataFrame(cols)
    df["f_channel"] = CHANNELS[rng.integers(0, 4, n)]
    df["f_source"] = SOURCES[rng.integers(0, 4, n)]
    df["_rate"] = base_rate
    return df


def train_model(trees: int, rows: int, seed: int = 0):
    import lightgbm as lgb
    from sklearn.isotonic import IsotonicRegression

    from contactrank.features.context import add_context
    from contactrank.ml.model import ContactModel

    rng = np.random.default_rng(seed)
    df = feature_frame(rows, rng)
    hours = rng.integers(8, 22, rows)
    df = add_context(df, day=D, hour=hours)
    evening = (df["f_hour"] >= 18).to_numpy()
    logit = (
        np.log(df["_rate"] / (1 - df["_rate"] + 1e-9) + 1e-9) - 0.3 * df["f_c_fail_streak"] + 0.5 * evening
    )
    y = (rng.random(rows) < 1 / (1 + np.exp(-logit))).astype(int)
    features = [c for c in df.columns if c.startswith("f_")]
    model = ContactModel(
        booster=None,
        features=features,
        categories={"f_channel": sorted(CHANNELS), "f_source": sorted(SOURCES)},
    )  # type: ignore[arg-type]
    x = model.prepare(df)
    cut = int(rows * 0.8)
    model.booster = lgb.train(
        {
            "objective": "binary",
            "num_leaves": 31,
            "learning_rate": 0.05,
            "verbose": -1,
            "num_threads": 2,
            "seed": seed,
        },
        lgb.Dataset(x.iloc[:cut], y[:cut]),
        num_boost_round=trees,
    )
    model.calibrator = IsotonicRegression(out_of_bounds="clip", y_min=0, y_max=1).fit(
        model.raw_score(df.iloc[cut:]), y[cut:]
    )
    return model, len(features)


def write_lake(settings, n: int, seed: int = 1) -> None:
    from contactrank.features.lake import write_partition

    rng = np.random.default_rng(seed)
    persons = max(1, n // 3)
    person_idx = np.sort(rng.integers(0, persons, n))
    pid = pc.binary_join_element_wise("P", pc.cast(pa.array(person_idx), pa.string()), "")
    cid = pc.binary_join_element_wise("+5511", pc.cast(pa.array(900000000 + np.arange(n)), pa.string()), "")
    df = feature_frame(n, rng).drop(columns="_rate")
    channel = df["f_channel"].to_numpy()
    n_att = rng.integers(0, 40, n)
    last = np.where(rng.random(n) < 0.01, "invalid", np.where(n_att == 0, "none", "no_answer")).astype(object)
    table = pa.Table.from_pandas(df, preserve_index=False)
    for name, col in reversed(
        [
            ("person_id", pid),
            ("contact_id", cid),
            ("channel", pa.array(channel, pa.string())),
            ("last_outcome", pa.array(last, pa.string())),
            ("n_attempts", pa.array(n_att)),
        ]
    ):
        table = table.add_column(0, name, col)
    write_partition(settings, "features", D, table)
    state = pa.table(
        {
            "person_id": pid,
            "contact_id": cid,
            "channel": pa.array(channel, pa.string()),
            "active": rng.random(n) > 0.002,
            "consent": rng.random(n) > 0.002,
        }
    )
    write_partition(settings, "contacts_state", D, state)
    # 0.5% of persons suppressed, 0.2% of addresses opted out
    sp = np.unique(rng.choice(person_idx, size=max(1, persons // 200), replace=False))
    sc = rng.choice(n, size=max(1, n // 500), replace=False)
    supp = pa.table(
        {
            "person_id": pa.array([f"P{i}" for i in sp] + [None] * len(sc), pa.string()),
            "contact_id": pa.array([None] * len(sp) + [f"+5511{900000000 + i}" for i in sc], pa.string()),
            "reason": pa.array(["do_not_call"] * len(sp) + ["opt_out"] * len(sc), pa.string()),
            "effective_from": pa.array([D - timedelta(days=2)] * (len(sp) + len(sc)), pa.date32()),
            "origin": pa.array(["file"] * (len(sp) + len(sc)), pa.string()),
        }
    )
    write_partition(settings, "suppressions", D - timedelta(days=2), supp)
    # attempts of the last 7 days on random addresses: a few persons and addresses reach the caps
    per_day = max(1, n // 50)
    for k in range(7):
        day = D - timedelta(days=k)
        rows = rng.choice(n, size=per_day, replace=True)
        at = pa.array(np.full(per_day, np.datetime64(f"{day}T12:00:00", "us")), pa.timestamp("us", tz="UTC"))
        write_partition(
            settings,
            "attempts",
            day,
            pa.table(
                {
                    "attempt_id": pc.binary_join_element_wise(
                        f"{day}-", pc.cast(pa.array(np.arange(per_day)), pa.string()), ""
                    ),
                    "person_id": pid.take(pa.array(rows)),
                    "contact_id": cid.take(pa.array(rows)),
                    "channel": pa.array(channel[rows], pa.string()),
                    "attempted_at": at,
                    "local_hour": pa.array(np.full(per_day, 12, dtype=np.int8)),
                    "outcome": pa.array(np.full(per_day, "no_answer", dtype=object), pa.string()),
                }
            ),
        )


def child(home: str, model_path: str, predictor: str) -> None:
    """Score + publish in this process; print one JSON line of timings."""
    import logging

    import contactrank.ml.predictor as predictor_mod
    import contactrank.ml.score as score_mod
    from contactrank.ml.publish import publish
    from contactrank.settings import load_settings

    logging.basicConfig(level=logging.WARNING)
    predictor_mod.PREDICTOR = predictor
    settings = load_settings(home=home)
    with open(model_path, "rb") as fh:
        model = pickle.load(fh)
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    t0 = time.perf_counter()
    rep = score_mod.score(
        settings, D, model=model, model_info={"name": "bench", "version": "1", "run_id": "bench"}
    )
    t1 = time.perf_counter()
    man = publish(settings, D)
    t2 = time.perf_counter()
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    peak = r1.ru_maxrss / 2**20  # KiB -> GiB, this process only
    cpu = (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)
    print(
        json.dumps(
            {
                "score_s": t1 - t0,
                "publish_s": t2 - t1,
                "cpu_s": cpu,
                "peak_rss_gib": peak,
                "report": rep,
                "published_rows": man["rows"],
            }
        )
    )


def run_child(home: Path, model_path: Path, predictor: str) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(home), str(model_path), predictor],
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"child failed ({predictor}): {proc.stderr.strip().splitlines()[-1:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    out["wall_s"] = wall
    return out


def micro(model, n_features: int, rows: int, settings) -> dict:
    """Stock LightGBM vs lleaves on the same prepared matrix."""
    from contactrank.ml.predictor import Predictor

    rng = np.random.default_rng(7)
    df = feature_frame(rows, rng)
    from contactrank.features.context import add_context
    from contactrank.ml.predictor import model_matrix

    x = model_matrix(model, model.prepare(add_context(df, day=D, hour=rng.integers(8, 22, rows))))
    out = {}
    stock = Predictor(settings, model, 0, kind="lightgbm")
    t = time.perf_counter()
    ref = stock.raw(x)
    out["lightgbm_rows_s"] = rows / (time.perf_counter() - t)
    try:
        t = time.perf_counter()
        comp = Predictor(settings, model, 0, kind="lleaves")
        out["lleaves_compile_s"] = time.perf_counter() - t
        t = time.perf_counter()
        got = comp.raw(x)
        out["lleaves_rows_s"] = rows / (time.perf_counter() - t)
        out["lleaves_max_abs_diff"] = float(np.max(np.abs(got - ref)))
    except ImportError:
        out["lleaves"] = "not installed"
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--candidates", type=int, default=5_000_000)
    ap.add_argument("--trees", type=int, default=500)
    ap.add_argument("--train-rows", type=int, default=200_000)
    ap.add_argument("--predictors", default="lightgbm,auto")
    ap.add_argument("--micro-rows", type=int, default=1_000_000)
    ap.add_argument("--child", nargs=3, metavar=("HOME", "MODEL", "PREDICTOR"))
    a = ap.parse_args()
    if a.child:
        child(*a.child)
        return
    from contactrank.settings import load_settings

    with tempfile.TemporaryDirectory(prefix="bench-score-") as tmp:
        home = Path(tmp) / "home"
        settings = load_settings(home=home)
        t = time.perf_counter()
        model, n_features = train_model(a.trees, a.train_rows)
        print(
            f"model: {a.trees} trees, {n_features} features, trained in {time.perf_counter() - t:.1f}s",
            flush=True,
        )
        model_path = Path(tmp) / "model.pkl"
        model_path.write_bytes(pickle.dumps(model))
        t = time.perf_counter()
        rows = int(a.candidates * 1.04)  # about 4% are left out (consent, invalid, suppressions, caps)
        write_lake(settings, rows)
        print(f"lake: {rows} feature rows written in {time.perf_counter() - t:.1f}s", flush=True)
        m = micro(model, n_features, a.micro_rows, settings)
        print("micro:", json.dumps(m), flush=True)
        results = {}
        for predictor in a.predictors.split(","):
            if predictor == "auto":
                # the compiled binary is cached under <home>/tmp/lleaves by the micro run;
                # drop it to time a cold start
                for f in (home / "tmp" / "lleaves").glob("*.o"):
                    f.unlink()
            r = run_child(home, model_path, predictor)
            rep = r["report"]
            model_rows = rep["candidates"] * 14
            r["model_rows_s"] = model_rows / r["score_s"]
            results[predictor] = r
            print(
                f"{predictor}: predictor={rep['predictor']} candidates={rep['candidates']} "
                f"persons={rep['persons']} "
                f"score={r['score_s']:.1f}s publish={r['publish_s']:.1f}s wall={r['wall_s']:.1f}s "
                f"model rows/s={r['model_rows_s']:,.0f} cpu={r['cpu_s']:.0f}s "
                f"peak RSS={r['peak_rss_gib']:.2f} GiB "
                f"load avg={os.getloadavg()[0]:.1f} "
                f"left out cap={rep['persons_left_out_cap']} "
                f"suppression={rep['persons_left_out_suppression']}",
                flush=True,
            )
        print(
            json.dumps(
                {"machine": platform.processor() or platform.machine(), "micro": m, "runs": results},
                default=str,
            )
        )


if __name__ == "__main__":
    main()
