"""Benchmark of the feature build.

Generates a history directly in lake format with numpy/pyarrow (default: 120 days x 300k attempts =
36M rows, 2M persons, 5M contacts), then measures, each step in its own process (peak RSS per step):

- ``scan``: DuckDB scan of every attempts column the features read (the floor);
- ``full``: ``build_features(full=True)`` of the day before the last (daily aggregates of every day
  from raw, state, features, training);
- ``incremental``: ``build_features`` of the last day from the state of the day before;
- ``pandas`` / ``duckdb_small``: a straightforward pandas implementation of the same contact, person
  and population features and the DuckDB full rebuild, both on a 10x smaller history (the ratio);
  a few columns of both are compared to show they compute the same thing.

    nice .venv/bin/python bench/features.py                # full scale (≈ 5 GB of disk under bench/out)
    .venv/bin/python bench/features.py --scale 0.05        # 1/20 for development
    ... --notes docs/bench-notes/features.md              # also write the markdown section

Targets (2 cores): incremental <= 60 s, full rebuild <= 5 min, peak RSS <= 6 GiB.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
# This file is named like the package it measures: keep bench/ off the import path.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != Path(__file__).resolve().parent]
START = date(2026, 1, 1)
FULL = {"days": 120, "per_day": 300_000, "persons": 2_000_000, "contacts": 5_000_000}
TARGETS = {"incremental": 60.0, "full": 300.0, "rss_gib": 6.0}


def _settings(home: Path):
    from contactrank.settings import load_settings

    return load_settings(home=home)


def _ids(prefix: str, idx: np.ndarray) -> pa.Array:
    return pc.binary_join_element_wise(prefix, pa.array(idx).cast(pa.string()), "")


# --- generator -------------------------------------------------------------------------------------


def generate(home: Path, days: int, per_day: int, persons: int, contacts: int, seed: int = 0) -> dict:
    """Write attempts for every day, contacts_state for the last 3 days, persons upserts."""
    from contactrank.features.lake import write_partition
    from contactrank.features.schema import ATTEMPTS, CONTACTS_STATE

    settings = _settings(home)
    rng = np.random.default_rng(seed)
    person_of = np.concatenate([np.arange(persons), rng.integers(0, persons, contacts - persons)])
    channel_of = rng.choice(4, contacts, p=[0.5, 0.2, 0.1, 0.2])
    channels = np.array(["voice", "sms", "email", "whatsapp"])
    source_of = rng.choice(3, contacts, p=[0.5, 0.3, 0.2])
    sources = np.array(["customer", "bureau", "enrichment"])
    quality = rng.beta(2, 5, contacts)
    late = rng.random(contacts) < 0.15
    first_day = np.where(late, rng.integers(0, days, contacts), -rng.integers(1, 365, contacts))
    order = np.argsort(first_day, kind="stable")
    sorted_first = first_day[order]
    pid = _ids("P", person_of)
    cid = _ids("+5511", 900_000_000 + np.arange(contacts))
    chan = pa.array(channels[channel_of])
    outcomes_ok = np.array(["right_party", "converted", "opt_out"])
    outcomes_ko = np.array(["no_answer", "busy", "voicemail", "rejected", "invalid", "wrong_party"])
    t0 = time.perf_counter()
    for day in range(days):
        d = START + timedelta(days=day)
        n_elig = int(np.searchsorted(sorted_first, day, side="right"))
        pick = order[rng.integers(0, n_elig, per_day)]
        hour = rng.integers(8, 22, per_day)
        hour_factor = np.where((hour >= 18) | (hour < 11), 1.3, 0.8)
        reached = rng.random(per_day) < np.clip(quality[pick] * hour_factor, 0, 1)
        outcome = np.where(
            reached,
            outcomes_ok[rng.choice(3, per_day, p=[0.8, 0.15, 0.05])],
            outcomes_ko[rng.choice(6, per_day, p=[0.5, 0.1, 0.2, 0.08, 0.05, 0.07])],
        )
        base = int(datetime(d.year, d.month, d.day, tzinfo=UTC).timestamp() * 1e6)
        ts = base + (hour + 3) * 3_600_000_000 + rng.integers(0, 3_600_000_000, per_day)
        table = pa.table(
            {
                "attempt_id": _ids(f"A{day:03d}-", np.arange(per_day)),
                "person_id": pid.take(pa.array(pick)),
                "contact_id": cid.take(pa.array(pick)),
                "channel": chan.take(pa.array(pick)),
                "attempted_at": pa.array(ts, pa.timestamp("us", tz="UTC")),
                "local_hour": pa.array(hour.astype("int8")),
                "outcome": pa.array(outcome),
                "campaign_id": _ids("camp-", rng.integers(0, 8, per_day)),
                "duration_s": pa.array(np.where(reached, rng.exponential(60, per_day), 0.0)),
            },
            schema=ATTEMPTS,
        )
        write_partition(settings, "attempts", d, table)
    t_att = time.perf_counter() - t0
    for day in range(days - 3, days):
        d = START + timedelta(days=day)
        keep = np.flatnonzero(first_day <= day)
        k = pa.array(keep)
        fs = np.maximum(first_day[keep], -3650)
        table = pa.table(
            {
                "person_id": pid.take(k),
                "contact_id": cid.take(k),
                "channel": chan.take(k),
                "source": pa.array(sources[source_of[keep]]),
                "consent": pa.array(rng.random(len(keep)) > 0.02),
                "active": pa.array(rng.random(len(keep)) > 0.05),
                "first_seen": pa.array([START + timedelta(days=int(x)) for x in np.unique(fs)]).take(
                    pa.array(np.searchsorted(np.unique(fs), fs))
                ),
                "updated_at": pa.array(
                    np.full(len(keep), int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1e6)),
                    pa.timestamp("us", tz="UTC"),
                ),  # fmt: skip
            },
            schema=CONTACTS_STATE,
        )
        write_partition(settings, "contacts_state", d, table)
    regions = np.array([f"r{i:02d}" for i in range(27)])
    bands = np.array(["18-25", "26-35", "36-45", "46-55", "56-65", "65+"])
    write_partition(settings, "persons", START, pa.table({
        "person_id": _ids("P", np.arange(persons)),
        "region": pa.array(regions[rng.integers(0, 27, persons)]),
        "age_band": pa.array(bands[rng.integers(0, 6, persons)]),
        "balance": pa.array(rng.lognormal(6, 1.5, persons)),
        "is_customer": pa.array(rng.random(persons) < 0.6),
    }))  # fmt: skip
    for day in range(7, days, 7):
        upd = rng.choice(persons, max(persons // 100, 1), replace=False)
        write_partition(settings, "persons", START + timedelta(days=day), pa.table({
            "person_id": _ids("P", upd), "balance": pa.array(rng.lognormal(6, 1.5, len(upd)))}))  # fmt: skip
    size = sum(f.stat().st_size for f in (home / "lake").rglob("*.parquet"))
    return {"attempt_rows": days * per_day, "seconds_attempts": round(t_att, 1),
            "seconds": round(time.perf_counter() - t0, 1), "lake_bytes": size}  # fmt: skip


# --- measured steps --------------------------------------------------------------------------------


def step_scan(home: Path) -> dict:
    from contactrank.features.lake import duckdb_connect, parquet_glob

    settings = _settings(home)
    con = duckdb_connect(settings)
    t0 = time.perf_counter()
    row = con.execute(
        "SELECT count(*), max(attempt_id), max(person_id), max(contact_id), max(channel), max(attempted_at),"
        f" max(local_hour), max(outcome), max(campaign_id)"
        f" FROM read_parquet('{parquet_glob(settings, 'attempts')}')"
    ).fetchone()
    return {"rows": row[0], "seconds": round(time.perf_counter() - t0, 2)}


def step_build(home: Path, day: int, full: bool) -> dict:
    from contactrank.features.build import build_features

    return build_features(_settings(home), START + timedelta(days=day), full=full)


def step_pandas(home: Path, day: int) -> dict:
    """A straightforward pandas implementation of the contact, person and population features of ``day``
    from the raw attempts (the reference the DuckDB build is measured against); compares a few columns
    with DuckDB's."""
    import pandas as pd

    from contactrank.features.daily_aggregates import BUCKETS, KINDS
    from contactrank.features.feature_state import HALF_LIVES, WINDOWS
    from contactrank.features.lake import parquet_glob

    settings = _settings(home)
    m = settings.prior_strength
    D = pd.Timestamp(START + timedelta(days=day))
    t0 = time.perf_counter()
    parts = []
    for x in range(day + 1):
        p = settings.lake / "attempts" / f"date={(START + timedelta(days=x)).isoformat()}" / "part-0.parquet"
        if p.is_file():
            df = pq.read_table(p).to_pandas()
            df["date"] = pd.Timestamp(START + timedelta(days=x))
            parts.append(df)
    a = pd.concat(parts, ignore_index=True)
    del parts
    _ = parquet_glob
    a["ago"] = (D - a["date"]).dt.days
    a["reach"] = a.outcome.isin(["right_party", "converted", "opt_out"])
    a["conv"] = a.outcome.eq("converted")
    a["wrong_party"] = a.outcome.eq("wrong_party")
    a["invalid"] = a.outcome.eq("invalid")
    a["noanswer"] = a.outcome.isin(["no_answer", "busy", "voicemail"])
    a["attempts"] = True
    bucket = pd.Series("night", index=a.index)
    for b, r in BUCKETS.items():
        if r:
            bucket[a.local_hour.between(*r)] = b
    a["bucket"] = bucket
    key = ["person_id", "contact_id"]
    cols = {}
    for k in KINDS:
        for w in WINDOWS:
            cols[f"f_c_{k}_{w}d"] = a[k] & (a.ago < w)
    for b in BUCKETS:
        cols[f"f_c_reach_hour_{b}"] = a.reach & a.bucket.eq(b) & (a.ago < 365)
        cols[f"f_c_attempt_hour_{b}"] = a.bucket.eq(b) & (a.ago < 365)
    for i in range(7):
        cols[f"f_c_reach_dow_{i}"] = a.reach & a.date.dt.day_of_week.eq(i) & (a.ago < 365)
    for h in HALF_LIVES:
        wgt = 0.5 ** (a.ago / h)
        cols[f"da_{h}"] = wgt
        cols[f"dr_{h}"] = wgt * a.reach
    ind = pd.DataFrame(cols)
    ind[key] = a[key]
    st = ind.groupby(key, sort=False).sum()
    del ind
    for name, flag in [
        ("attempt", a.attempts),
        ("reach", a.reach),
        ("invalid", a.invalid),
        ("wrong_party", a.wrong_party),
    ]:
        last = a.loc[flag].groupby(key, sort=False)["ago"].min()
        st[f"f_c_days_since_{name}"] = last.reindex(st.index)
    a = a.sort_values(key + ["date", "attempted_at", "attempt_id"])
    a["rank"] = a.groupby(key, sort=False).cumcount()
    size = a.groupby(key, sort=False).size()
    last_reach_rank = a.loc[a.reach].groupby(key, sort=False)["rank"].max().reindex(size.index)
    st["f_c_fail_streak"] = (size - 1 - last_reach_rank.fillna(-1)).reindex(st.index)
    lastrow = a.groupby(key, sort=False).tail(1).set_index(key)
    st["f_c_last_outcome"] = lastrow.outcome.reindex(st.index)
    st["last_campaign"] = lastrow.campaign_id.reindex(st.index)
    st["n_attempts"] = size.reindex(st.index)
    st = st.reset_index()
    cs_files = sorted((settings.lake / "contacts_state").glob("date=*/part-0.parquet"))
    cs = pq.read_table(
        [p for p in cs_files if p.parent.name <= f"date={D.date().isoformat()}"][-1]
    ).to_pandas()
    f = cs.merge(st, on=key, how="left")
    for c in [
        c for c in st.columns if c.startswith("f_c_") and "days_since" not in c and c != "f_c_last_outcome"
    ]:
        f[c] = f[c].fillna(0)
    full_state = st.merge(cs[key + ["source", "channel"]], on=key, how="left")
    for h in HALF_LIVES:
        tot = full_state[f"dr_{h}"].sum() / full_state[f"da_{h}"].sum()
        ch = full_state.groupby("channel").agg(r=(f"dr_{h}", "sum"), n=(f"da_{h}", "sum"))
        ch_p = (ch.r + m * tot) / (ch.n + m)
        cs_g = (
            full_state.groupby(["channel", "source"])
            .agg(r=(f"dr_{h}", "sum"), n=(f"da_{h}", "sum"))
            .reset_index()
        )
        cs_g["p"] = (cs_g.r + m * cs_g.channel.map(ch_p)) / (cs_g.n + m)
        f = f.merge(cs_g[["channel", "source", "p"]], on=["channel", "source"], how="left")
        f["p"] = f["p"].fillna(f.channel.map(ch_p)).fillna(tot)
        f[f"f_c_reach_rate_hl{h}"] = (f[f"dr_{h}"].fillna(0) + m * f.p) / (f[f"da_{h}"].fillna(0) + m)
        f = f.drop(columns="p")
    f["f_c_age_days"] = (D - pd.to_datetime(f.first_seen)).dt.days.clip(lower=0)
    pcols = [
        c
        for c in st.columns
        if c.startswith("f_c_") and c.endswith("d") and "days" not in c and "hour" not in c
    ]
    per = st.groupby("person_id")[
        pcols + [f"da_{h}" for h in HALF_LIVES] + [f"dr_{h}" for h in HALF_LIVES]
    ].sum()
    per.columns = [c.replace("f_c_", "f_p_") if c.startswith("f_c_") else f"p_{c}" for c in per.columns]
    per["f_p_n_live_addresses"] = cs.assign(live=cs.active & cs.consent).groupby("person_id").live.sum()
    f = f.merge(per, left_on="person_id", right_index=True, how="left")
    f[per.columns] = f[per.columns].fillna(0)  # persons never attempted: zero counts, as in DuckDB
    recent = a[a.ago < 30]
    pop = recent.groupby("channel").agg(r=("reach", "mean"))
    f["f_g_channel_reach_rate_30d"] = f.channel.map(pop.r)
    f["f_g_reach_rate_30d"] = recent.reach.mean()
    camp = recent.groupby("campaign_id").reach.mean()
    f["f_g_campaign_reach_rate_30d"] = f.last_campaign.map(camp)
    seconds = time.perf_counter() - t0

    ref = pq.read_table(
        settings.lake / "features" / f"date={D.date().isoformat()}" / "part-0.parquet"
    ).to_pandas()
    both = f.merge(ref, on=key, suffixes=("_pd", "")).copy()
    checks = {}
    for c in ["f_c_attempts_30d", "f_c_reach_365d", "f_c_fail_streak", "f_c_days_since_reach",
              "f_c_reach_hour_evening", "f_c_reach_rate_hl7", "f_p_attempts_7d",
              "f_g_channel_reach_rate_30d"]:  # fmt: skip
        x, y = both[c + "_pd"].astype(float).to_numpy(), both[c].astype(float).to_numpy()
        checks[c] = bool(np.allclose(x, y, rtol=1e-4, equal_nan=True))
    return {"rows": len(f), "attempt_rows": len(a), "seconds": round(seconds, 1), "same_as_duckdb": checks}


