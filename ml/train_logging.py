"""MLflow record of one training: the run (params, tags, metrics), datasets, model, artifacts, version.

The model is registered as a new version of ``settings.model_name`` carrying the alias
``challenger``; ``ml.registry.gate`` reads the tags written here to decide on ``champion``.
Metrics carry the grouped names of ``ml.train_metrics``. The registered model and every version
get a description a reader of the MLflow UI can act on (:func:`describe_version`).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import time
import warnings
from dataclasses import dataclass
from datetime import date
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
import pandas as pd
import sklearn
from mlflow.data.dataset_source_registry import resolve_dataset_source
from mlflow.data.meta_dataset import MetaDataset
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

from contactrank.features.sql import quote_literal
from contactrank.ml import evaluate as ev
from contactrank.ml import plots
from contactrank.ml.dataset import KIND, Window
from contactrank.ml.model import MODEL_CODE, ContactModel, save_model_files
from contactrank.ml.tracking import git_sha
from contactrank.ml.train_metrics import metric_name, mlflow_metrics
from contactrank.settings import Settings

TAG_DATE = "contactrank.date"
TAG_FINGERPRINT = "contactrank.fingerprint"
TAG_CONFIG = "contactrank.train_config"
TAG_TEST_DAY = "contactrank.test_day"
TAG_DRIFT_BLOCKED = "contactrank.drift.blocked"
TAG_DRIFT_REASON = "contactrank.drift.reason."
TAG_DECISION = "contactrank.gate.decision"
CHALLENGER = "challenger"
# run provenance: on the run only, the version links to its run
RUN_ONLY_TAGS = ("mlflow.source.git.commit", "git_sha")
MODEL_DESCRIPTION = (
    "Contact-success model of contactrank: LightGBM on the f_* features of docs/design.md, "
    "calibrated, scoring each (person, address, hour) for the daily priority export. "
    "Every training registers a version with the alias `challenger`; the gate moves `champion` "
    "(the version scoring uses) when the challenger passes every check. "
    "Each version's description says its window, its gate decision and where its report is."
)


@dataclass
class TrainingRun:
    """Everything one training produced that MLflow records."""

    day: date
    window: Window
    model: ContactModel
    params: dict[str, Any]
    config: str  # hash of the training configuration (the cadence compares it)
    tuned: bool
    calibration: dict[str, Any]
    test: ev.DayEvaluation
    drift: dict[str, Any]
    counts: dict[str, float]
    timings: dict[str, float]


def run_params(settings: Settings, run: TrainingRun) -> dict[str, Any]:
    window = run.window
    return {
        **{f"lgb_{k}": v for k, v in run.params.items()},
        "label": settings.label,
        "objective": settings.objective,
        "window_days": settings.train_window_days,
        "train_max_rows": settings.train_max_rows,
        "window_start": (window.train_days or window.valid_days)[0].isoformat(),
        "window_end": run.day.isoformat(),
        "train_days": f"{window.train_days[0]}..{window.train_days[-1]} ({len(window.train_days)})"
        if window.train_days
        else "",
        "valid_days": ",".join(x.isoformat() for x in window.valid_days),
        "test_day": window.test_day.isoformat(),
        "n_features": len(window.features),
        "calibration": run.calibration["method"],
        "tuned_params": run.tuned,
        "config_hash": settings.config_hash(),
    }


def run_tags(run: TrainingRun) -> dict[str, str]:
    """Tags of the run and of the registered version (the cadence and the gate read them)."""
    sha = git_sha()
    return {
        TAG_DATE: run.day.isoformat(),
        TAG_TEST_DAY: run.window.test_day.isoformat(),
        TAG_FINGERPRINT: run.window.fingerprint,
        TAG_CONFIG: run.config,
        "mlflow.source.git.commit": sha or "unknown",
        "git_sha": sha or "unknown",
        TAG_DRIFT_BLOCKED: str(run.drift["blocked"]).lower(),
        **{f"{TAG_DRIFT_REASON}{i:02d}": r[:250] for i, r in enumerate(run.drift["reasons"][:20])},
    }


def log_training_run(settings: Settings, client, run: TrainingRun, test_df: pd.DataFrame) -> tuple[str, str]:
    """One MLflow run with everything of ``run``; the model registered as challenger.

    Returns (run id, version) and adds ``mlflow_s`` to ``run.timings``.
    """
    started = time.perf_counter()
    tags = run_tags(run)
    with mlflow.start_run(run_name=f"train-{run.day.isoformat()}") as active:
        mlflow.set_tags(tags)
        mlflow.log_params(run_params(settings, run))
        log_datasets(settings, run.window)
        # The model first, then every metric in one batch linked to it: logging a model after
        # the metrics makes MLflow re-read each metric's history to link it (one query each).
        info = log_model(run.model, test_df, run.window.features)
        figures = {**run.test.metrics, **run.counts, **run.timings}
        mlflow.log_metrics(
            mlflow_metrics({k: v for k, v in figures.items() if np.isfinite(v)}), model_id=info.model_id
        )
        with tempfile.TemporaryDirectory() as tmp:
            write_artifacts(Path(tmp), run, test_df, with_plots=settings.train_plots)
            mlflow.log_artifacts(tmp, artifact_path="evaluation")
        version = register(client, settings, info, active.info.run_id, tags)
        run.timings["mlflow_s"] = time.perf_counter() - started
        mlflow.log_metric(metric_name("mlflow_s"), run.timings["mlflow_s"])
    return active.info.run_id, version


def log_datasets(settings: Settings, window: Window) -> None:
    """Each split as an MLflow dataset input whose digest is the fingerprint of its partitions."""
    root = (settings.lake / KIND).resolve().as_uri()
    for context, days in (
        ("training", window.train_days),
        ("validation", window.valid_days),
        ("test", [window.test_day]),
    ):
        if not days:
            continue
        joined = "".join(window.fingerprints[x.isoformat()] for x in days)
        fingerprint = hashlib.sha256(joined.encode()).hexdigest()
        with warnings.catch_warnings():  # two registered local sources match a file URI; either is right
            warnings.simplefilter("ignore", UserWarning)
            source = resolve_dataset_source(root)
        dataset = MetaDataset(source=source, name=f"training {days[0]}..{days[-1]}", digest=fingerprint[:32])
        mlflow.log_input(dataset, context=context)


def input_example(
    test_df: pd.DataFrame, features: list[str], categorical: dict[str, list[str]]
) -> pd.DataFrame:
    """A few rows of the test day with the model's f_* columns only (no ids), in serving dtypes."""
    example = test_df[features].head(5).copy()
    for c in features:
        if c in categorical:
            example[c] = example[c].astype("string").fillna("none").astype(object)
        else:
            example[c] = pd.to_numeric(example[c], errors="coerce").astype("float64")
    return example.reset_index(drop=True)


