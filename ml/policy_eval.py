"""Off-policy evaluation of a ranking policy from the logged priority files (IPS and SNIPS).

Log: for every published date X in [start, end] and every person, the rank-1 row of
``priority/date=X`` (the logged action ``a``, with the logging ``propensity`` p(a|x)).
Outcome: the attempts made on X+1 (the day the file was valid for) on that address: reward 1 if
any reached the person (right_party/converted/opt_out; converted only with label
``conversion``), 0 if it was attempted without reaching. Persons whose rank-1 address was not
attempted on X+1 give no feedback and are left out (the estimate assumes the campaign followed
the file for the persons it called).

Target policies, each a probability pi(a|x) over the person's listed addresses:

- ``model``: the greedy model ranking without exploration (top score, valid before invalid,
  ``contact_id`` tie-break): pi = 1 for that address;
- ``random``: uniform over the listed addresses;
- ``logging``: the logged policy itself (pi = propensity; a sanity check: equals the on-policy mean);
- ``last_success``: the address with the most recent reach in ``features/date=X``
  (``f_c_days_since_reach``), ties and never-reached persons by greedy order.

IPS = mean(w r) with w = pi/p; SNIPS = sum(w r) / sum(w). Confidence intervals are normal
approximations: var(w r)/n for IPS, the delta method for SNIPS. ``support``: the mean, over the
logged persons, of the target's probability on addresses the logging policy could put at rank 1
(propensity > 0); below 1 the estimate values only that part of the target policy.
"""

from __future__ import annotations

import json
import logging
import math
from datetime import date, timedelta

import numpy as np
import pandas as pd

from contactrank.dates import date_range
from contactrank.errors import InputError, NotReady
from contactrank.features.lake import partition_files_of, read_partition, read_table
from contactrank.features.schema import CONVERSION_OUTCOMES, REACH_OUTCOMES
from contactrank.ml.publish import export_dir
from contactrank.ml.score import HOUR_LOG_FILE
from contactrank.settings import Settings

log = logging.getLogger(__name__)

ADDRESS_POLICIES = ("model", "random", "logging", "last_success")
# Hour policies, given the logged rank-1 address: its greedy hour, a uniform less-tried hour, or
# the logged draw itself
HOUR_POLICIES = ("greedy_hour", "less_tried_hour", "logging_hour")
POLICIES = ADDRESS_POLICIES + HOUR_POLICIES


