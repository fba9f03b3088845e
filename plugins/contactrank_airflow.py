"""What the contactrank DAGs share: Asset definitions, the business date of a run, defaults, callbacks.

Airflow puts the plugins folder on ``sys.path``, so a DAG file does ``from contactrank_airflow import ...``.
This module imports nothing but ``airflow.sdk`` and the standard library: it is loaded while every DAG
file is parsed, so the heavy libraries (pandas, LightGBM, MLflow, DuckDB) are imported inside task
bodies only. The library (the ``contactrank`` package) never imports this module or Airflow.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from airflow.sdk import Asset

log = logging.getLogger("contactrank.airflow")

# --- Assets: a downstream DAG schedules on these (``schedule=[EXPORT_ASSET]``) --------------------------
# The URIs name the location inside CONTACTRANK_HOME, not a host: every worker mounts the same volume.
FEATURES_ASSET = Asset(
    name="contactrank_features", uri="file:///contactrank/lake/features", group="contactrank"
)
EXPORT_ASSET = Asset(
    name="contactrank_export", uri="file:///contactrank/exports/priority", group="contactrank"
)

# XCom key under which tasks store what the plugin's extra links need (see contactrank_links.py).
LINKS_XCOM_KEY = "contactrank_links"

OWNER = "contactrank"

_SCALARS = (str, int, float, bool, type(None))
_MAX_TEXT = 500
_MAX_ITEMS = 20


def on_failure(context: dict[str, Any]) -> None:
    """Failure callback: one ERROR line naming the DAG, task, business date, try and the reason."""
    _log_state(context, "FAILED", logging.ERROR)


def on_retry(context: dict[str, Any]) -> None:
    """Retry callback: one WARNING line, so a flaky step is visible before it fails for good."""
    _log_state(context, "will retry", logging.WARNING)


def _log_state(context: dict[str, Any], what: str, level: int) -> None:
    ti = context.get("ti") or context.get("task_instance")
    try:
        d = business_date(context).isoformat()
    except Exception:  # the callback must never raise: the date itself may be what failed
        d = "?"
    err = context.get("exception")
    reason = " ".join(str(err).split())[:_MAX_TEXT] if err is not None else "no exception recorded"
    log.log(
        level,
        "contactrank %s.%s %s for business date %s (run %s, try %s): %s: %s",
        getattr(ti, "dag_id", "?"),
        getattr(ti, "task_id", "?"),
        what,
        d,
        getattr(ti, "run_id", "?"),
        getattr(ti, "try_number", "?"),
        type(err).__name__ if err is not None else "Error",
        reason,
    )


def default_args(retries: int = 2, retry_delay: timedelta | None = None) -> dict[str, Any]:
    """Task defaults of every contactrank DAG: retries with exponential backoff and logging callbacks.

    Without ``retry_delay`` the first delay is Airflow's ``[core] default_task_retry_delay`` (300 s),
    so a deployment (or a test, with ``AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY=1``) tunes it without
    touching the DAGs; each next delay doubles, capped at 30 minutes.
    """
    args: dict[str, Any] = {
        "owner": OWNER,
        "retries": retries,
        "retry_exponential_backoff": 2.0,
        "max_retry_delay": timedelta(minutes=30),
        "on_failure_callback": on_failure,
        "on_retry_callback": on_retry,
    }
    if retry_delay is not None:
        args["retry_delay"] = retry_delay
    return args


def business_date(context: dict[str, Any]) -> date:
    """The business date a run processes, derived explicitly.

    1. the ``date`` param when given (``YYYY-MM-DD``): re-run or repair one date by hand;
    2. else the logical date (UTC): scheduled daily runs, backfills and ``airflow dags test DAG DATE``;
       with the data-interval timetable the run for day D has logical date D and starts once D is over;
    3. else (Airflow 3 manual or asset-triggered runs have no logical date) the day before ``run_after``:
       the last day that is complete when the run was queued, the same day a scheduled run at that
       moment would process.
    """
    from contactrank.dates import parse_date  # stdlib only: cheap, and keeps one date validator

    params = context.get("params") or {}
    if params.get("date"):
        return parse_date(str(params["date"]))
    logical = context.get("logical_date")
    if logical is not None:
        return _utc(logical).date()
    dag_run = context["dag_run"]
    return (_utc(dag_run.run_after) - timedelta(days=1)).date()


def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def load_settings(context: dict[str, Any] | None = None):
    """contactrank Settings from the environment (CONTACTRANK_HOME ...), with the run's ``landing`` param."""
    from contactrank.settings import load_settings as _load

    params = (context or {}).get("params") or {}
    landing = params.get("landing") or None
    return _load(landing_dir=landing) if landing else _load()