def log_model(model: ContactModel, test_df: pd.DataFrame, features: list[str]):
    """The model as an MLflow pyfunc with its signature, an id-free input example and pinned requirements."""
    example = input_example(test_df, features, model.categories)
    signature = infer_signature(example, model.predict_proba(example))
    requirements = [
        f"lightgbm=={lgb.__version__}",
        f"pandas=={pd.__version__}",
        f"numpy=={np.__version__}",
        f"scikit-learn=={sklearn.__version__}",
        f"mlflow=={mlflow.__version__}",
    ]
    # models from code: the model is a short code file plus the booster and contract as files,
    # so no pickled object is stored (and MLflow has nothing to warn about)
    with tempfile.TemporaryDirectory() as tmp:
        code = Path(tmp) / "contact_model.py"
        code.write_text(MODEL_CODE)
        artifacts = save_model_files(model, Path(tmp) / "files")
        return mlflow.pyfunc.log_model(
            name="model",
            python_model=str(code),
            artifacts=artifacts,
            signature=signature,
            input_example=example,
            pip_requirements=requirements,
        )


def register(client, settings: Settings, info, run_id: str, tags: dict[str, str]) -> str:
    """Register the logged model as a new version of ``settings.model_name`` with alias challenger.

    Through the client rather than ``mlflow.register_model``, which prints to stderr."""
    try:
        client.get_registered_model(settings.model_name)
    except MlflowException:
        try:
            client.create_registered_model(settings.model_name, description=MODEL_DESCRIPTION)
        except MlflowException:  # registered concurrently: it exists now
            pass
    version = client.create_model_version(
        settings.model_name,
        source=info.model_uri,
        run_id=run_id,
        tags={k: v for k, v in tags.items() if k not in RUN_ONLY_TAGS},
        model_id=info.model_id,
    )
    client.set_registered_model_alias(settings.model_name, CHALLENGER, version.version)
    describe_version(client, settings, version.version)
    return version.version


def _window_text(params: dict[str, str]) -> str:
    start, end = params.get("window_start", "?"), params.get("window_end", "?")
    return f"{start} to {end} (tested on {params.get('test_day', '?')})"


def describe_version(
    client, settings: Settings, version: str | int, decision: str | None = None, reasons=()
) -> str:
    """Write the description of one version (and of the registered model when it has none).

    Label, training window, feature count, the headline test figures, the gate decision with its
    reasons (``decision=None`` before the gate ran) and a link to the report of the training
    date. Called at registration and again by the gate once it decided; returns the text."""
    mv = client.get_model_version(settings.model_name, str(version))
    run = client.get_run(mv.run_id) if mv.run_id else None
    params = dict(run.data.params) if run is not None else {}
    metrics = dict(run.data.metrics) if run is not None else {}
    day = (mv.tags or {}).get(TAG_DATE) or params.get("window_end", "")
    lines = [
        f"**{params.get('label', settings.label)}** model trained for {day or '?'}.",
        f"- window: {_window_text(params)}",
        f"- features: {params.get('n_features', '?')}",
    ]
    labels = {"auc": "AUC", "ece": "ECE", "hit1": "hit@1", "baseline_heuristic_auc": "heuristic AUC"}
    figures = [(metric_name(k), label) for k, label in labels.items()]
    shown = [f"{label} {metrics[name]:.4f}" for name, label in figures if name in metrics]
    if shown:
        lines.append(f"- test day: {', '.join(shown)}")
    if decision is None:
        lines.append(f"- gate: not decided yet (alias `{CHALLENGER}`)")
    else:
        lines.append(f"- gate: **{decision}**")
        lines.extend(f"  - {r}" for r in reasons)
    if day:
        report = settings.exports / "reports" / f"date={day}" / "report.html"
        lines.append(f"- report: [{report.name} of {day}]({report.resolve().as_uri()})")
    text = "\n".join(lines)
    client.update_model_version(settings.model_name, str(mv.version), description=text)
    model = client.get_registered_model(settings.model_name)
    if not model.description:
        client.update_registered_model(settings.model_name, description=MODEL_DESCRIPTION)
    return text