def estimate(reward: np.ndarray, propensity: np.ndarray, target: np.ndarray, z: float = 1.96) -> dict:
    """IPS and SNIPS of a target policy with normal-approximation confidence intervals.

    ``reward`` r_i of the logged action, ``propensity`` p_i = logging probability of it (> 0),
    ``target`` pi_i = probability the evaluated policy takes the same action.
    """
    r = np.asarray(reward, dtype=np.float64)
    p = np.asarray(propensity, dtype=np.float64)
    pi = np.asarray(target, dtype=np.float64)
    n = len(r)
    if n == 0:
        return {
            "n": 0,
            "ips": None,
            "ips_ci": [None, None],
            "snips": None,
            "snips_ci": [None, None],
            "ess": 0.0,
        }
    if np.any(p <= 0) or np.any(p > 1):
        raise ValueError("logged propensities must lie in (0, 1]")
    w = pi / p
    wr = w * r
    ips = float(wr.mean())
    ips_se = float(wr.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")
    sw = float(w.sum())
    if sw > 0:
        snips = float(wr.sum() / sw)
        # Delta method for a ratio of means: var ≈ mean(w² (r - V)²) / (n mean(w)²).
        snips_se = (
            float(math.sqrt(np.mean(w**2 * (r - snips) ** 2) / n) / w.mean()) if n > 1 else float("nan")
        )
    else:
        snips, snips_se = None, float("nan")
    ess = float(sw**2 / np.sum(w**2)) if np.sum(w**2) > 0 else 0.0
    return {
        "n": n,
        "ips": ips,
        "ips_ci": [ips - z * ips_se, ips + z * ips_se],
        "snips": snips,
        "snips_ci": [None, None] if snips is None else [snips - z * snips_se, snips + z * snips_se],
        "ess": ess,
        "on_policy_mean": float(r.mean()),
    }


def target_probability(rows: pd.DataFrame, policy: str) -> pd.Series:
    """pi(row | person) for every listed row of one day's file (rows of all persons)."""
    if policy == "logging":
        return rows["propensity"].astype("float64")
    if policy == "random":
        return 1.0 / rows.groupby("person_id")["contact_id"].transform("size")
    if policy in ("model", "last_success"):
        invalid = rows["_invalid"] if "_invalid" in rows.columns else pd.Series(False, index=rows.index)
        key = rows.assign(_inv=invalid.astype(bool))
        sort_cols, asc = ["person_id", "_inv", "score", "contact_id"], [True, True, False, True]
        if policy == "last_success":
            key["_dsr"] = key["f_c_days_since_reach"].astype("float64").fillna(np.inf)
            sort_cols, asc = (
                ["person_id", "_inv", "_dsr", "score", "contact_id"],
                [True, True, True, False, True],
            )
        top = key.sort_values(sort_cols, ascending=asc, kind="stable").groupby("person_id").head(1).index
        return pd.Series(rows.index.isin(top).astype("float64"), index=rows.index)
    raise InputError(f"unknown policy {policy!r}: expected one of {', '.join(POLICIES)}")


def _outcomes(settings: Settings, day: date, by_hour: bool = False) -> pd.DataFrame:
    """Per (person, address) attempted on ``day`` (and per recorded-clock hour, as ``best_hour``,
    with ``by_hour``): reached (1) or not (0)."""
    keys = ["person_id", "contact_id", *(["best_hour"] if by_hour else [])]
    columns = ["person_id", "contact_id", "outcome", *(["local_hour"] if by_hour else [])]
    table = read_partition(settings, "attempts", day, columns=columns)
    if table is None:
        return pd.DataFrame(columns=[*keys, "reward"])
    df = table.to_pandas()
    if by_hour:
        df = df.dropna(subset=["local_hour"]).assign(best_hour=lambda f: f["local_hour"].astype("int64"))
    good = CONVERSION_OUTCOMES if settings.label == "conversion" else REACH_OUTCOMES
    df["reward"] = df["outcome"].isin(good).astype("float64")
    return df.groupby(keys, as_index=False)["reward"].max()


def _hour_target(log: pd.DataFrame, policy: str) -> np.ndarray:
    explored = log["hour_explore"].to_numpy(dtype=bool)
    if policy == "greedy_hour":
        return (~explored).astype("float64")
    if policy == "less_tried_hour":  # uniform over the draw's less-tried hours
        k = np.maximum(log["less_tried_hours"].to_numpy(dtype="float64"), 1.0)
        return np.where(explored, 1.0 / k, 0.0)
    return log["hour_propensity"].to_numpy(dtype="float64")


def evaluate_hour_policy(settings: Settings, start: date, end: date, policy: str) -> dict:
    """Estimate the reach rate of an hour policy, given the logged rank-1 address, over [start, end].

    Log: ``scores/date=X/_hour_exploration.parquet``, the rank-1 rows that had a less-tried hour
    to draw (the others had one hour choice only and say nothing about hours), with the logged
    hour's probability given the address. Reward: the attempts of X+1 on that address at that hour
    of the recorded clock; a row not attempted at its hour gives no feedback.
    """
    logs, days = [], 0
    for x in date_range(start, end):
        paths = partition_files_of(settings, "scores", x, HOUR_LOG_FILE)  # one per shard
        if not paths:
            continue
        log = pd.concat([read_table(path).to_pandas() for path in paths], ignore_index=True)
        if "less_tried_hours" not in log.columns:  # a log of an earlier version: k unknown
            if policy == "less_tried_hour":
                continue
            log["less_tried_hours"] = 0
        outcomes = _outcomes(settings, x + timedelta(days=1), by_hour=True)
        joined = log.merge(outcomes, on=["person_id", "contact_id", "best_hour"])
        joined["_pi"] = _hour_target(joined, policy)
        logs.append(joined)
        days += 1
    if not logs:
        raise NotReady(f"no hour-exploration log with outcomes at the logged hour between {start} and {end}")
    log_df = pd.concat(logs, ignore_index=True)
    propensity = log_df["hour_propensity"].to_numpy()
    out = estimate(log_df["reward"].to_numpy(), propensity, log_df["_pi"].to_numpy())
    # a less-tried hour is only ever logged where hours were explored (a share above 0)
    out["support"] = float((propensity < 1).mean()) if policy == "less_tried_hour" else 1.0
    return {"policy": policy, "start": start.isoformat(), "end": end.isoformat(), "days": days, **out}


def evaluate_policy(settings: Settings, start: date, end: date, policy: str = "model") -> dict:
    """Estimate the value (reach rate of the rank-1 attempt) of ``policy`` over [start, end]."""
    if policy not in POLICIES:
        raise InputError(f"unknown policy {policy!r}: expected one of {', '.join(POLICIES)}")
    if policy in HOUR_POLICIES:
        return evaluate_hour_policy(settings, start, end, policy)
    logs = []
    days = 0
    for x in date_range(start, end):
        folder = export_dir(settings, x)
        if not (folder / "_SUCCESS").is_file():
            continue
        manifest = json.loads((folder / "_manifest.json").read_text())
        if manifest.get("pseudonymised"):
            raise InputError(f"{folder} holds pseudonymised ids: they cannot be joined to the attempts")
        rows = read_table(folder / "priority.parquet").to_pandas()
        if rows.empty:
            continue
        internal = read_partition(settings, "scores", x, columns=["person_id", "contact_id", "_invalid"])
        if internal is not None:  # valid-before-invalid is part of the greedy order
            rows = rows.merge(internal.to_pandas(), on=["person_id", "contact_id"], how="left")
            rows["_invalid"] = rows["_invalid"].fillna(False).astype(bool)
        if policy == "last_success":
            feats = read_partition(
                settings, "features", x, columns=["person_id", "contact_id", "f_c_days_since_reach"]
            )
            if feats is None:
                raise NotReady(f"policy last_success needs features/date={x}")
            rows = rows.merge(feats.to_pandas(), on=["person_id", "contact_id"], how="left")
        rows["_pi"] = target_probability(rows, policy).to_numpy()
        # the target's mass on addresses the logging policy could have put at rank 1
        supported = rows["_pi"] * (rows["propensity"] > 0)
        rows["_support"] = supported.groupby(rows["person_id"]).transform("sum")
        logged = rows[rows["rank"] == 1]
        outcomes = _outcomes(settings, x + timedelta(days=1))
        joined = logged.merge(outcomes, on=["person_id", "contact_id"], how="inner")
        joined["date"] = x.isoformat()
        logs.append(joined[["date", "person_id", "contact_id", "propensity", "_pi", "_support", "reward"]])
        days += 1
    if not logs:
        raise NotReady(f"no published priority file with outcomes between {start} and {end}")
    log_df = pd.concat(logs, ignore_index=True)
    log_df = log_df[log_df["propensity"] > 0]
    out = estimate(log_df["reward"].to_numpy(), log_df["propensity"].to_numpy(), log_df["_pi"].to_numpy())
    # IPS values only what the log supports: a target that ranks first an address the logging
    # policy never would (propensity 0) is not valued there, so say how much of it that is
    out["support"] = float(log_df["_support"].mean()) if len(log_df) else 0.0
    return {"policy": policy, "start": start.isoformat(), "end": end.isoformat(), "days": days, **out}