def small(result: Any) -> dict[str, Any]:
    """Only the small figures of a stage result go to XCom.

    Scalars pass (paths become strings, long text is cut); a nested dict of at most 20 scalars is
    flattened one level (``{"model": {"version": 3}}`` -> ``model_version``); a short list of scalars
    passes; frames, arrays, big dicts and anything larger are left out (they live in the lake and in
    MLflow).
    """
    if isinstance(result, os.PathLike):
        return {"path": os.fspath(result)}
    if not isinstance(result, dict):
        return {"result": _scalar(result)}
    out: dict[str, Any] = {}
    for key, value in result.items():
        if isinstance(value, dict):
            if len(value) > _MAX_ITEMS:  # e.g. every metric by slice: that is MLflow's job
                continue
            for sub, inner in value.items():
                if _is_small(inner) and not isinstance(inner, list | tuple):
                    out[f"{key}_{sub}"] = _scalar(inner)
        elif _is_small(value):
            out[str(key)] = [_scalar(v) for v in value] if isinstance(value, list | tuple) else _scalar(value)
    return out


def _is_small(value: Any) -> bool:
    if isinstance(value, (os.PathLike, *_SCALARS)):
        return True
    return (
        isinstance(value, list | tuple)
        and len(value) <= _MAX_ITEMS
        and all(isinstance(v, _SCALARS) for v in value)
    )


def _scalar(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    if isinstance(value, str) and len(value) > _MAX_TEXT:
        return value[:_MAX_TEXT] + "..."
    if not isinstance(value, _SCALARS):
        return str(value)[:_MAX_TEXT]
    return value


def run_stage(context: dict[str, Any], name: str) -> dict[str, Any]:
    """The body of a daily task: one library call, the stage ``name`` of ``contactrank.stages``, for
    the run's settings and business date; returns ``ds`` and the small figures of the result."""
    from contactrank.pipeline import run_step

    settings = load_settings(context)
    d = business_date(context)
    landing = settings.landing if name == "ingest" else None
    return {"ds": d.isoformat(), **small(run_step(name, settings, d, landing))}


def run_stage_part(context: dict[str, Any], name: str, part: str, shard: int | None = None) -> dict[str, Any]:
    """The body of one task of a stage split by shards (``contactrank.stages.Part``): one library
    call, ``run_part``; ``shard`` is the map index of a per-shard task."""
    from contactrank.pipeline import run_part

    d = business_date(context)
    return {"ds": d.isoformat(), **small(run_part(name, part, load_settings(context), d, shard))}


def shard_numbers(context: dict[str, Any]) -> list[int]:
    """What the per-shard tasks are mapped over: 0..shards-1 of the run's settings."""
    return list(range(load_settings(context).shards))


def features_facts(context: dict[str, Any], built: dict[str, Any]) -> dict[str, Any]:
    """Event extra of the features asset: the day, its rows and the model that will score them."""
    from contactrank.ml.registry import champion_version

    version = champion_version(load_settings(context))
    return {
        "ds": built["ds"],
        "rows": built.get("rows"),
        "model_version": str(version) if version is not None else None,
    }


def attempts_ready(landing: Path, d: date) -> list[str]:
    """The data files of ``<landing>/attempts/date=D/`` (hidden and temporary files do not count)."""
    folder = Path(landing) / "attempts" / f"date={d.isoformat()}"
    if not folder.is_dir():
        return []
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith((".", "_")) and p.suffix.lower() in {".csv", ".parquet"}
    )


def push_links(context: dict[str, Any], **info: Any) -> None:
    """Store what the extra links point at (MLflow run id, model version, export directory)."""
    info = {k: v for k, v in info.items() if v not in (None, "")}
    if info:
        context["ti"].xcom_push(key=LINKS_XCOM_KEY, value=small(info))


def export_facts(settings: Any, d: date, published: dict[str, Any]) -> dict[str, Any]:
    """``ds``, ``model_version``, ``rows`` and ``path`` of the export of D, for the asset event extra.

    The manifest written by publish is the source of truth (docs/contract.md section 2); the
    publish result fills in what the manifest does not name.
    """
    import json

    from contactrank.ml.publish import export_dir  # the library, loaded with the task that needs it

    path = export_dir(settings, d)
    manifest: dict[str, Any] = {}
    try:
        manifest = json.loads((path / "_manifest.json").read_text())
    except (OSError, ValueError):
        log.warning("export manifest %s is missing or unreadable", path / "_manifest.json")
    model = manifest.get("model") if isinstance(manifest.get("model"), dict) else {}
    version = model.get("version") or published.get("model_version")
    rows = manifest.get("rows", published.get("rows"))
    return {
        "ds": d.isoformat(),
        "model_version": None if version is None else str(version),
        "rows": rows if isinstance(rows, int) else None,
        "path": str(path.resolve()),
    }


START_DATE_ENV = "CONTACTRANK_AIRFLOW_START_DATE"
DEFAULT_START_DATE = "2026-01-01"


def start_date() -> datetime:
    """First business date the daily schedule owns: ``$CONTACTRANK_AIRFLOW_START_DATE`` or 2026-01-01.

    With catchup on, unpausing ``contact_daily`` creates a run for every day from here on; a
    deployment sets it to the first day it has landing data for. Read at parse time (an environment
    variable costs nothing, unlike an Airflow Variable, which would hit the database on every parse).
    """
    text = os.environ.get(START_DATE_ENV) or DEFAULT_START_DATE
    try:
        d = date.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{START_DATE_ENV}={text!r} is not a date (YYYY-MM-DD)") from None
    return datetime(d.year, d.month, d.day, tzinfo=UTC)
