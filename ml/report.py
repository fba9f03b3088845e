"""The daily report: one self-contained HTML page about the data, the model and the export of D.

``report(settings, d)`` writes ``<exports>/reports/date=D/report.html`` (charts embedded as
base64 PNG, so the file can be mailed or opened from anywhere) and ``panels.json`` (what each
panel showed, or why it could not), as one atomic directory, then logs the page to the MLflow
run of the day when there is one.

Every panel is built independently from what exists on disk. A missing input (no model yet, no
export, no simulated truth, a single labelled day) gives a panel that says so; an unexpected
error inside one panel is logged and shown in that panel. The report never fails the run.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from contactrank.errors import ContactrankError
from contactrank.features import lake
from contactrank.features.schema import KINDS, LABEL_COLUMNS, REACH_OUTCOMES
from contactrank.ml import plots
from contactrank.ml.drift import psi
from contactrank.ml.evaluate import ECE_BINS, ece, heuristic_score, oracle_probabilities
from contactrank.settings import Settings

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
PANELS_FILE = "panels.json"
HISTORY_DAYS = 60  # outcome mix, quarantine and reach-by-hour look back this far
MAX_ROWS = 200_000  # rows scored for calibration, gains and drift: stable curves at bounded cost
MAX_WINDOW_DAYS = 14  # training days sampled to represent the window
MIN_HOUR_ATTEMPTS = 30  # reach rates over fewer attempts are drawn faint, off the line
TOP_DRIFT = 15
# Calendar features and population rates (f_g_*: one value per day, channel or campaign) are
# constant within a day by construction: one day's single value against a window of daily values
# always scores a huge PSI that says nothing about the rows.
CALENDAR_FEATURES = frozenset({"f_dow", "f_dom", "f_month"})
DAY_LEVEL_PREFIX = "f_g_"


class _Missing(Exception):
    """An input the panel needs does not exist (yet); the message says which."""


@dataclass
class Panel:
    """One section of the report: a chart, or the reason there is none."""

    key: str
    title: str
    png: bytes | None = None
    caption: str = ""
    rows: list[tuple[str, str]] = field(default_factory=list)
    missing: str | None = None
    error: str | None = None

    @property
    def status(self) -> str:
        if self.error:
            return "error"
        if self.missing:
            return "missing"
        return "ok"


# --------------------------------------------------------------------------------------------
# metrics


def _ordering(key: np.ndarray, seed: int) -> np.ndarray:
    """Indices sorted by ``key`` descending, ties broken at random (fixed seed), NaN last."""
    k = np.asarray(key, dtype="float64").copy()
    k[np.isnan(k)] = -np.inf
    tiebreak = np.random.default_rng(seed).random(len(k))
    return np.lexsort((tiebreak, -k))


# --------------------------------------------------------------------------------------------
# inputs, loaded once and shared by the panels


class _Inputs:
    """Lazy access to everything the panels read; failures are remembered, not retried."""

    def __init__(self, settings: Settings, d: date):
        self.settings = settings
        self.d = d
        self._cache: dict[str, Any] = {}

    def _once(self, name: str, loader: Callable[[], Any]) -> Any:
        if name not in self._cache:
            try:
                self._cache[name] = (True, loader())
            except Exception as exc:  # noqa: BLE001 - re-raised to every panel that asks
                self._cache[name] = (False, exc)
        ok, value = self._cache[name]
        if not ok:
            raise value
        return value

    # --- lake ------------------------------------------------------------------------------
    def history_days(self, kind: str) -> list[date]:
        start = self.d - timedelta(days=HISTORY_DAYS - 1)
        return [t for t in lake.partition_dates(self.settings, kind) if start <= t <= self.d]

    def attempt_stats(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(daily outcome counts, reach by channel and local hour) over the history window."""
        return self._once("attempt_stats", self._attempt_stats)

    def _attempt_stats(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        days = self.history_days("attempts")
        if not days:
            raise _Missing(f"no attempts partition in the lake for the {HISTORY_DAYS} days up to {self.d}")
        files = [str(lake.partition_dir(self.settings, "attempts", t) / lake.DATA_FILE) for t in days]
        reach = ", ".join(f"'{o}'" for o in sorted(REACH_OUTCOMES))
        con = lake.duckdb_connect(self.settings)
        try:
            listed = ", ".join("'" + f.replace("'", "''") + "'" for f in files)
            con.execute(
                f"CREATE TEMP VIEW a AS SELECT * FROM read_parquet([{listed}], hive_partitioning=true)"
            )
            mix = con.execute("SELECT date, outcome, count(*) AS n FROM a GROUP BY ALL").df()
            by_hour = con.execute(
                f"SELECT channel, local_hour, count(*) AS n, count(*) FILTER (WHERE outcome IN ({reach})) AS reached "
                "FROM a WHERE local_hour IS NOT NULL GROUP BY ALL"
            ).df()
        finally:
            con.close()
        return mix, by_hour

    def training_days(self) -> list[date]:
        return [t for t in lake.partition_dates(self.settings, "training") if t <= self.d]

    def labelled(self) -> tuple[date, pd.DataFrame]:
        """The newest labelled day up to D and (a sample of) its training rows."""
        return self._once("labelled", self._labelled)

    def _labelled(self) -> tuple[date, pd.DataFrame]:
        days = self.training_days()
        if not days:
            raise _Missing(f"no labelled day yet (no training partition up to {self.d})")
        newest = days[-1]
        return newest, self._read([newest], MAX_ROWS)

    def window(self) -> tuple[list[date], pd.DataFrame]:
        """Training days of the window before the newest labelled day, sampled."""
        return self._once("window", self._window)

    def _window(self) -> tuple[list[date], pd.DataFrame]:
        newest, _ = self.labelled()
        start = newest - timedelta(days=self.settings.train_window_days)
        days = [t for t in self.training_days() if start <= t < newest]
        if not days:
            raise _Missing(f"only one labelled day ({newest}): no training window to compare with")
        if len(days) > MAX_WINDOW_DAYS:
            picks = np.unique(np.linspace(0, len(days) - 1, MAX_WINDOW_DAYS).round().astype(int))
            days = [days[i] for i in picks]
        return days, self._read(days, MAX_ROWS)

    def _read(self, days: list[date], max_rows: int) -> pd.DataFrame:
        per_day = max(1, max_rows // len(days))
        frames = []
        for t in days:
            table = lake.read_partition(self.settings, "training", t)
            if table is None:
                continue
            df = table.to_pandas()
            if len(df) > per_day:
                df = df.sample(n=per_day, random_state=t.toordinal())
            frames.append(df)
        if not frames:
            raise _Missing(f"training partitions {days[0]}..{days[-1]} could not be read")
        return pd.concat(frames, ignore_index=True)

    # --- model -----------------------------------------------------------------------------
    def champion(self) -> tuple[Any, dict[str, Any]]:
        return self._once("champion", self._champion)

    def _champion(self) -> tuple[Any, dict[str, Any]]:
        """The model of D: the version D's export was scored with, else the champion if it existed on D.

        Reading the version from the manifest keeps a re-run of an old date on the model of that
        date, not on whatever the champion is today.
        """
        if not self.mlflow_store_exists():
            raise _Missing("no model yet: the MLflow store does not exist")
        from contactrank.ml.registry import load_champion, load_version

        published = ((self.manifest() or {}).get("model") or {}).get("version")
        if published is not None:
            try:
                return load_version(self.settings, published), {
                    "version": str(published),
                    "source": "published",
                }
            except Exception as exc:  # noqa: BLE001 - an unloadable version is a missing input here
                raise _Missing(
                    f"model version {published} of the export could not be loaded: {_one_line(exc)}"
                ) from None
        try:
            model, info = load_champion(self.settings)
        except Exception as exc:  # noqa: BLE001 - no champion is a missing input, whatever MLflow raises
            raise _Missing(f"no champion model: {_one_line(exc)}") from None
        trained = _trained_on(self.settings, info.get("run_id"))
        if trained is not None and trained > self.d.isoformat():
            raise _Missing(
                f"no model as of {self.d}: the champion v{info.get('version')} was trained on {trained}"
            )
        return model, {**info, "version": str(info.get("version")), "source": "champion"}

    def label_column(self) -> str:
        label = self.settings.label
        try:
            label = getattr(self.champion()[0], "label", label) or label
        except Exception:  # noqa: BLE001 - without a model the settings decide
            pass
        return LABEL_COLUMNS.get(label, LABEL_COLUMNS["reach"])

    def labelled_scores(self) -> np.ndarray:
        return self._once("labelled_scores", lambda: self._predict(self.labelled()[1]))

    def window_scores(self) -> np.ndarray:
        return self._once("window_scores", lambda: self._predict(self.window()[1]))

    def _predict(self, df: pd.DataFrame) -> np.ndarray:
        model, _ = self.champion()
        return np.asarray(model.predict_proba(df, num_threads=self.settings.num_threads), dtype="float64")

    # --- export ----------------------------------------------------------------------------
    def export(self) -> tuple[pd.DataFrame, str]:
        """The published rows of D (export directory, else the ``scores`` partition) and their source."""
        return self._once("export", self._export)

    def _export(self) -> tuple[pd.DataFrame, str]:
        path = self.export_dir() / "priority.parquet"
        if path.is_file():
            return pq.read_table(path).to_pandas(), str(path)
        table = lake.read_partition(self.settings, "scores", self.d)
        if table is not None:
            return table.to_pandas(), str(lake.partition_dir(self.settings, "scores", self.d))
        raise _Missing(f"nothing published for {self.d} (no {path}, no scores partition)")

    def export_dir(self) -> Path:
        return self.settings.exports / "priority" / f"date={self.d.isoformat()}"

    def manifest(self) -> dict[str, Any] | None:
        path = self.export_dir() / "_manifest.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def ingest_report(self) -> dict[str, Any] | None:
        path = lake.partition_dir(self.settings, "attempts", self.d) / "_ingest_report.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    # --- MLflow ----------------------------------------------------------------------------
    def mlflow_store_exists(self) -> bool:
        """False when the default SQLite store was never created: then no model and no run exist."""
        uri = self.settings.tracking_uri
        if uri.startswith("sqlite:///"):
            return Path(uri[len("sqlite:///") :]).is_file()
        return True

    def runs(self) -> _Runs:
        """The MLflow runs of D (none when there is no store yet)."""
        return self._once(
            "runs", lambda: _runs_of_day(self.settings, self.d) if self.mlflow_store_exists() else _Runs()
        )


def _trained_on(settings: Settings, run_id: str | None) -> str | None:
    """The business date (ISO) a registered model's training run was made for, when recorded."""
    if not run_id:
        return None
    from contactrank.ml.tracking import client as mlflow_client

    return mlflow_client(settings).get_run(run_id).data.tags.get(TAG_TRAIN_DATE)


# Tags written by ml.train (the business date of a training run) and ml.registry.gate.
TAG_TRAIN_DATE = "contactrank.date"
TAG_GATE_DATE = "contactrank.gate.date"
TAG_GATE_DECISION = "contactrank.gate.decision"
TAG_GATE_REASON = "contactrank.gate.reason."


@dataclass
class _Runs:
    """The training run of D and the run whose challenger was gated on D (often the same run)."""

    trained: Any = None
    gated: Any = None

    @property
    def of_day(self) -> Any:
        return self.trained or self.gated


def _runs_of_day(settings: Settings, d: date) -> _Runs:
    from contactrank.ml.tracking import client as mlflow_client
    from contactrank.ml.tracking import configure

    exp_id = configure(settings)
    client = mlflow_client(settings)

    def newest(tag: str) -> Any:
        runs = client.search_runs(
            [exp_id],
            filter_string=f"tags.`{tag}` = '{d.isoformat()}'",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None

    return _Runs(trained=newest(TAG_TRAIN_DATE), gated=newest(TAG_GATE_DATE))


# --------------------------------------------------------------------------------------------
# panels


def _panel_outcome_mix(inp: _Inputs, p: Panel) -> None:
    mix, _ = inp.attempt_stats()
    p.png = plots.outcome_mix(mix)
    totals = mix.groupby("date")["n"].sum()
    reached = mix[mix["outcome"].isin(REACH_OUTCOMES)]["n"].sum()
    p.caption = (
        f"{len(totals)} days, {int(totals.sum()):,} attempts; reach rate {reached / max(totals.sum(), 1):.1%}. "
        "Bars: share of each outcome per day (greens reached the person); line: attempts per day."
    )


def _normalise_reason(reason: Any) -> str:
    # Reasons may quote the offending value; group by the kind of problem, not by the value.
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "…", str(reason or "unknown"))
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text if len(text) <= 48 else text[:47] + "…"


def _panel_quarantine(inp: _Inputs, p: Panel) -> None:
    s = inp.settings
    delivered: dict[tuple[str, bool], int] = {}  # (kind, is day D) -> rows delivered
    rows: list[dict[str, Any]] = []
    for kind in KINDS:
        for t in inp.history_days(kind):
            n = pq.ParquetFile(lake.partition_dir(s, kind, t) / lake.DATA_FILE).metadata.num_rows
            delivered[(kind, t == inp.d)] = delivered.get((kind, t == inp.d), 0) + n
        for t in inp.history_days(f"quarantine/{kind}"):
            table = lake.read_partition(s, f"quarantine/{kind}", t)
            if table is None or table.num_rows == 0:
                continue
            reason = table.column("_reason").to_pandas().map(_normalise_reason)
            if "_column" in table.column_names:
                column = table.column("_column").to_pandas()
                reason = reason.where(column.isna(), reason + " (" + column.astype("string") + ")")
            reasons = reason.value_counts()
            for reason, n in reasons.items():
                rows.append({"kind": kind, "reason": reason, "n": int(n), "day": t == inp.d})
                delivered[(kind, t == inp.d)] = delivered.get((kind, t == inp.d), 0) + int(n)
    p.rows = _ingest_rows(inp.ingest_report())
    if not delivered:
        raise _Missing(f"nothing ingested in the {HISTORY_DAYS} days up to {inp.d}")
    if not rows:
        p.caption = f"No row was quarantined in the last {HISTORY_DAYS} days."
        return
    q = pd.DataFrame(rows)
    agg = q.groupby(["kind", "reason"], as_index=False)["n"].sum().rename(columns={"n": "n_window"})
    day = q[q["day"]].groupby(["kind", "reason"], as_index=False)["n"].sum().rename(columns={"n": "n_day"})
    agg = agg.merge(day, on=["kind", "reason"], how="left").fillna({"n_day": 0})
    total = {k: delivered.get((k, True), 0) + delivered.get((k, False), 0) for k in KINDS}
    agg["rate_window"] = agg["n_window"] / agg["kind"].map(total).clip(lower=1)
    agg["rate_day"] = agg["n_day"] / agg["kind"].map(lambda k: delivered.get((k, True), 0)).clip(lower=1)
    agg["label"] = agg["kind"] + ": " + agg["reason"]
    agg = agg.sort_values("rate_window", ascending=False).head(TOP_DRIFT)
    p.png = plots.quarantine_rates(agg, f"{inp.d}", f"last {HISTORY_DAYS} days")
    day_q = int(q.loc[q["day"], "n"].sum())
    ingest_rows = p.rows
    p.rows = [
        (
            r.label,
            f"{int(r.n_day):,} on {inp.d} ({r.rate_day:.2%}), {int(r.n_window):,} in {HISTORY_DAYS} days ({r.rate_window:.2%})",
        )
        for r in agg.itertuples()
    ] + p.rows
    p.caption = (
        f"{int(q['n'].sum()):,} rows quarantined in the last {HISTORY_DAYS} days, {day_q:,} on {inp.d}. "
        "Rate = quarantined rows of the reason / rows delivered of that kind (accepted + quarantined)."
        + (" The last lines are this day's ingest report." if ingest_rows else "")
    )


def _ingest_rows(report: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The day's ingest report (features.ingest) as one line per kind and a total."""
    if not report:
        return []
    kinds = report.get("kinds")
    if not isinstance(kinds, dict):
        return [(k, _fmt(v)) for k, v in _flatten(report).items()][:24]
    rows = []
    for kind, figures in kinds.items():
        if not isinstance(figures, dict):
            continue
        text = ", ".join(
            f"{k} {_fmt(figures[k])}"
            for k in ("files", "read", "kept", "quarantined", "deduped")
            if k in figures
        )
        if figures.get("unreadable_files"):
            text += f"; unreadable: {_fmt(figures['unreadable_files'])}"
        rows.append((f"ingest {kind}", text))
    if "quarantined_share" in report:
        share = f"{float(report['quarantined_share']):.2%}"
        if "threshold" in report:
            share += f" (threshold {float(report['threshold']):.0%})"
        if report.get("top_reason"):
            share += f", top reason {report['top_reason']}"
        rows.append(("ingest quarantined share", share))
    return rows


def _panel_reach_by_hour(inp: _Inputs, p: Panel) -> None:
    _, by_hour = inp.attempt_stats()
    if by_hour.empty:
        raise _Missing("no attempt with a local hour in the window")
    p.png = plots.reach_by_hour(by_hour, MIN_HOUR_ATTEMPTS)
    per_channel = by_hour.groupby("channel")[["n", "reached"]].sum()
    p.rows = [
        (str(ch), f"{int(r.n):,} attempts, reach {r.reached / max(r.n, 1):.1%}")
        for ch, r in per_channel.iterrows()
    ]
    p.caption = (
        f"Hollow markers off the lines: hours with fewer than {MIN_HOUR_ATTEMPTS} attempts of that channel."
    )


def _panel_calibration(inp: _Inputs, p: Panel) -> None:
    newest, df = inp.labelled()
    label = inp.label_column()
    if label not in df.columns:
        raise _Missing(f"training/date={newest} has no {label} column")
    scores = inp.labelled_scores()
    y = df[label].to_numpy(dtype="float64")
    p.png = plots.calibration(y, scores)
    info = inp.champion()[1]
    p.rows = [
        (
            "model",
            f"v{info['version']} ({'published with this day' if info.get('source') == 'published' else 'champion'})",
        ),
        ("labelled day", str(newest)),
        ("attempts", f"{len(y):,}"),
        ("observed rate", f"{y.mean():.2%}"),
        ("mean predicted", f"{scores.mean():.2%}"),
        (
            f"ECE ({ECE_BINS} equal-width bins)",
            f"{ece(y, scores):.4f} (gate cap {inp.settings.gate_ece_cap:g})",
        ),
        ("Brier score", f"{np.mean((scores - y) ** 2):.4f}"),
    ]
    p.caption = (
        f"Attempts of training/date={newest} ({label}), curve over 10 equal-count bins. The model may have "
        "seen this day while training or validating, so this is a sanity check, not a hold-out estimate."
    )


def _panel_gains(inp: _Inputs, p: Panel) -> None:
    from sklearn.metrics import roc_auc_score

    newest, df = inp.labelled()
    label = inp.label_column()
    if label not in df.columns:
        raise _Missing(f"training/date={newest} has no {label} column")
    y = df[label].to_numpy(dtype="float64")
    if y.sum() == 0 or y.sum() == len(y):
        raise _Missing(f"training/date={newest} has a single class: gains are undefined")
    keys: dict[str, np.ndarray] = {"model": inp.labelled_scores()}
    notes = []
    if "f_c_days_since_reach" in df.columns:
        keys["last success"] = heuristic_score(df)
    else:
        notes.append("No f_c_days_since_reach column: last-success baseline left out.")
    truth_path = inp.settings.landing / "truth_attempts.parquet"
    oracle = None
    if "attempt_id" in df.columns:
        short = "conversion" if label == LABEL_COLUMNS["conversion"] else "reach"
        oracle = oracle_probabilities(truth_path, df["attempt_id"], short)
    if oracle is None:
        notes.append(f"No oracle: {truth_path} does not exist (only simulated worlds know the truth).")
    elif np.isfinite(oracle).mean() < 0.5:
        notes.append(f"No oracle: the truth covers only {np.isfinite(oracle).mean():.0%} of the attempts.")
    else:
        keys["oracle"] = oracle
    curves, deciles = {}, {}
    base = y.mean()
    p.rows = [("random", "AUC 0.500, top 10% holds 10.0%, top 20% holds 20.0% of successes")]
    for name, key in keys.items():
        order = _ordering(key, seed=newest.toordinal())
        ys = y[order]
        curves[name] = np.cumsum(ys) / ys.sum()
        deciles[name] = np.array([c.mean() / base for c in np.array_split(ys, 10)])
        finite = np.isfinite(key)
        auc = roc_auc_score(y, np.where(finite, key, np.min(key[finite]) - 1 if finite.any() else 0.0))
        top10 = curves[name][max(int(len(y) * 0.1) - 1, 0)]
        top20 = curves[name][max(int(len(y) * 0.2) - 1, 0)]
        p.rows.append(
            (name, f"AUC {auc:.3f}, top 10% holds {top10:.1%}, top 20% holds {top20:.1%} of successes")
        )
    p.png = plots.gains(y, curves, deciles)
    p.caption = " ".join(
        [
            f"{len(y):,} attempts of training/date={newest} ranked by each policy ({label}), ties at random.",
            "Last success: the most recently reached address first, then never-reached customer addresses.",
            "Oracle: the simulator's true probability." if "oracle" in keys else "",
            *notes,
        ]
    ).strip()


def _panel_scores(inp: _Inputs, p: Panel) -> None:
    export, source = inp.export()
    if "score" not in export.columns:
        raise _Missing(f"{source} has no score column")
    today = pd.to_numeric(export["score"], errors="coerce").dropna().to_numpy(dtype="float64")
    if not len(today):
        raise _Missing(f"{source} has no scored row")
    window = None
    window_label = "training window"
    try:
        window = inp.window_scores()
        days, _ = inp.window()
        window_label = f"model v{inp.champion()[1]['version']} on training rows {days[0]}..{days[-1]}"
    except _Missing as exc:
        p.caption = f"Training window not shown: {exc}. "
    p.png = plots.score_distribution(today, window, f"published {inp.d} ({len(today):,} rows)", window_label)
    p.rows = [("today: median / mean", f"{np.median(today):.3f} / {today.mean():.3f}")]
    if window is not None and len(window):
        p.rows.append(("window: median / mean", f"{np.median(window):.3f} / {window.mean():.3f}"))
        p.rows.append(("PSI today vs window", f"{psi(pd.Series(window), pd.Series(today)):.3f}"))
    p.caption += (
        "Today's scores are for each address at its best hour; the window's are for attempts at the hour they "
        "were made, so some shift is expected."
    )


def _panel_drift(inp: _Inputs, p: Panel) -> None:
    newest, today = inp.labelled()
    days, window = inp.window()
    features = [
        c
        for c in today.columns
        if c.startswith("f_")
        and c in window.columns
        and c not in CALENDAR_FEATURES
        and not c.startswith(DAY_LEVEL_PREFIX)
    ]
    if not features:
        raise _Missing("no feature column shared by the newest day and the window")
    values = pd.Series({c: psi(window[c], today[c]) for c in features}).sort_values(ascending=False)
    threshold = inp.settings.drift_psi_threshold
    p.png = plots.drift(values.head(TOP_DRIFT), threshold)
    above = values[values >= threshold]
    p.caption = (
        f"training/date={newest} against {len(days)} day(s) {days[0]}..{days[-1]}; {len(features)} features compared, "
        f"{len(above)} at or above {threshold:g}. Calendar features ({', '.join(sorted(CALENDAR_FEATURES))}) and "
        f"population rates ({DAY_LEVEL_PREFIX}*) are left out: they are constant within a day."
    )
    p.rows = [(name, f"{v:.3f}") for name, v in above.head(TOP_DRIFT).items()]


def _panel_exploration(inp: _Inputs, p: Panel) -> None:
    export, source = inp.export()
    missing = [c for c in ("explore", "propensity", "rank", "person_id") if c not in export.columns]
    if missing:
        raise _Missing(f"{source} has no {', '.join(missing)} column")
    explore = export["explore"].fillna(False).astype(bool)
    first = export["rank"] == 1
    shares = [
        ("all rows", float(explore.mean())),
        ("rank-1 rows", float(explore[first].mean()) if first.any() else 0.0),
    ]
    propensity = (
        pd.to_numeric(export.loc[first, "propensity"], errors="coerce").dropna().to_numpy(dtype="float64")
    )
    p.png = plots.exploration(shares, propensity)
    p.rows = [
        ("rows / persons", f"{len(export):,} / {export['person_id'].nunique():,}"),
        ("explored rows", f"{int(explore.sum()):,}"),
        (
            "explored rank-1 rows",
            f"{int(explore[first].sum()):,} (explore_share setting {inp.settings.explore_share:.1%})",
        ),
    ]
    if len(propensity):
        p.rows.append(
            ("rank-1 propensity: min / median", f"{propensity.min():.3f} / {np.median(propensity):.3f}")
        )
    p.caption = f"From {source}. Propensity: the probability that this policy puts the row first."


PANELS: tuple[tuple[str, str, Callable[[_Inputs, Panel], None]], ...] = (
    ("outcome_mix", f"Outcome mix, last {HISTORY_DAYS} days", _panel_outcome_mix),
    ("quarantine", f"Quarantine rate by reason, last {HISTORY_DAYS} days", _panel_quarantine),
    (
        "reach_by_hour",
        f"Reach rate by local hour and channel, last {HISTORY_DAYS} days",
        _panel_reach_by_hour,
    ),
    ("calibration", "Calibration of the model on the newest labelled day", _panel_calibration),
    ("gains", "Gain and lift: the model against the baselines", _panel_gains),
    ("scores", "Score distribution: published today vs the training window", _panel_scores),
    ("drift", "Top drifted features (PSI, newest labelled day vs the training window)", _panel_drift),
    ("exploration", "Exploration: share explored and propensity of the rank-1 rows", _panel_exploration),
)


def _build(key: str, title: str, builder: Callable[[_Inputs, Panel], None], inp: _Inputs) -> Panel:
    p = Panel(key, title)
    try:
        builder(inp, p)
    except _Missing as exc:
        return Panel(key, title, missing=str(exc))
    except Exception as exc:  # noqa: BLE001 - one broken chart must not cost the rest of the report
        log.warning("report %s: panel %s failed", inp.d, key, exc_info=True)
        return Panel(key, title, error=f"{type(exc).__name__}: {_one_line(exc)}")
    return p


# --------------------------------------------------------------------------------------------
# header


def _header(inp: _Inputs) -> list[tuple[str, str]]:
    manifest = inp.manifest() or {}
    rows = [("Date", inp.d.isoformat())]
    version = (manifest.get("model") or {}).get("version")
    if version is None:
        try:
            export, _ = inp.export()
            if "model_version" in export.columns and len(export):
                version = ", ".join(sorted(export["model_version"].dropna().astype(str).unique())[:3]) or None
        except _Missing:
            pass
    if version is None:
        try:
            version = f"{inp.champion()[1].get('version')} (champion; nothing published)"
        except _Missing:
            pass
    rows.append(("Model version", str(version) if version is not None else "no model yet"))
    rows.append(("Gate decision", _gate_text(inp)))
    if "rows" in manifest:
        rows.append(
            (
                "Rows published",
                f"{int(manifest['rows']):,} rows for {int(manifest.get('persons', 0)):,} persons",
            )
        )
    else:
        rows.append(("Rows published", "nothing published (no export manifest)"))
    persons = manifest.get("persons_left_out") or {}
    addresses = manifest.get("addresses_left_out") or {}
    if persons or addresses:
        text = "persons: " + ", ".join(f"{k} {_fmt(v)}" for k, v in persons.items())
        text += "; addresses: " + ", ".join(f"{k} {_fmt(v)}" for k, v in addresses.items())
        rows.append(("Left out by caps and suppressions", text))
    else:
        rows.append(("Left out by caps and suppressions", "not reported (no export manifest)"))
    return rows


def _gate_text(inp: _Inputs) -> str:
    try:
        runs = inp.runs()
    except Exception as exc:  # noqa: BLE001 - the header degrades to the reason
        return f"unknown: MLflow could not be read ({_one_line(exc)})"
    run = runs.gated
    if run is None:
        if runs.trained is not None:
            return f"not gated yet (run {runs.trained.info.run_name or runs.trained.info.run_id[:8]})"
        return "no training or gate on this day"
    tags = run.data.tags
    decision = tags.get(TAG_GATE_DECISION, "unknown")
    reasons = [v for k, v in sorted(tags.items()) if k.startswith(TAG_GATE_REASON)]
    failed = [r.removeprefix("fail: ") for r in reasons if r.startswith("fail:")]
    vs = tags.get("contactrank.gate.champion_version", "none")
    text = f"{decision} (run {run.info.run_name or run.info.run_id[:8]}, against champion {vs})"
    if failed:
        text += " — failed: " + "; ".join(failed)
    elif reasons:
        text += f" — all {len(reasons)} checks passed"
    return text


def _flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(d, dict):
        for k, v in d.items():
            out.update(_flatten(v, f"{prefix}{k}."))
    elif isinstance(d, list):
        out[prefix.rstrip(".")] = ", ".join(map(str, d[:8])) + (" …" if len(d) > 8 else "")
    else:
        out[prefix.rstrip(".")] = d
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.4g}" if math.isfinite(v) else str(v)
    return str(v)


def _one_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


# --------------------------------------------------------------------------------------------
# HTML

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;background:#f5f6f8;color:#1d2329}
header{background:#1d3557;color:#fff;padding:16px 28px}
header h1{margin:0 0 8px;font-size:22px}
header table{border-collapse:collapse;font-size:14px}
header td{padding:2px 18px 2px 0;vertical-align:top}
header td:first-child{color:#a8c5e6;white-space:nowrap}
nav{padding:10px 28px;font-size:13px}
nav a{margin-right:14px;color:#1d3557}
.status-missing,.status-error{color:#b5651d}
main{display:flex;flex-wrap:wrap;gap:18px;padding:0 28px 28px}
section{background:#fff;border-radius:6px;box-shadow:0 1px 3px rgba(0,0,0,.12);padding:14px 18px;flex:1 1 760px;max-width:1000px}
section h2{font-size:16px;margin:0 0 10px}
section img{max-width:100%;height:auto;display:block}
.caption{font-size:13px;color:#4a5560;margin:8px 0 0}
.facts{border-collapse:collapse;font-size:13px;margin-top:8px}
.facts td{padding:2px 14px 2px 0;border-bottom:1px solid #eef0f2}
.notice{padding:18px;border:1px dashed #c0a060;background:#fffaf0;border-radius:4px;font-size:14px}
.notice.error{border-color:#d62828;background:#fff2f2}
footer{padding:0 28px 24px;font-size:12px;color:#6b7680}
"""


def _facts(rows: list[tuple[str, str]], cls: str = "facts") -> str:
    if not rows:
        return ""
    body = "".join(f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f'<table class="{cls}">{body}</table>'


def _section(p: Panel) -> str:
    parts = [f'<section id="{p.key}" data-status="{p.status}"><h2>{html.escape(p.title)}</h2>']
    if p.png:
        from PIL import Image  # a matplotlib dependency; the size lets the browser lay the page out early

        width, height = Image.open(io.BytesIO(p.png)).size
        data = base64.b64encode(p.png).decode("ascii")
        parts.append(
            f'<img src="data:image/png;base64,{data}" width="{width}" height="{height}" alt="{html.escape(p.title)}">'
        )
    elif p.status == "missing":
        parts.append(f'<div class="notice">Not available: {html.escape(p.missing or "")}</div>')
    elif p.status == "error":
        parts.append(f'<div class="notice error">Could not be drawn: {html.escape(p.error or "")}</div>')
    if p.caption:
        parts.append(f'<p class="caption">{html.escape(p.caption)}</p>')
    parts.append(_facts(p.rows))
    parts.append("</section>")
    return "".join(parts)


def render_html(d: date, header: list[tuple[str, str]], panels: list[Panel], created_at: str) -> str:
    """The report page (no script, no external resource)."""
    nav = " ".join(
        f'<a href="#{p.key}" class="status-{p.status}">{html.escape(p.title.split(":")[0].split(" (")[0])}'
        f"{'' if p.status == 'ok' else ' (' + p.status + ')'}</a>"
        for p in panels
    )
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>contactrank report {d.isoformat()}</title><style>{_CSS}</style></head><body>"
        f"<header><h1>contactrank daily report — {d.isoformat()}</h1>{_facts(header, 'summary')}</header>"
        f"<nav>{nav}</nav><main>{''.join(_section(p) for p in panels)}</main>"
        f"<footer>Generated {html.escape(created_at)} by contactrank.</footer></body></html>\n"
    )


# --------------------------------------------------------------------------------------------
# entry point


def report(settings: Settings, d: date) -> Path:
    """Write the report of ``d`` atomically and log it to the MLflow run of the day; returns its path."""
    inp = _Inputs(settings, d)
    panels, seconds = [], {}
    for key, title, builder in PANELS:
        started = time.perf_counter()
        panels.append(_build(key, title, builder, inp))
        # the first panel to need an input (the model, the training sample) pays for loading it
        seconds[key] = round(time.perf_counter() - started, 3)
    header = _header(inp)
    created_at = datetime.now(UTC).isoformat(timespec="seconds")
    page = render_html(d, header, panels, created_at)
    summary = {
        "date": d.isoformat(),
        "created_at": created_at,
        "header": dict(header),
        "panels": {p.key: {"status": p.status, "reason": p.missing or p.error} for p in panels},
        "seconds": seconds,
    }
    target = settings.exports / "reports" / f"date={d.isoformat()}"
    with lake.atomic_dir(target) as staging:
        (staging / REPORT_FILE).write_text(page, encoding="utf-8")
        (staging / PANELS_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True), encoding="utf-8")
    path = target / REPORT_FILE
    _log_to_mlflow(inp, path)
    missing = [p.key for p in panels if p.status != "ok"]
    log.info("report %s: %s (%d panels, not drawn: %s)", d, path, len(panels), ", ".join(missing) or "none")
    return path


def _log_to_mlflow(inp: _Inputs, path: Path) -> None:
    try:
        run = inp.runs().of_day
        if run is None:
            return
        from mlflow.tracking import MlflowClient

        MlflowClient().log_artifact(
            run.info.run_id, str(path), artifact_path=f"report/date={inp.d.isoformat()}"
        )
    except ContactrankError as exc:
        log.warning("report %s not logged to MLflow: %s", inp.d, exc)
    except Exception as exc:  # noqa: BLE001 - the page is written; a tracking hiccup must not fail the run
        log.warning("report %s not logged to MLflow: %s: %s", inp.d, type(exc).__name__, _one_line(exc))
