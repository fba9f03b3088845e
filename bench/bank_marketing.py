"""Real data: the UCI Bank Marketing calls through the daily pipeline, against published results.

    .venv/bin/python bench/bank_marketing.py [--data bank-full.csv] [--limit N] [--home DIR] [--notes FILE]
    make real-data

1. ``contactrank import bank-marketing`` (features.importers) writes the landing files into a
   temporary ``CONTACTRANK_HOME`` (or ``--home``).
2. For every calendar day from the day before the first call to the last call, the pipeline's own
   steps run through ``contactrank.pipeline.run_step``: ingest, features, train (label
   ``conversion``, ``retrain_every_days=7``, ``train_plots=false``, ``duckdb_threads=1``,
   ``train_halflife_days=90`` (``--halflife``; 0 for the default of equal weights), every other
   setting at its default) and gate.
   Score and publish run on the last day, to show that a priority file comes out; the features
   step writes its per-candidate rows (scoring's input) on that day only (``rows=False`` before).
3. Forward evaluation: before the models are retrained on day D, the attempts of D (their
   training rows: the features of the end of D-1 plus the call's calendar context) are scored by
    - ``champion``: the model the pipeline serves at that moment (what the gate let through),
    - ``latest``: the latest trained challenger (gated or not),
    - ``logreg``: a scikit-learn logistic regression fitted on exactly the same days as that
      challenger (its train + validation days) and the same f_* columns (numbers: median-imputed
      with missing flags and standardised; strings: one-hot).
   Every scored row was therefore predicted by a model that saw only earlier days.
4. Metrics on the pooled forward rows: ROC AUC, lift at 10% (positive rate in the top 10% of
   scores over the base rate), recall at the top half (share of subscribers in the top 50%), and
   the mean within-day AUC (weighted by rows; it ignores how well a model tracks the drifting
   base rate: 5% of calls subscribed in 2008, 17% in 2009, 52% in 2010).

The same figures over 2009-01-01..2010-11-30 only (``period``: the served model, the latest
challenger and the logistic regression on the rows all three scored), with the gate's decisions
in that period (``gate_in_period``: promoted / rejected / held for lack of evidence).

Prints ONE JSON line (``auc``, ``auc_logreg``, ``lift10``, ``days``, ``rows`` and more) and writes
the figures to ``docs/bench-notes/bank_marketing.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
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

from contactrank.dates import date_range  # noqa: E402
from contactrank.features.importers.bank_marketing import import_bank_marketing  # noqa: E402
from contactrank.settings import Settings, load_settings, runtime_env  # noqa: E402

# The UCI data set is not shipped with the project: pass --data, set CONTACTRANK_DATASETS, or keep
# the workplace copy beside the repo (../shared/datasets/, see README "Running it on your own call logs").
DATASETS = Path(os.environ.get("CONTACTRANK_DATASETS") or ROOT.parent / "shared" / "datasets")
DEFAULT_DATA = DATASETS / "bank_marketing" / "bank-full.csv"
NOTES = ROOT / "docs" / "bench-notes" / "bank_marketing.md"
LABEL = "label_conversion"
# the calmer, thinner second half of the data: the figures the targets are stated on
PERIOD = (date(2009, 1, 1), date(2010, 11, 30))
# The subscription rate moves from 5 % to 17 % to 52 % of calls: the recency weights the pipeline
# offers for a drifting base rate, halving over one training window (train_window_days' default).
HALFLIFE_DAYS = 90.0

# PROVENANCE.md §4: published figures (without call duration) and our own reference runs.
ANCHORS = {
    "moro2014_nn_auc": 0.80,  # private richer version, rolling window after July 2012, no duration
    "moro2014_top_half_recall": 0.79,  # "top half of clients reaches 79% of subscribers"
    "lgbm_random_cv_no_duration": 0.805,  # PROVENANCE reference run, bank-full, stratified 5-fold
    "logreg_random_cv_no_duration": 0.765,
    "lgbm_time_split_no_duration": 0.654,  # first 80% of rows -> last 20%
    "logreg_time_split_no_duration": 0.683,
    "amlb_with_duration_best": 0.941,  # OpenML 1461 with duration (leaky), AutoGluon, 10-fold
}

log = logging.getLogger("bench.bank_marketing")


# --- metrics ------------------------------------------------------------------------------------


def auc(y: np.ndarray, p: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, p)) if len(np.unique(y)) == 2 else float("nan")


def lift_at(y: np.ndarray, p: np.ndarray, share: float) -> float:
    """Positive rate among the top ``share`` of scores over the base rate (ties broken by order)."""
    k = max(1, int(round(share * len(y))))
    top = np.argsort(-p, kind="stable")[:k]
    return float(y[top].mean() / y.mean()) if y.mean() > 0 else float("nan")


def recall_at(y: np.ndarray, p: np.ndarray, share: float) -> float:
    k = max(1, int(round(share * len(y))))
    top = np.argsort(-p, kind="stable")[:k]
    return float(y[top].sum() / y.sum()) if y.sum() > 0 else float("nan")


def within_day_auc(df: pd.DataFrame, col: str) -> float:
    """Row-weighted mean of the AUC of each day that has both classes."""
    num = den = 0.0
    for _, g in df.groupby("date"):
        y = g[LABEL].to_numpy()
        if 0 < y.sum() < len(y):
            num += auc(y, g[col].to_numpy()) * len(g)
            den += len(g)
    return num / den if den else float("nan")


def figures(df: pd.DataFrame, col: str) -> dict[str, float]:
    y = df[LABEL].to_numpy().astype(int)
    p = df[col].to_numpy().astype(float)
    return {
        "rows": int(len(df)),
        "positives": int(y.sum()),
        "auc": round(auc(y, p), 4),
        "lift10": round(lift_at(y, p, 0.10), 3),
        "recall50": round(recall_at(y, p, 0.50), 4),
        "auc_within_day": round(within_day_auc(df, col), 4),
    }


# --- the logistic-regression comparator -------------------------------------------------------


def fit_logreg(train: pd.DataFrame, features: list[str]):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    cats = [c for c in features if not pd.api.types.is_numeric_dtype(train[c])]
    nums = [c for c in features if c not in cats]
    pre = ColumnTransformer(
        [
            (
                "num",
                make_pipeline(
                    SimpleImputer(strategy="median", add_indicator=True, keep_empty_features=True),
                    StandardScaler(),
                ),
                nums,
            ),
            (
                "cat",
                make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="missing"),
                    OneHotEncoder(handle_unknown="ignore"),
                ),
                cats,
            ),
        ]
    )
    model = make_pipeline(pre, LogisticRegression(max_iter=2000, C=1.0))
    X = _lr_frame(train, nums, cats)
    with one_blas_thread():
        model.fit(X, train[LABEL].astype(int).to_numpy())
    return model, nums, cats


def logreg_proba(logreg, df: pd.DataFrame) -> np.ndarray:
    model, nums, cats = logreg
    with one_blas_thread():
        return model.predict_proba(_lr_frame(df, nums, cats))[:, 1]


def one_blas_thread():
    """A few thousand rows by a few hundred columns: a second BLAS thread only waits on the first
    (it multiplied a fit's CPU time, for the same coefficients but for the last bits)."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1, user_api="blas")


def _lr_frame(df: pd.DataFrame, nums: list[str], cats: list[str]) -> pd.DataFrame:
    out = df[nums].apply(pd.to_numeric, errors="coerce").astype("float64")
    for c in cats:
        out[c] = df[c].astype(object).where(df[c].notna(), "missing").astype(str)
    return out


# --- the run ------------------------------------------------------------------------------------


class Models:
    """The champion and latest challenger, loaded once per registered version."""

    def __init__(self, settings: Settings) -> None:
        from contactrank.ml.tracking import client

        self.settings = settings
        self.client = client(settings)
        self.cache: dict[int, Any] = {}

    def version(self, alias: str) -> int | None:
        from mlflow.exceptions import MlflowException

        try:
            return int(self.client.get_model_version_by_alias(self.settings.model_name, alias).version)
        except MlflowException:
            return None

    def predict(self, version: int, df: pd.DataFrame) -> np.ndarray:
        from contactrank.ml.registry import load_version

        if version not in self.cache:
            if len(self.cache) >= 3:  # champion and challenger, plus one being replaced
                del self.cache[min(self.cache)]
            self.cache[version] = load_version(self.settings, version)
        return np.asarray(
            self.cache[version].predict_proba(df, num_threads=self.settings.num_threads), dtype="float64"
        )


class Pending:
    """Days waiting to be scored forward by the same models: champion, latest challenger and
    logistic regression change only when a training runs, so the days between two trainings are
    scored in one call per model (row by row the same predictions as day by day; a call per day
    cost more than its few dozen rows)."""

    def __init__(self) -> None:
        self.days: list[tuple[date, pd.DataFrame]] = []
        self.versions: tuple[int | None, int | None] = (None, None)

    def score(self, models: Models, logreg) -> list[pd.DataFrame]:
        out: list[pd.DataFrame] = []
        champ, latest = self.versions
        for days in _same_columns(self.days):
            df = pd.concat([x for _, x in days], ignore_index=True) if len(days) > 1 else days[0][1]
            rows = df[["attempt_id", "date", LABEL]].copy()
            rows["date"] = np.repeat(np.array([d for d, _ in days], dtype=object), [len(x) for _, x in days])
            rows["p_champion"] = models.predict(champ, df) if champ else np.nan
            rows["p_latest"] = models.predict(latest, df) if latest else np.nan
            rows["champion_version"] = champ
            rows["p_logreg"] = logreg_proba(logreg, df) if logreg is not None else np.nan
            out.append(rows)
        self.days = []
        return out


def _same_columns(days: list[tuple[date, pd.DataFrame]]) -> list[list[tuple[date, pd.DataFrame]]]:
    """Runs of consecutive days whose frames have the same columns and types (concatenated,
    they give each day's own values)."""
    runs: list[list[tuple[date, pd.DataFrame]]] = []
    for d, df in days:
        if runs and runs[-1][-1][1].dtypes.equals(df.dtypes):
            runs[-1].append((d, df))
        else:
            runs.append([(d, df)])
    return runs


def run(args: argparse.Namespace) -> dict[str, Any]:
    from contactrank.features.build import build_features
    from contactrank.features.lake import partition_dir
    from contactrank.lock import home_lock
    from contactrank.ml.dataset import plan_window
    from contactrank.pipeline import run_step

    t0, c0 = time.perf_counter(), time.process_time()
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="contactrank-bank-"))
    if args.home and args.fresh and home.exists():
        shutil.rmtree(home)
    # a replay of 900+ days: the per-training PNGs would cost more than the fits (train_plots), and
    # on tables of a few thousand rows DuckDB's second thread costs more CPU than it saves
    settings = load_settings(
        home=home,
        label="conversion",
        retrain_every_days=7,
        train_plots=False,
        duckdb_threads=1,
        train_halflife_days=args.halflife,
    )
    landing = home / "landing"
    imported = import_bank_marketing(Path(args.data), landing, limit=args.limit)
    start = date.fromisoformat(imported["first_date"]) - timedelta(days=1)
    end = date.fromisoformat(imported["last_date"])
    log.info("imported %s rows, %s .. %s into %s", imported["rows"], start, end, home)

    models = Models(settings)
    day_rows: dict[date, pd.DataFrame] = {}
    scored: list[pd.DataFrame] = []
    pending = Pending()
    logreg = None
    trainings: list[dict[str, Any]] = []
    gates = {"promoted": 0, "rejected": 0, "held": 0}
    gate_reasons: dict[str, int] = {}
    decisions: list[dict[str, Any]] = []
    timing = {"ingest": 0.0, "features": 0.0, "train": 0.0, "gate": 0.0, "evaluate": 0.0}
    cpu = dict.fromkeys(timing, 0.0)  # CPU seconds of the process (all threads): the load-independent figure
    attrs: list[str] = []
    n_days = (end - start).days + 1
    for i, d in enumerate(date_range(start, end)):
        t, c = time.perf_counter(), time.process_time()
        run_step("ingest", settings, d, landing)
        timing["ingest"] += time.perf_counter() - t
        cpu["ingest"] += time.process_time() - c
        t, c = time.perf_counter(), time.process_time()
        with home_lock(settings, f"features {d.isoformat()}"):
            # the feature rows (scoring's input) only on the day that is scored
            build_features(settings, d, rows=d == end)
        timing["features"] += time.perf_counter() - t
        cpu["features"] += time.process_time() - c

        t, c = time.perf_counter(), time.process_time()
        path = partition_dir(settings, "training", d) / "part-0.parquet"
        df = pd.read_parquet(path) if path.is_file() else pd.DataFrame()
        if len(df):
            df = df[df[LABEL].notna()].reset_index(drop=True)
            day_rows[d] = df
            attrs = attrs or sorted(c for c in df.columns if c.startswith("f_attr_"))
            # which models would serve d: the ones registered before its training step
            versions = (models.version("champion"), models.version("challenger"))
            if pending.versions != versions:
                scored += pending.score(models, logreg)
                pending.versions = versions
            pending.days.append((d, df))
        timing["evaluate"] += time.perf_counter() - t
        cpu["evaluate"] += time.process_time() - c

        t, c = time.perf_counter(), time.process_time()
        res = run_step("train", settings, d, landing)
        timing["train"] += time.perf_counter() - t
        cpu["train"] += time.process_time() - c
        if res.get("status") == "trained":
            t, c = time.perf_counter(), time.process_time()
            scored += pending.score(models, logreg)  # with the regression fitted before d
            window = plan_window(settings, d)
            fit_days = window.train_days + window.valid_days
            train_df = pd.concat([day_rows[x] for x in fit_days if x in day_rows], ignore_index=True)
            features = [c for c in window.features if c in train_df.columns]
            logreg = fit_logreg(train_df, features)
            timing["evaluate"] += time.perf_counter() - t
            cpu["evaluate"] += time.process_time() - c
            trainings.append({"date": d.isoformat(), "rows": len(train_df), "days": len(fit_days)})
            t, c = time.perf_counter(), time.process_time()
            g = run_step("gate", settings, d, landing)
            timing["gate"] += time.perf_counter() - t
            cpu["gate"] += time.process_time() - c
            if g.get("decision") in gates:
                gates[g["decision"]] += 1
                decisions.append({"date": d.isoformat(), "decision": g["decision"]})
                for r in g.get("reasons", []):
                    if r.startswith(("fail:", "hold:")):
                        gate_reasons[_rule(r)] = gate_reasons.get(_rule(r), 0) + 1
        for x in [x for x in day_rows if x < d - timedelta(days=settings.train_window_days + 1)]:
            del day_rows[x]  # outside every future window
        if (i + 1) % 30 == 0 or d == end:
            log.info(
                "%s (%d/%d days) %.0fs, %d trainings, gate %s",
                d,
                i + 1,
                n_days,
                time.perf_counter() - t0,
                len(trainings),
                gates,
            )

    t, c = time.perf_counter(), time.process_time()
    scored += pending.score(models, logreg)
    timing["evaluate"] += time.perf_counter() - t
    cpu["evaluate"] += time.process_time() - c

    publish: dict[str, Any] = {}
    for step in ("score", "publish"):
        try:
            t = time.perf_counter()
            res = run_step(step, settings, end, landing)
            publish[step] = {
                "seconds": round(time.perf_counter() - t, 1),
                **{k: res.get(k) for k in ("rows", "status", "model_version", "path") if k in res},
            }
        except Exception as exc:  # noqa: BLE001 - reported, the evaluation stands on its own
            publish[step] = {"error": f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"}
            break

    ev = pd.concat(scored, ignore_index=True)
    meta = {"trainings": len(trainings), "gate": gates, "gate_failures": gate_reasons, "attributes": attrs}
    meta |= {"publish_last_day": publish, "timing": {k: round(v, 1) for k, v in timing.items()}}
    meta["cpu"] = {k: round(v, 1) for k, v in cpu.items()}
    meta["cpu_seconds"] = round(time.process_time() - c0, 1)
    meta["load_average"] = [round(x, 2) for x in os.getloadavg()]
    meta["gate_in_period"] = _gate_counts(decisions, PERIOD)
    meta["seconds_per_day"] = round((time.perf_counter() - t0) / max(n_days, 1), 3)
    return _result(args, settings, imported, ev, meta, home, t0)


def _result(
    args: argparse.Namespace,
    settings: Settings,
    imported: dict[str, Any],
    ev: pd.DataFrame,
    meta: dict[str, Any],
    home: Path,
    t0: float,
) -> dict[str, Any]:
    both = ev[ev["p_latest"].notna() & ev["p_logreg"].notna()]  # the same rows for the LR comparison
    served = ev[ev["p_champion"].notna()]
    f_latest = figures(both, "p_latest")
    f_logreg = figures(both, "p_logreg")
    f_champ = figures(served, "p_champion") if len(served) else {}
    f_champ_same = figures(served[served["p_logreg"].notna()], "p_logreg") if len(served) else {}
    result = {
        "bench": "bank_marketing",
        "data": Path(args.data).name,
        "variant": imported["variant"],
        "rows": imported["rows"],
        "days": imported["days"],
        "call_days": imported["call_days"],
        "first_date": imported["first_date"],
        "last_date": imported["last_date"],
        "label": "converted",
        "retrain_every_days": settings.retrain_every_days,
        "train_window_days": settings.train_window_days,
        "train_halflife_days": settings.train_halflife_days,
        # headline: the model the pipeline serves (champion), on every row it could score
        "auc": f_champ.get("auc"),
        "lift10": f_champ.get("lift10"),
        "recall50": f_champ.get("recall50"),
        "auc_within_day": f_champ.get("auc_within_day"),
        "scored_rows": f_champ.get("rows", 0),
        "first_scored": str(served["date"].min()) if len(served) else None,
        "auc_logreg": f_logreg["auc"],
        "lift10_logreg": f_logreg["lift10"],
        "recall50_logreg": f_logreg["recall50"],
        "auc_within_day_logreg": f_logreg["auc_within_day"],
        "auc_latest": f_latest["auc"],
        "lift10_latest": f_latest["lift10"],
        "recall50_latest": f_latest["recall50"],
        "auc_within_day_latest": f_latest["auc_within_day"],
        "compared_rows": f_latest["rows"],
        "logreg_on_champion_rows": f_champ_same,
        "period": period_figures(ev, PERIOD),
        # the target: at least half of the weekly challengers promoted or held for lack of evidence
        "promoted_or_held_share": _not_rejected(meta["gate"]),
        "promoted_or_held_share_in_period": _not_rejected(meta["gate_in_period"]),
        **meta,
        "anchors": ANCHORS,
        "seconds": round(time.perf_counter() - t0, 1),
        "home": str(home),
    }
    if args.keep_predictions:
        ev.to_parquet(home / "forward_predictions.parquet")
    if not args.home and not args.keep:
        shutil.rmtree(home, ignore_errors=True)
        result["home"] = None
    return result


def _rule(reason: str) -> str:
    """The gate rule a ``fail: ...`` / ``hold: ...`` reason of ml.gate.decide is about."""
    if reason.startswith("hold:"):
        if "vs floor" in reason:
            return "hold_floor"
        return "hold_interval" if "interval straddles" in reason else "hold_evidence"
    if reason.startswith("fail: slice"):
        return "slice_drop"
    if reason.startswith("fail: drift"):
        return "drift"
    if "floor" in reason:
        return "auc_floor"
    for name in ("log loss", "brier", "ece"):
        if reason.startswith(f"fail: {name}"):
            return name.replace(" ", "_")
    if "champion" in reason:
        return "auc_vs_champion"
    return reason


def _not_rejected(counts: dict[str, int]) -> float | None:
    decided = sum(counts.values())
    return round((counts.get("promoted", 0) + counts.get("held", 0)) / decided, 3) if decided else None


def _gate_counts(decisions: list[dict[str, Any]], period: tuple[date, date]) -> dict[str, int]:
    """Gate decisions taken inside ``period``, by decision."""
    out = {"promoted": 0, "rejected": 0, "held": 0}
    for x in decisions:
        if period[0] <= date.fromisoformat(x["date"]) <= period[1]:
            out[x["decision"]] = out.get(x["decision"], 0) + 1
    return out


def period_figures(ev: pd.DataFrame, period: tuple[date, date]) -> dict[str, Any]:
    """Pooled and within-day figures of the served model, the latest challenger and the logistic
    regression on the rows of ``period`` that all three scored."""
    dates = pd.to_datetime(ev["date"]).dt.date
    rows = ev[(dates >= period[0]) & (dates <= period[1])]
    rows = rows[rows["p_champion"].notna() & rows["p_latest"].notna() & rows["p_logreg"].notna()]
    if not len(rows):
        return {}
    return {
        "from": period[0].isoformat(),
        "to": period[1].isoformat(),
        "champion": figures(rows, "p_champion"),
        "latest": figures(rows, "p_latest"),
        "logreg": figures(rows, "p_logreg"),
    }


def replay(args: argparse.Namespace) -> dict[str, Any]:
    """The forward evaluation of an existing home (``--replay``), rebuilt from its lake and registry.

    Which model was the champion (and the latest challenger) before each day is read from the
    registry's tags (training date, gate date and decision), so the figures are those of the
    online run, for every day whose pipeline steps completed (a run still in progress: up to the
    day before its last training partition).
    """
    from contactrank.features.lake import partition_dates, partition_dir
    from contactrank.ml.dataset import plan_window
    from contactrank.ml.registry import TAG_GATE_DATE, TAG_REASON
    from contactrank.ml.train_logging import TAG_DATE, TAG_DECISION

    t0 = time.perf_counter()
    home = Path(args.home)
    settings = load_settings(
        home=home, label="conversion", retrain_every_days=7, train_halflife_days=args.halflife
    )
    with tempfile.TemporaryDirectory() as tmp:
        imported = import_bank_marketing(Path(args.data), Path(tmp), limit=args.limit)
    days = partition_dates(settings, "training")
    if not days:
        raise SystemExit(f"{home}: no training partitions to replay")
    upto = days[-1] if args.complete else days[-1] - timedelta(days=1)
    days = [x for x in days if x <= upto]
    models = Models(settings)
    versions = []
    for mv in models.client.search_model_versions(f"name='{settings.model_name}'"):
        t = mv.tags or {}
        gated = t.get(TAG_GATE_DATE)
        versions.append(
            (int(mv.version), date.fromisoformat(t[TAG_DATE]), t.get(TAG_DECISION),
             date.fromisoformat(gated) if gated else None)
        )  # fmt: skip
    versions.sort()
    versions = [v for v in versions if v[1] < upto]
    gates = {"promoted": 0, "rejected": 0, "held": 0}
    for _, _, decision, _ in versions:
        if decision in gates:
            gates[decision] += 1
    failures: dict[str, int] = {}
    for mv in models.client.search_model_versions(f"name='{settings.model_name}'"):
        if date.fromisoformat((mv.tags or {})[TAG_DATE]) < upto:
            for k, r in (mv.tags or {}).items():
                if k.startswith(TAG_REASON) and r.startswith(("fail:", "hold:")):
                    failures[_rule(r)] = failures.get(_rule(r), 0) + 1
    logregs: dict[int, Any] = {}
    scored, attrs = [], []
    for d in days:
        df = pd.read_parquet(partition_dir(settings, "training", d) / "part-0.parquet")
        df = df[df[LABEL].notna()].reset_index(drop=True)
        if not len(df):
            continue
        attrs = attrs or sorted(c for c in df.columns if c.startswith("f_attr_"))
        champ = max(
            (v for v, _, dec, g in versions if dec == "promoted" and g is not None and g < d), default=None
        )
        latest = max((v for v, t, _, _ in versions if t < d), default=None)
        out = df[["attempt_id", LABEL]].copy()
        out["date"] = d
        out["p_champion"] = models.predict(champ, df) if champ else np.nan
        out["p_latest"] = models.predict(latest, df) if latest else np.nan
        out["champion_version"] = champ
        out["p_logreg"] = np.nan
        if latest:
            if latest not in logregs:
                trained = next(t for v, t, _, _ in versions if v == latest)
                window = plan_window(settings, trained)
                fit_days = window.train_days + window.valid_days
                train_df = pd.concat(
                    [
                        pd.read_parquet(partition_dir(settings, "training", x) / "part-0.parquet")
                        for x in fit_days
                    ],
                    ignore_index=True,
                )
                train_df = train_df[train_df[LABEL].notna()]
                logregs = {
                    latest: fit_logreg(train_df, [c for c in window.features if c in train_df.columns])
                }
            out["p_logreg"] = logreg_proba(logregs[latest], df)
        scored.append(out)
    ev = pd.concat(scored, ignore_index=True)
    meta = {"trainings": len(versions), "gate": gates, "gate_failures": failures, "attributes": attrs}
    meta |= {"publish_last_day": {}, "timing": {}, "replayed_upto": upto.isoformat()}
    decisions = [{"date": g.isoformat(), "decision": dec} for _, _, dec, g in versions if g and dec in gates]
    meta["gate_in_period"] = _gate_counts(decisions, PERIOD)
    meta["complete"] = upto >= date.fromisoformat(imported["last_date"])
    if args.keep_predictions:
        ev.to_parquet(home / "forward_predictions_replay.parquet")
    return _result(args, settings, imported, ev, meta, home, t0)


def write_notes(result: dict[str, Any], path: Path, command: str) -> None:
    a = result["anchors"]
    r = result
    champ = r["logreg_on_champion_rows"] or {}
    lines = [
        "## Real data: UCI Bank Marketing",
        "",
        f"Command: `{command}` on {platform.node()} ({os.cpu_count()} cores shared with other "
        "jobs), "
        f"{r['seconds']:.0f} s in all "
        f"({', '.join(f'{k} {v:.0f} s' for k, v in r['timing'].items())}).",
        "",
        f"Data: `{r['data']}` ({r['variant']}), {r['rows']:,} calls = persons, "
        f"{r['call_days']} call days over "
        f"{r['days']} calendar days ({r['first_date']} .. {r['last_date']}), "
        "label `converted` (y = yes). "
        "The pipeline ran every day: ingest, features, train "
        f"(weekly: `retrain_every_days={r['retrain_every_days']}`, "
        f"window {r['train_window_days']} days, "
        f"`train_halflife_days={r['train_halflife_days']:g}`, `train_plots=false`, "
        "`duckdb_threads=1`, other settings default) and gate; "
        f"{r['trainings']} trainings, gate {r['gate']}"
        + (f" (failed checks: {r['gate_failures']})" if r["gate_failures"] else "")
        + f". Score and publish on the last day: {r['publish_last_day']}.",
        "",
        *(
            [
                f"**Replayed from the run's lake and registry up to {r['replayed_upto']}"
                + (
                    ""
                    if r.get("complete")
                    else " (the run had not reached the end of the data: partial figures)"
                )
                + ".**",
                "",
            ]
            if r.get("replayed_upto")
            else []
        ),
        "Forward evaluation: each day's calls scored before the models saw that day "
        "(features of the end of the day "
        "before). Person attributes reaching the model: "
        + (", ".join(f"`{x}`" for x in r["attributes"]) or "**none**")
        + ".",
        "",
        "| model (forward, pooled rows) | rows | AUC | lift@10% | recall@top 50% | mean within-day AUC |",
        "|---|---|---|---|---|---|",
        f"| contactrank champion (served by the pipeline, from {r['first_scored']}) "
        f"| {r['scored_rows']:,} | {r['auc']} | {r['lift10']} | {r['recall50']} | {r['auc_within_day']} |",
        f"| logistic regression, same rows as the champion | {champ.get('rows', 0):,} "
        f"| {champ.get('auc')} | {champ.get('lift10')} | {champ.get('recall50')} "
        f"| {champ.get('auc_within_day')} |",
        f"| contactrank latest challenger (gated or not) | {r['compared_rows']:,} | {r['auc_latest']} "
        f"| {r['lift10_latest']} | {r['recall50_latest']} | {r['auc_within_day_latest']} |",
        f"| logistic regression, same features and days as that challenger | {r['compared_rows']:,} "
        f"| {r['auc_logreg']} | {r['lift10_logreg']} | {r['recall50_logreg']} "
        f"| {r['auc_within_day_logreg']} |",
        "",
        *_period_lines(r),
        "Anchors (PROVENANCE.md §4, all without call duration unless said):",
        "",
        "| reference | AUC | ratio contactrank champion / reference |",
        "|---|---|---|",
    ]
    for name, label in [
        ("moro2014_nn_auc", "Moro et al. 2014, NN, rolling window, private richer data (22 features)"),
        ("lgbm_time_split_no_duration", "LightGBM, first 80% of rows -> last 20% (PROVENANCE reference run)"),
        ("logreg_time_split_no_duration", "logistic regression, same time split"),
        ("lgbm_random_cv_no_duration", "LightGBM, random 5-fold CV (optimistic: no time order)"),
        ("amlb_with_duration_best", "AutoML benchmark WITH duration (leaky; not comparable)"),
    ]:
        ratio = f"{r['auc'] / a[name]:.3f}" if r["auc"] else "–"
        lines.append(f"| {label} | {a[name]} | {ratio} |")
    lines += [
        "| Moro et al. 2014: top half of clients reaches 79% of subscribers "
        f"| recall@50% {a['moro2014_top_half_recall']} | "
        + (f"{r['recall50'] / a['moro2014_top_half_recall']:.3f} (recall)" if r["recall50"] else "–")
        + " |",
        "",
        "JSON line:",
        "",
        "```json",
        json.dumps(r, sort_keys=True, default=str),
        "```",
        "",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))