def finish_interrupted(
    settings: Settings, client, experiment_id: str, versions: list | None = None
) -> list[str]:
    """Repair what a killed training left behind; return what was done (for the log).

    - A kill between registering the version and setting the alias leaves the newest version without
      any alias and never gated (the cadence would call its date "already trained"). Its model,
      metrics and artifacts were complete before registration, so it gets the ``challenger``
      alias now and its run is closed as FINISHED. Every other version keeps its aliases: only
      the newest one can be half registered, since trainings never overlap (home lock).
    - Runs of the experiment still ``RUNNING`` belong to killed processes (every training and
      tuning step runs under the home lock, which the caller holds): marked FAILED.

    ``versions``: every registered version, when the caller has listed them already.
    """
    done: list[str] = []
    if versions is None:
        newest = _newest_version(client, settings)
    else:  # the caller's listing of every registered version
        newest = max(versions, key=lambda v: int(v.version), default=None)
    tags = (newest.tags or {}) if newest is not None else {}
    if (
        newest is not None
        and not tags.get(TAG_DECISION)
        and newest.status == "READY"
        # a listing leaves ``aliases`` empty (MLflow 3's SQL store): only the version itself has them
        and not client.get_model_version(settings.model_name, newest.version).aliases
    ):
        client.set_registered_model_alias(settings.model_name, CHALLENGER, newest.version)
        if newest.run_id and client.get_run(newest.run_id).info.status == "RUNNING":
            client.set_terminated(newest.run_id, "FINISHED")
        done.append(f"version {newest.version} registered without its alias: now {CHALLENGER}")
    active = mlflow.active_run()
    own = active.info.run_id if active is not None else None
    for run in client.search_runs([experiment_id], filter_string="attributes.status = 'RUNNING'"):
        if run.info.run_id != own:
            client.set_terminated(run.info.run_id, "FAILED")
            done.append(f"run {run.info.run_id} ({run.info.run_name}) left RUNNING: marked FAILED")
    return done


def _newest_version(client, settings: Settings):
    try:
        versions = client.search_model_versions(f"name={quote_literal(settings.model_name)}")
    except MlflowException:  # no registered model yet
        return None
    return max(versions, key=lambda v: int(v.version), default=None)


def write_artifacts(out: Path, run: TrainingRun, test_df: pd.DataFrame, with_plots: bool = True) -> None:
    """The evaluation folder of the run: importance, SHAP, calibration, gains, confusion, inputs.

    ``with_plots=False`` (setting ``train_plots``) writes the tables and JSON files only."""
    model, test = run.model, run.test
    gain = pd.Series(
        model.booster.feature_importance(importance_type="gain"), index=model.features, name="gain"
    )
    gain.sort_values(ascending=False).to_frame().to_csv(out / "importance_gain.csv", index_label="feature")
    ev.reliability(test.y, test.p).to_csv(out / "reliability.csv", index=False)
    if with_plots:
        write_plots(out, run, test_df, gain)
    confusion = {"threshold": test.threshold, **test.confusion}
    (out / "confusion.json").write_text(json.dumps(confusion, indent=2))
    (out / "calibration.json").write_text(json.dumps(run.calibration, indent=2, default=float))
    (out / "fingerprints.json").write_text(json.dumps(run.window.fingerprints, indent=2))
    (out / "metrics.json").write_text(json.dumps(test.metrics, indent=2, default=float))
    (out / "params.json").write_text(json.dumps(run.params, indent=2, default=str))


def write_plots(out: Path, run: TrainingRun, test_df: pd.DataFrame, gain: pd.Series) -> None:
    """The PNG diagnostics of the evaluation folder (SHAP on at most 1,000 test rows)."""
    model, test = run.model, run.test
    plots.plot_importance(gain, out / "importance_gain.png")
    sample = test_df.sample(n=min(len(test_df), 1000), random_state=0) if len(test_df) else test_df
    if len(sample):
        plots.plot_shap_summary(model.contributions(sample), model.prepare(sample), out / "shap_summary.png")
    curves = {"model (calibrated)": test.p}
    if model.calibrator is not None and model.meta.get("objective") != "lambdarank":
        curves["model (raw)"] = test.raw
    plots.plot_calibration(test.y, curves, out / "calibration.png")
    plots.plot_gains(test.y, {"model": test.p, **test.baselines}, out / "lift_gain.png")
    plots.plot_confusion(test.confusion, test.threshold, out / "confusion.png")
