"""Synthetic training partitions with a learnable signal (for ml/ tests and bench/train.py).

Writes ``training/date=D`` partitions through ``features.lake.write_partition`` with the agreed
column names (/tmp/names.md), so the model tests do not depend on the features stage.
"""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd

from contactrank.features.lake import write_partition

CHANNELS = np.array(["voice", "sms", "email", "whatsapp"])
SOURCES = np.array(["customer", "bureau", "enrichment"])
_CH_EFFECT = np.array([0.0, -0.4, -0.9, 0.3])
_SRC_EFFECT = np.array([0.5, -0.3, -0.6])


def make_day(
    day: date,
    rows: int,
    seed: int,
    persons: int = 2000,
    intercept: float = -1.6,
    extra_features: int = 0,
    shuffle_labels: bool = False,
    float32: bool = False,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(training rows of ``day``, truth rows ``attempt_id, p_reach, p_conversion``).

    Each person has 4 addresses with a latent quality that stays fixed across days (seeded by
    the person), so history features carry signal; ``intercept`` shifts the base rate per day
    (a different intercept on the last days makes the raw model miscalibrated there).
    """
    rng = np.random.default_rng([seed, day.toordinal()])
    person = rng.integers(0, persons, rows)
    slot = rng.integers(0, 4, rows)
    # per-address latent quality, stable across days
    prng = np.random.default_rng(seed)
    quality = prng.normal(0.0, 1.2, (persons, 4))
    channel_idx = prng.integers(0, 4, (persons, 4))
    source_idx = prng.integers(0, 3, (persons, 4))
    q = quality[person, slot]
    ch = channel_idx[person, slot]
    src = source_idx[person, slot]
    hour = rng.integers(8, 22, rows)
    evening = ((hour >= 18) & (hour <= 21)).astype(float)
    logit = intercept + 1.1 * q + _CH_EFFECT[ch] + _SRC_EFFECT[src] + 0.4 * evening * (ch == 0)
    p = 1.0 / (1.0 + np.exp(-logit))
    y = (rng.random(rows) < p).astype("int8")
    conv = ((rng.random(rows) < 0.3) & (y == 1)).astype("int8")
    if shuffle_labels:
        y = rng.permutation(y)
    n_att = rng.poisson(6, rows).astype("float64")
    rate = 1.0 / (1.0 + np.exp(-(intercept + 1.1 * q)))
    reach = rng.binomial(n_att.astype(int), rate).astype("float64")
    days_since = np.where(reach > 0, rng.exponential(8 / (1 + np.maximum(q, -0.9)), rows), np.nan)
    df = pd.DataFrame(
        {
            "attempt_id": [f"a{day:%Y%m%d}-{i:07d}" for i in range(rows)],
            "person_id": [f"p{x:06d}" for x in person],
            "contact_id": [f"c{x:06d}-{s}" for x, s in zip(person, slot, strict=True)],
            "channel": CHANNELS[ch],
            "date": day,
            "label_reach": y,
            "label_conversion": conv,
            "f_c_attempts_30d": n_att,
            "f_c_reach_30d": reach,
            "f_c_reach_rate_hl30": (reach + 1.0) / (n_att + 5.0) + rng.normal(0, 0.02, rows),
            "f_c_days_since_reach": days_since,
            "f_c_fail_streak": rng.poisson(np.exp(-q), rows).astype("float64"),
            "f_c_last_outcome": np.where(rng.random(rows) < rate, "right_party", "no_answer"),
            "f_source": SOURCES[src],
            "f_channel": CHANNELS[ch],
            "f_p_attempts_30d": n_att + rng.poisson(10, rows),
            "f_g_reach_rate_7d": np.full(rows, 1 / (1 + np.exp(-intercept))),
            "f_hour": hour.astype("float64"),
            "f_dow": np.full(rows, float(day.weekday())),
            "f_month": np.full(rows, float(day.month)),
            "f_dom": np.full(rows, float(day.day)),
        }
    )
    for j in range(extra_features):  # noise columns, to reach a realistic width in benchmarks
        df[f"f_x_noise_{j:03d}"] = rng.normal(0, 1, rows).astype("float32" if float32 else "float64")
    if float32:
        num = [c for c in df.columns if c.startswith("f_") and df[c].dtype == "float64"]
        df[num] = df[num].astype("float32")
    truth = pd.DataFrame({"attempt_id": df["attempt_id"], "p_reach": p, "p_conversion": p * 0.3})
    return df, truth


def write_days(
    settings,
    end: date,
    days: int,
    rows: int = 1500,
    seed: int = 7,
    intercepts: dict[date, float] | None = None,
    shuffle_labels: bool = False,
    truth: bool = True,
    **kw,
) -> list[date]:
    """Write ``days`` training partitions ending at ``end`` (and the oracle truth file)."""
    dates = [end - timedelta(days=days - 1 - i) for i in range(days)]
    truths = []
    for d in dates:
        df, t = make_day(
            d, rows, seed, intercept=(intercepts or {}).get(d, -1.6), shuffle_labels=shuffle_labels, **kw
        )
        write_partition(settings, "training", d, df)
        truths.append(t)
    if truth:
        settings.landing.mkdir(parents=True, exist_ok=True)
        path = settings.landing / "truth_attempts.parquet"
        allt = pd.concat(truths, ignore_index=True)
        if path.exists():
            allt = pd.concat([pd.read_parquet(path), allt]).drop_duplicates("attempt_id", keep="last")
        allt.to_parquet(path, index=False)
    return dates