# --- orchestration -----------------------------------------------------------------------------------


def _child(args: list[str]) -> dict:
    out = subprocess.run([sys.executable, __file__, *args], capture_output=True, text=True, cwd=ROOT)
    if out.returncode != 0:
        raise SystemExit(f"step {args} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_step(ns: argparse.Namespace) -> None:
    home = Path(ns.home)
    t0 = time.perf_counter()
    if ns.step == "generate":
        res = generate(home, ns.days, ns.per_day, ns.persons, ns.contacts)
    elif ns.step == "scan":
        res = step_scan(home)
    elif ns.step == "pandas":
        res = step_pandas(home, ns.day)
    else:
        res = step_build(home, ns.day, full=ns.step == "full")
    res["wall_seconds"] = round(time.perf_counter() - t0, 2)
    if isinstance(res.get("cpu_seconds"), dict):
        res["phase_cpu_seconds"] = res.pop("cpu_seconds")
    usage = resource.getrusage(resource.RUSAGE_SELF)
    # CPU seconds are less sensitive than wall time to other load on a shared machine.
    res["cpu_seconds"] = round(usage.ru_utime + usage.ru_stime, 1)
    res["peak_rss_gib"] = round(usage.ru_maxrss / 2**20, 2)
    res["load_avg_1m"] = round(os.getloadavg()[0], 1)  # other processes competing for the 2 cores
    print(json.dumps(res, default=str))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--scale", type=float, default=1.0, help="fraction of 120 d x 300k/day, 2M persons, 5M contacts"
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "out" / "features"))
    ap.add_argument("--keep", action="store_true", help="keep the generated lakes")
    ap.add_argument("--skip-pandas", action="store_true")
    ap.add_argument("--notes", help="write the markdown section to this file")
    ap.add_argument("--step", help=argparse.SUPPRESS)
    ap.add_argument("--home", help=argparse.SUPPRESS)
    ap.add_argument("--day", type=int, help=argparse.SUPPRESS)
    for k in ("days", "per_day", "persons", "contacts"):
        ap.add_argument(f"--{k.replace('_', '-')}", type=int, help=argparse.SUPPRESS)
    ns = ap.parse_args()
    if ns.step:
        run_step(ns)
        return

    days = FULL["days"]
    size = {k: max(int(v * ns.scale), 1000) for k, v in FULL.items() if k != "days"}
    small = {k: max(v // 10, 1000) for k, v in size.items()}
    out = Path(ns.out)
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    res: dict[str, dict] = {}

    def gen(home: Path, sz: dict) -> dict:
        return _child(["--step", "generate", "--home", str(home), "--days", str(days),
                       "--per-day", str(sz["per_day"]), "--persons", str(sz["persons"]),
                       "--contacts", str(sz["contacts"])])  # fmt: skip

    big, little = out / "big", out / "small"
    try:
        res["generate"] = gen(big, size)
        print("generate", res["generate"], flush=True)
        res["scan"] = _child(["--step", "scan", "--home", str(big)])
        print("scan", res["scan"], flush=True)
        res["full"] = _child(["--step", "full", "--home", str(big), "--day", str(days - 2)])
        print("full", res["full"], flush=True)
        res["incremental"] = _child(["--step", "incremental", "--home", str(big), "--day", str(days - 1)])
        print("incremental", res["incremental"], flush=True)
        if not ns.keep:
            shutil.rmtree(big, ignore_errors=True)
        if not ns.skip_pandas:
            res["generate_small"] = gen(little, small)
            res["duckdb_small"] = _child(["--step", "full", "--home", str(little), "--day", str(days - 1)])
            print("duckdb_small", res["duckdb_small"], flush=True)
            res["pandas"] = _child(["--step", "pandas", "--home", str(little), "--day", str(days - 1)])
            print("pandas", res["pandas"], flush=True)
    finally:
        if not ns.keep:
            shutil.rmtree(out, ignore_errors=True)
    md = _markdown(ns.scale, size, small, res)
    print(md)
    if ns.notes:
        Path(ns.notes).write_text(md)


def _cpu(step: dict) -> str:
    return (
        f" ({step['cpu_seconds']} s CPU, load {step.get('load_avg_1m', '?')})"
        if "cpu_seconds" in step
        else ""
    )


def _markdown(scale: float, size: dict, small: dict, r: dict) -> str:
    rss = max(v.get("peak_rss_gib", 0) for k, v in r.items() if k in ("full", "incremental", "scan"))
    inc, full, gen = r["incremental"], r["full"], r["generate"]
    scale_arg = "" if scale == 1 else f" --scale {scale}"
    met = {
        "incremental": "met" if inc["seconds"] <= TARGETS["incremental"] else "NOT met",
        "full": "met" if full["seconds"] <= TARGETS["full"] else "NOT met",
        "rss": "met" if rss <= TARGETS["rss_gib"] else "NOT met",
    }
    t_inc, t_full = inc["timings"], full["timings"]
    lines = [
        "## Features",
        "",
        f"Command: `nice .venv/bin/python bench/features.py{scale_arg}` — "
        f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, DuckDB 2 with "
        "`threads=2`, `memory_limit=4GB` (settings defaults); run on {date} UTC.".replace(
            "{date}", datetime.now(UTC).strftime("%Y-%m-%d %H:%M")
        ),
        "",
        f"History: 120 days x {size['per_day']:,} attempts/day = {gen['attempt_rows']:,} rows, "
        f"{size['persons']:,} persons, {size['contacts']:,} contacts; "
        f"lake {gen['lake_bytes'] / 2**30:.2f} GiB "
        f"(generated in {gen['seconds']} s).",
        "",
        "| measure | figure | target | |",
        "|---|---|---|---|",
        f"| raw Parquet scan of the attempts (9 columns, the floor) | {r['scan']['seconds']} s"
        f"{_cpu(r['scan'])} | – | |",
        f"| incremental build of one day (`build_features`) | {inc['seconds']} s{_cpu(inc)} "
        f"(state {t_inc['state']} s, features {t_inc['features']} s, training {t_inc['training']} s) "
        f"| <= 60 s | {met['incremental']} |",
        f"| full rebuild from raw (`full=True`: {full['daily_agg_days']} daily aggregates, "
        "state of D-1 and D, "
        f"features, training) | {full['seconds']} s{_cpu(full)} (daily_agg {t_full['daily_agg']} s) "
        f"| <= 300 s | {met['full']} |",
        f"| peak RSS (max over the steps, each its own process) | {rss} GiB (full {full['peak_rss_gib']}, "
        f"incremental {inc['peak_rss_gib']}) | <= 6 GiB | {met['rss']} |",
        f"| feature rows / state rows / training rows | {inc['rows']:,} / {inc['state_rows']:,} "
        f"/ {inc['training_rows']:,} | | |",
    ]
    if "pandas" in r:
        p, ds = r["pandas"], r["duckdb_small"]
        lines += [
            f"| 10x smaller history ({p['attempt_rows']:,} rows): straightforward pandas "
            f"| {p['seconds']} s{_cpu(p)}, {p['peak_rss_gib']} GiB | | |",
            f"| same history: DuckDB full rebuild | {ds['seconds']} s{_cpu(ds)}, "
            f"{ds['peak_rss_gib']} GiB | | "
            f"pandas/DuckDB = {p['seconds'] / max(ds['seconds'], 1e-9):.1f}x |",
            "",
            "pandas and DuckDB agree on the compared columns: "
            + ", ".join(f"`{k}` {'yes' if v else 'NO'}" for k, v in p["same_as_duckdb"].items())
            + ". (The pandas version computes the contact features, person sums and population rates only, "
            "so it does less work than the DuckDB build it is compared with.)",
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