def _period_lines(r: dict[str, Any]) -> list[str]:
    per = r.get("period") or {}
    if not per:
        return []
    lines = [
        f"Same figures over {per['from']} .. {per['to']} only (rows all three models scored); gate "
        f"decisions in the period: {r.get('gate_in_period')} (promoted or held: "
        f"{r.get('promoted_or_held_share_in_period')}; over the whole run "
        f"{r.get('promoted_or_held_share')}).",
        "",
        "| model | rows | AUC | lift@10% | recall@top 50% | mean within-day AUC |",
        "|---|---|---|---|---|---|",
    ]
    for key, name in (
        ("champion", "served (champion)"),
        ("latest", "latest challenger"),
        ("logreg", "logistic regression"),
    ):
        f = per[key]
        cells = [f"{f['rows']:,}", f["auc"], f["lift10"], f["recall50"], f["auc_within_day"]]
        lines.append(f"| {name} | " + " | ".join(str(c) for c in cells) + " |")
    return [*lines, ""]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=str(DEFAULT_DATA), help="bank-full.csv or bank-additional-full.csv")
    p.add_argument("--limit", type=int, help="import only the first N rows (quick runs)")
    p.add_argument("--home", help="CONTACTRANK_HOME to use (default: a temp dir, removed afterwards)")
    p.add_argument("--fresh", action="store_true", help="with --home: remove it first")
    p.add_argument("--keep", action="store_true", help="keep the temp home")
    p.add_argument("--keep-predictions", action="store_true", help="write <home>/forward_predictions.parquet")
    p.add_argument(
        "--halflife", type=float, default=HALFLIFE_DAYS, help="train_halflife_days (0: equal weights)"
    )
    p.add_argument("--notes", default=str(NOTES), help="markdown file for the figures ('' for none)")
    p.add_argument(
        "--replay", action="store_true", help="with --home: re-evaluate an existing (or running) home"
    )
    p.add_argument("--complete", action="store_true", help="with --replay: the home's last day is complete")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s", stream=sys.stderr)
    log.setLevel(logging.INFO)
    runtime_env()  # as every entry point of the pipeline, before LightGBM loads
    warnings.filterwarnings("ignore")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")
    result = replay(args) if args.replay else run(args)
    if args.notes:
        write_notes(
            result,
            Path(args.notes),
            "python bench/bank_marketing.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        )
    print(json.dumps(result, sort_keys=True, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
