"""The daily report: one self-contained HTML page about the data, the model and the export of D.

``report(settings, d)`` writes ``<exports>/reports/date=D/report.html`` (charts embedded as
base64 PNG, so the file can be mailed or opened from anywhere) and ``panels.json`` (what each
panel showed, or why it could not), as one atomic directory, then logs the page to the MLflow
run of the day when there is one.

Every panel is built independently from what exists on disk. A missing input (no model yet, no
export, no simulated truth, a single labelled day) gives a panel that says so; an unexpected
error inside one panel is logged and shown in that panel. The report never fails the run.

The inputs live in ``report_inputs``, the panels in ``report_panels``, the page in ``report_html``;
this module assembles them, writes the files and holds the page's header.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, date, datetime
from pathlib import Path

from mlflow.tracking import MlflowClient

from contactrank import storage
from contactrank.errors import ContactrankError
from contactrank.features import lake
from contactrank.ml.registry import TAG_GATE_CHAMPION, TAG_REASON
from contactrank.ml.report_html import format_value, render_html
from contactrank.ml.report_inputs import (
    MissingInput,
    ReportInputs,
    one_line,
)
from contactrank.ml.report_panels import PANELS, build_panel
from contactrank.ml.train_logging import TAG_DECISION
from contactrank.settings import Settings

log = logging.getLogger(__name__)

REPORT_FILE = "report.html"
PANELS_FILE = "panels.json"


def report(settings: Settings, d: date) -> storage.Location:
    """Write the report of ``d`` atomically and log it to the MLflow run of the day; returns its path."""
    inp = ReportInputs(settings, d)
    panels, seconds = [], {}
    for key, title, builder in PANELS:
        started = time.perf_counter()
        panels.append(build_panel(key, title, builder, inp))
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
    path = storage.committed(target) / REPORT_FILE
    with storage.local_copy(storage.committed(target)) as local:  # MLflow logs a local file
        _log_to_mlflow(inp, local / REPORT_FILE)
    missing = [p.key for p in panels if p.status != "ok"]
    log.info("report %s: %s (%d panels, not drawn: %s)", d, path, len(panels), ", ".join(missing) or "none")
    return path


def _log_to_mlflow(inp: ReportInputs, path: Path) -> None:
    try:
        run = inp.runs().of_day
        if run is None:
            return
        MlflowClient().log_artifact(
            run.info.run_id, str(path), artifact_path=f"report/date={inp.d.isoformat()}"
        )
    except ContactrankError as exc:
        log.warning("report %s not logged to MLflow: %s", inp.d, exc)
    except Exception as exc:  # noqa: BLE001 - the page is written; a tracking hiccup must not fail the run
        log.warning("report %s not logged to MLflow: %s: %s", inp.d, type(exc).__name__, one_line(exc))


# --------------------------------------------------------------------------------------------
# header


def _header(inp: ReportInputs) -> list[tuple[str, str]]:
    """The page's summary rows: date, model version, gate decision, rows published and left out."""
    manifest = inp.manifest() or {}
    rows = [("Date", inp.d.isoformat())]
    version = (manifest.get("model") or {}).get("version")
    if version is None:
        try:
            export, _ = inp.export()
            if "model_version" in export.columns and len(export):
                version = ", ".join(sorted(export["model_version"].dropna().astype(str).unique())[:3]) or None
        except MissingInput:
            pass
    if version is None:
        try:
            version = f"{inp.champion()[1].get('version')} (champion; nothing published)"
        except MissingInput:
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
        text = "persons: " + ", ".join(f"{k} {format_value(v)}" for k, v in persons.items())
        text += "; addresses: " + ", ".join(f"{k} {format_value(v)}" for k, v in addresses.items())
        rows.append(("Left out by caps and suppressions", text))
    else:
        rows.append(("Left out by caps and suppressions", "not reported (no export manifest)"))
    return rows


def _gate_text(inp: ReportInputs) -> str:
    """The gate's decision on D in one line, with the failed checks when it refused."""
    try:
        runs = inp.runs()
    except Exception as exc:  # noqa: BLE001 - the header degrades to the reason
        return f"unknown: MLflow could not be read ({one_line(exc)})"
    run = runs.gated
    if run is None:
        if runs.trained is not None:
            return f"not gated yet (run {runs.trained.info.run_name or runs.trained.info.run_id[:8]})"
        return "no training or gate on this day"
    tags = run.data.tags
    decision = tags.get(TAG_DECISION, "unknown")
    reasons = [v for k, v in sorted(tags.items()) if k.startswith(TAG_REASON)]
    failed = [r.removeprefix("fail: ") for r in reasons if r.startswith("fail:")]
    held = [r.removeprefix("hold: ") for r in reasons if r.startswith("hold:")]
    champion_version = tags.get(TAG_GATE_CHAMPION, "none")
    text = f"{decision} (run {run.info.run_name or run.info.run_id[:8]}, against champion {champion_version})"
    if failed:
        text += " — failed: " + "; ".join(failed)
    elif held:  # not enough evidence either way: the champion stays, and the page says why
        text += " — held: " + "; ".join(held)
    elif reasons:  # the AUC against the floor and the champion: the intervals the decision rests on
        aucs = [r.removeprefix("ok: ") for r in reasons if r.startswith("ok: auc ")]
        text += f" — all {len(reasons)} checks passed" + "".join(f"; {a}" for a in aucs)
    return text
