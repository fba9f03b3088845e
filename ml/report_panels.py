"""The panels of the daily report: for each, what it reads, the chart it draws and what it says.

A panel builder fills a ``Panel`` from ``ReportInputs`` or raises ``MissingInput`` naming what
is not there yet; ``build_panel`` turns any failure into a panel that says so, so one broken chart
never costs the rest of the report. ``PANELS`` is the page's order.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from sklearn.metrics import roc_auc_score

from contactrank.features import lake
from contactrank.features.schema import KINDS, LABEL_COLUMNS, REACH_OUTCOMES
from contactrank.ml import plots
from contactrank.ml.drift import psi
from contactrank.ml.evaluate import ECE_BINS, ece, heuristic_score, oracle_probabilities
from contactrank.ml.report_html import Panel, flatten, format_value
from contactrank.ml.report_inputs import HISTORY_DAYS, MissingInput, ReportInputs, one_line

log = logging.getLogger(__name__)

MIN_HOUR_ATTEMPTS = 30  # reach rates over fewer attempts are drawn faint, off the line
TOP_DRIFT = 15
# Calendar features and population rates (f_g_*: one value per day, channel or campaign) are
# constant within a day by construction: one day's single value against a window of daily values
# always scores a huge PSI that says nothing about the rows.
CALENDAR_FEATURES = frozenset({"f_dow", "f_dom", "f_month"})
DAY_LEVEL_PREFIX = "f_g_"

PanelBuilder = Callable[[ReportInputs, Panel], None]


# --------------------------------------------------------------------------------------------
# metrics


def _ordering(key: np.ndarray, seed: int) -> np.ndarray:
    """Indices sorted by ``key`` descending, ties broken at random (fixed seed), NaN last."""
    k = np.asarray(key, dtype="float64").copy()
    k[np.isnan(k)] = -np.inf
    tiebreak = np.random.default_rng(seed).random(len(k))
    return np.lexsort((tiebreak, -k))


# --------------------------------------------------------------------------------------------
# panels


def _panel_outcome_mix(inp: ReportInputs, p: Panel) -> None:
    mix, _ = inp.attempt_stats()
    p.png = plots.outcome_mix(mix)
    totals = mix.groupby("date")["n"].sum()
    reached = mix[mix["outcome"].isin(REACH_OUTCOMES)]["n"].sum()
    p.caption = (
        f"{len(totals)} days, {int(totals.sum()):,} attempts; "
        f"reach rate {reached / max(totals.sum(), 1):.1%}. "
        "Bars: share of each outcome per day (greens reached the person); line: attempts per day."
    )


def _normalise_reason(reason: Any) -> str:
    # Reasons may quote the offending value; group by the kind of problem, not by the value.
    text = re.sub(r"'[^']*'|\"[^\"]*\"", "…", str(reason or "unknown"))
    text = re.sub(r"\d+(\.\d+)?", "N", text)
    return text if len(text) <= 48 else text[:47] + "…"


def _panel_quarantine(inp: ReportInputs, p: Panel) -> None:
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
        raise MissingInput(f"nothing ingested in the {HISTORY_DAYS} days up to {inp.d}")
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
            f"{int(r.n_day):,} on {inp.d} ({r.rate_day:.2%}), "
            f"{int(r.n_window):,} in {HISTORY_DAYS} days ({r.rate_window:.2%})",
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
        return [(k, format_value(v)) for k, v in flatten(report).items()][:24]
    rows = []
    for kind, figures in kinds.items():
        if not isinstance(figures, dict):
            continue
        text = ", ".join(
            f"{k} {format_value(figures[k])}"
            for k in ("files", "read", "kept", "quarantined", "deduped")
            if k in figures
        )
        if figures.get("unreadable_files"):
            text += f"; unreadable: {format_value(figures['unreadable_files'])}"
        rows.append((f"ingest {kind}", text))
    if "quarantined_share" in report:
        share = f"{float(report['quarantined_share']):.2%}"
        if "threshold" in report:
            share += f" (threshold {float(report['threshold']):.0%})"
        if report.get("top_reason"):
            share += f", top reason {report['top_reason']}"
        rows.append(("ingest quarantined share", share))
    return rows


def _panel_reach_by_hour(inp: ReportInputs, p: Panel) -> None:
    _, by_hour = inp.attempt_stats()
    if by_hour.empty:
        raise MissingInput("no attempt with a local hour in the window")
    p.png = plots.reach_by_hour(by_hour, MIN_HOUR_ATTEMPTS)
    per_channel = by_hour.groupby("channel")[["n", "reached"]].sum()
    p.rows = [
        (str(ch), f"{int(r.n):,} attempts, reach {r.reached / max(r.n, 1):.1%}")
        for ch, r in per_channel.iterrows()
    ]
    p.caption = (
        f"Hollow markers off the lines: hours with fewer than {MIN_HOUR_ATTEMPTS} attempts of that channel."
    )


def _panel_calibration(inp: ReportInputs, p: Panel) -> None:
    newest, df = inp.labelled()
    label = inp.label_column()
    if label not in df.columns:
        raise MissingInput(f"training/date={newest} has no {label} column")
    scores = inp.labelled_scores()
    y = df[label].to_numpy(dtype="float64")
    p.png = plots.calibration(y, scores)
    info = inp.champion()[1]
    model_source = "published with this day" if info.get("source") == "published" else "champion"
    p.rows = [
        ("model", f"v{info['version']} ({model_source})"),
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


def _panel_gains(inp: ReportInputs, p: Panel) -> None:
    newest, df = inp.labelled()
    label = inp.label_column()
    if label not in df.columns:
        raise MissingInput(f"training/date={newest} has no {label} column")
    y = df[label].to_numpy(dtype="float64")
    if y.sum() == 0 or y.sum() == len(y):
        raise MissingInput(f"training/date={newest} has a single class: gains are undefined")
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


def _panel_scores(inp: ReportInputs, p: Panel) -> None:
    export, source = inp.export()
    if "score" not in export.columns:
        raise MissingInput(f"{source} has no score column")
    today = pd.to_numeric(export["score"], errors="coerce").dropna().to_numpy(dtype="float64")
    if not len(today):
        raise MissingInput(f"{source} has no scored row")
    window = None
    window_label = "training window"
    try:
        window = inp.window_scores()
        days, _ = inp.window()
        window_label = f"model v{inp.champion()[1]['version']} on training rows {days[0]}..{days[-1]}"
    except MissingInput as exc:
        p.caption = f"Training window not shown: {exc}. "
    p.png = plots.score_distribution(today, window, f"published {inp.d} ({len(today):,} rows)", window_label)
    p.rows = [("today: median / mean", f"{np.median(today):.3f} / {today.mean():.3f}")]
    if window is not None and len(window):
        p.rows.append(("window: median / mean", f"{np.median(window):.3f} / {window.mean():.3f}"))
        p.rows.append(("PSI today vs window", f"{psi(pd.Series(window), pd.Series(today)):.3f}"))
    p.caption += (
        "Today's scores are for each address at its best hour; "
        "the window's are for attempts at the hour they were made, so some shift is expected."
    )


def _panel_drift(inp: ReportInputs, p: Panel) -> None:
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
        raise MissingInput("no feature column shared by the newest day and the window")
    values = pd.Series({c: psi(window[c], today[c]) for c in features}).sort_values(ascending=False)
    threshold = inp.settings.drift_psi_threshold
    p.png = plots.drift(values.head(TOP_DRIFT), threshold)
    above = values[values >= threshold]
    p.caption = (
        f"training/date={newest} against {len(days)} day(s) {days[0]}..{days[-1]}; "
        f"{len(features)} features compared, {len(above)} at or above {threshold:g}. "
        f"Calendar features ({', '.join(sorted(CALENDAR_FEATURES))}) and "
        f"population rates ({DAY_LEVEL_PREFIX}*) are left out: they are constant within a day."
    )
    p.rows = [(name, f"{v:.3f}") for name, v in above.head(TOP_DRIFT).items()]


def _panel_exploration(inp: ReportInputs, p: Panel) -> None:
    export, source = inp.export()
    missing = [c for c in ("explore", "propensity", "rank", "person_id") if c not in export.columns]
    if missing:
        raise MissingInput(f"{source} has no {', '.join(missing)} column")
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


PANELS: tuple[tuple[str, str, PanelBuilder], ...] = (
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


def build_panel(key: str, title: str, builder: PanelBuilder, inp: ReportInputs) -> Panel:
    """Run one builder; a missing input or an unexpected error becomes the panel's notice."""
    p = Panel(key, title)
    try:
        builder(inp, p)
    except MissingInput as exc:
        return Panel(key, title, missing=str(exc))
    except Exception as exc:  # noqa: BLE001 - one broken chart must not cost the rest of the report
        log.warning("report %s: panel %s failed", inp.d, key, exc_info=True)
        return Panel(key, title, error=f"{type(exc).__name__}: {one_line(exc)}")
    return p
