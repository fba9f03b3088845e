"""A base-rate jump: the gate with evidence against the previous rule, on the same challengers.

    .venv/bin/python bench/gate_jump.py [--after 21] [--home DIR] [--notes FILE]

The synthetic training days of tests/helpers/synth_training (1,500 attempts a day, reach rate
about 25%) get a higher intercept from day 40 on (-1.6 -> -0.6: the reach rate roughly doubles,
and the history features move with it). A model is trained every day (``train_window_days=30``)
and gated by ``ml.registry.gate``. Beside it, the rule the gate replaced decides on the same
challengers (:func:`legacy_decide`); each rule keeps its own champion. Each day after the jump,
before that day's training, both champions score the day's attempts: the forward log loss and
AUC of what each rule would have served.

The previous rule (kept here only to measure it): the challenger's single test day decides;
AUC >= ``gate_auc_floor``, ECE <= ``gate_ece_cap`` (a fixed cap), AUC not below the champion's on
that day by more than ``gate_auc_margin``, no channel slice losing more than ``gate_slice_drop``;
and the drift guard of that time blocked promotion when any watched feature's PSI between the
last week of the training window and the test day exceeded ``drift_psi_threshold``, or the test
day's label rate was more than ``drift_label_rate_ratio`` times off the window's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic training days (helpers.synth_training)

START = date(2026, 3, 1)
JUMP_DAY = 39  # the 40th day
BEFORE, AFTER = -1.6, -0.6  # the intercept of the reach logit before and from the jump
LEGACY_REFERENCE_DAYS = 7  # the drift guard then compared the test day with the window's last week


def legacy_drift(settings, window, test_df: pd.DataFrame, label: str) -> list[str]:
    """The reasons the drift guard of the previous rule blocked a challenger ([]: not blocked)."""
    from contactrank.ml.dataset import labelled, read_day
    from contactrank.ml.drift import CALENDAR_DRIFTING, DRIFT_SKIP, psi

    days = (window.train_days + window.valid_days)[-LEGACY_REFERENCE_DAYS:]
    if len(window.train_days) + len(window.valid_days) < settings.drift_min_history_days:
        return []  # a young history was measured, not enforced
    ref = pd.concat([labelled(read_day(settings, x), label) for x in days], ignore_index=True)
    watched = [
        f
        for f in window.features
        if f not in DRIFT_SKIP and not f.startswith("f_g_") and not any(t in f for t in CALENDAR_DRIFTING)
    ]
    reasons = [
        f"PSI {f} = {v:.3f}"
        for f in watched
        if f in ref and f in test_df and (v := psi(ref[f], test_df[f])) > settings.drift_psi_threshold
    ]
    ratio = test_df[label].mean() / ref[label].mean() if ref[label].mean() > 0 else float("nan")
    limit = settings.drift_label_rate_ratio
    if np.isfinite(ratio) and not 1 / limit <= ratio <= limit:
        reasons.append(f"label rate ratio {ratio:.2f}")
    return reasons


def legacy_decide(
    settings, y, p_challenger, p_champion, channels, drift: list[str]
) -> tuple[bool, list[str]]:
    """The previous rule on one test day: (promote?, the failed checks)."""
    from contactrank.ml import evaluate as ev

    ch = ev.binary_metrics(y, p_challenger)
    failed = []
    if not (np.isfinite(ch["auc"]) and ch["auc"] >= settings.gate_auc_floor):
        failed.append(f"auc {ch['auc']:.4f} below the floor")
    if not (np.isfinite(ch["ece"]) and ch["ece"] <= settings.gate_ece_cap):
        failed.append(f"ece {ch['ece']:.4f} above the cap {settings.gate_ece_cap}")
    if p_champion is not None:
        cp = ev.binary_metrics(y, p_champion)
        if not ch["auc"] >= cp["auc"] - settings.gate_auc_margin:
            failed.append(f"auc {ch['auc']:.4f} vs champion {cp['auc']:.4f}")
        a, b = ev.channel_auc(y, p_challenger, channels), ev.channel_auc(y, p_champion, channels)
        failed += [f"slice {c}" for c in sorted(set(a) & set(b)) if a[c] < b[c] - settings.gate_slice_drop]
        failed += [f"drift: {r}" for r in drift]
    return not failed, failed


class Chains:
    """The champion each rule keeps, scored on the days after the jump."""

    def __init__(self, settings) -> None:
        self.settings = settings
        self.models: dict[int, Any] = {}
        self.champion = {"evidence": None, "legacy": None}
        self.stale: int | None = None  # the champion of the day before the jump
        self.scored: list[pd.DataFrame] = []

    def model(self, version: int):
        from contactrank.ml.registry import load_version

        if version not in self.models:
            self.models[version] = load_version(self.settings, version)
        return self.models[version]

    def p(self, version: int, df: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.model(version).predict_proba(df, num_threads=self.settings.num_threads))

    def score_day(self, d: date, df: pd.DataFrame, label: str) -> None:
        out = pd.DataFrame({"date": d, "y": df[label].astype(int).to_numpy()})
        for rule, version in self.champion.items():
            out[rule] = self.p(version, df)
            out[f"{rule}_version"] = version
        self.scored.append(out)


def run(home: Path, after: int, rows: int = 1500) -> dict[str, Any]:
    """Train and gate every day from the day before the jump to ``after`` days past it."""
    from helpers.synth_training import write_days

    from contactrank.ml import registry
    from contactrank.ml.dataset import labelled, plan_window, read_day
    from contactrank.ml.train import train
    from contactrank.ml.training_sample import label_column
    from contactrank.settings import load_settings

    t0 = time.perf_counter()
    s = load_settings(home=home, drift_min_history_days=5, train_window_days=30, train_plots=False)
    jump = START + timedelta(days=JUMP_DAY)
    last = jump + timedelta(days=after)
    jumped = {jump + timedelta(i): AFTER for i in range(after + 1)}
    write_days(s, last, (last - START).days + 1, rows=rows, intercepts=jumped)
    label = label_column(s)
    chains = Chains(s)
    first = train(s, jump - timedelta(days=1))
    if registry.gate(s, jump - timedelta(days=1))["status"] != "promoted":  # a thin day may fail the floors
        registry.promote(s, first["version"])  # the world starts with a champion fitted before the jump
    chains.champion = {"evidence": first["version"], "legacy": first["version"]}
    chains.stale = first["version"]
    days = []
    for i in range(0, after + 1):
        d = jump + timedelta(days=i)
        df = labelled(read_day(s, d), label)
        chains.score_day(d, df, label)  # forward: both champions were fitted before d
        out = train(s, d)
        if out["status"] != "trained":
            raise RuntimeError(f"{d}: {out}")
        g = registry.gate(s, d)
        chains.champion["evidence"] = g["champion"]
        window = plan_window(s, d)
        promote, failed = legacy_decide(
            s,
            df[label].astype(int).to_numpy(),
            chains.p(out["version"], df),
            chains.p(chains.champion["legacy"], df),
            df["channel"].astype(str).to_numpy(),
            legacy_drift(s, window, df, label),
        )
        if promote:
            chains.champion["legacy"] = out["version"]
        days.append(
            {
                "date": d.isoformat(),
                "day_after_jump": i,
                "challenger": out["version"],
                "evidence_gate": g["status"],
                "evidence_first_reason": next((r for r in g["reasons"] if not r.startswith("ok:")), ""),
                "legacy_gate": "promoted" if promote else "rejected",
                "legacy_failed": failed[:4],
            }
        )
    return {"rows_per_day": rows, **summary(chains, days, after, time.perf_counter() - t0)}


def summary(chains: Chains, days: list[dict[str, Any]], after: int, seconds: float) -> dict[str, Any]:
    from contactrank.ml import evaluate as ev

    ev_df = pd.concat(chains.scored, ignore_index=True)
    served = {}
    for rule in ("evidence", "legacy"):
        m = ev.binary_metrics(ev_df["y"].to_numpy(), ev_df[rule].to_numpy())
        first = next((x["day_after_jump"] for x in days if x[f"{rule}_gate"] == "promoted"), None)
        stale = int((ev_df[f"{rule}_version"] == chains.stale).sum())
        served[rule] = {
            "first_promotion_day_after_jump": first,
            "promotions": sum(x[f"{rule}_gate"] == "promoted" for x in days),
            "forward_log_loss": round(m["log_loss"], 4),
            "forward_auc": round(m["auc"], 4),
            "forward_ece": round(m["ece"], 4),
            "rows_served_by_the_pre_jump_champion": stale,
        }
    return {
        "bench": "gate_jump",
        "days_after_jump": after,
        "rows": int(len(ev_df)),
        "base_rate_after": round(float(ev_df["y"].mean()), 4),
        "served": served,
        "days": days,
        "seconds": round(seconds, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--after", type=int, default=21, help="days after the jump to train and gate")
    p.add_argument("--rows", type=int, default=1500, help="attempts a day")
    p.add_argument("--home", help="CONTACTRANK_HOME (default: a temp dir, removed afterwards)")
    p.add_argument("--notes", default="", help="write the JSON here too")
    args = p.parse_args(argv)
    warnings.filterwarnings("ignore")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    with tempfile.TemporaryDirectory(prefix="contactrank-jump-") as tmp:
        result = run(Path(args.home or tmp), args.after, args.rows)
    text = json.dumps(result, sort_keys=True, default=str)
    if args.notes:
        Path(args.notes).write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
