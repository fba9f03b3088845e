"""Model registry: the promotion gate, manual promotion (rollback) and loading the champion.

Aliases of ``settings.model_name``: ``challenger`` (set by every training) and ``champion``
(the version scoring uses). The gate re-scores the champion on the challenger's test day so
both are judged on the same attempts, records the decision and every reason as tags on the
challenger's run and version, and moves ``champion`` only when every check passes.

Crash safety (a kill between two MLflow calls): the decision tag is written last, after the
``champion`` alias has moved, so a recorded "promoted" means the alias did move. A rerun
finishes what a kill left half done: reasons recorded and the alias moved but no decision (the
decision is recorded); a "promoted" decision whose alias is not on the version (the order of
earlier code) moves the alias, unless ``promote`` rolled the champion back from it since.
"""

from __future__ import annotations

import importlib.metadata
import logging
import threading
import time
from collections import OrderedDict
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import mlflow.artifacts
import mlflow.pyfunc
import numpy as np
import pandas as pd
from mlflow.entities import Metric
from mlflow.exceptions import MlflowException
from packaging.requirements import InvalidRequirement, Requirement

from contactrank.errors import InputError, NotReady
from contactrank.features.lake import partition_dates
from contactrank.lock import home_lock
from contactrank.ml import gate as gt
from contactrank.ml.dataset import KIND, labelled_days
from contactrank.ml.tracking import client as mlflow_client
from contactrank.ml.train_logging import (
    CHALLENGER,
    TAG_DATE,
    TAG_DECISION,
    TAG_DRIFT_BLOCKED,
    TAG_DRIFT_REASON,
    TAG_TEST_DAY,
    describe_version,
)
from contactrank.ml.train_metrics import metric_name
from contactrank.ml.training_sample import label_column
from contactrank.settings import Settings

log = logging.getLogger(__name__)

CHAMPION = "champion"
# The gate's tags on a challenger's run and version; the decision (``TAG_DECISION``) is written last.
TAG_REASON = "contactrank.gate.reason."
TAG_GATE_DATE = "contactrank.gate.date"
TAG_GATE_TEST_DAY = "contactrank.gate.test_day"
TAG_GATE_EVIDENCE_DAYS = "contactrank.gate.evidence_days"
TAG_GATE_CHAMPION = "contactrank.gate.champion_version"
# set by ``promote`` on the version it moves the champion away from: a manual rollback
TAG_ROLLED_BACK = "contactrank.rolled_back"
# Models loaded in this process, by (tracking URI, name, version, run id): a registered version's
# files never change, and a backfill gates and reports day after day in one process, loading the
# same champion each time. The run id tells a version apart from one of the same number trained
# after the model was deleted. A few entries: the challenger, the champion and the published.
_LOADED: OrderedDict[tuple[str, str, str, str], Any] = OrderedDict()
_LOADED_MAX = 4
_LOADED_LOCK = threading.Lock()


def champion_version(settings: Settings) -> int | None:
    """The version behind the ``champion`` alias (an alias lookup, no model load), or None."""
    mv = _alias(mlflow_client(settings), settings, CHAMPION)
    return int(mv.version) if mv is not None else None


def _alias(client, settings: Settings, alias: str):
    try:
        return client.get_model_version_by_alias(settings.model_name, alias)
    except MlflowException:
        return None


def load_version(settings: Settings, version: int | str):
    """The ContactModel of one registered version (loaded through its MLflow pyfunc, once per
    process: callers only read it).

    MLflow's own requirements check maps every installed distribution's files to modules on each
    load, seconds of CPU paid again by every score, report and gate task in its fresh process;
    the model pins a handful of packages by name, so only those are looked up."""
    # the client points MLflow at the store (``tracking.configure``), which the downloads below read
    run_id = mlflow_client(settings).get_model_version(settings.model_name, str(version)).run_id
    key = (settings.tracking_uri, settings.model_name, str(version), run_id)
    with _LOADED_LOCK:
        if key in _LOADED:
            _LOADED.move_to_end(key)
            return _LOADED[key]
    uri = f"models:/{settings.model_name}/{version}"
    pinned = Path(mlflow.artifacts.download_artifacts(artifact_uri=f"{uri}/requirements.txt"))
    mismatches = requirement_mismatches(pinned.read_text().splitlines())
    if mismatches:
        log.warning(
            "model version %s was logged with other package versions than this environment has: %s;"
            " its scores may differ from the ones it was gated on",
            version,
            ", ".join(mismatches),
        )
    pyfunc = mlflow.pyfunc.load_model(uri, suppress_warnings=True)
    model = pyfunc.unwrap_python_model().model
    with _LOADED_LOCK:
        _LOADED[key] = model
        while len(_LOADED) > _LOADED_MAX:
            _LOADED.popitem(last=False)
    return model


def requirement_mismatches(lines: list[str]) -> list[str]:
    """The pinned requirements (lines of a requirements file) this environment does not satisfy."""
    mismatches = []
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        try:
            requirement = Requirement(line)
        except InvalidRequirement:  # a path or URL: nothing to compare by name
            continue
        if requirement.marker is not None and not requirement.marker.evaluate():
            continue
        try:
            installed = importlib.metadata.version(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            mismatches.append(f"{requirement} (not installed)")
            continue
        if not requirement.specifier.contains(installed, prereleases=True):
            mismatches.append(f"{requirement} (installed {installed})")
    return mismatches


def load_champion(settings: Settings) -> tuple[Any, dict[str, Any]]:
    """(ContactModel, info with name, version, run_id) of the version behind alias ``champion``."""
    client = mlflow_client(settings)
    mv = _alias(client, settings, CHAMPION)
    if mv is None:
        raise NotReady(
            f"model {settings.model_name!r} has no {CHAMPION!r} version yet"
            " (train and gate first, or promote --version N)"
        )
    model = load_version(settings, mv.version)
    info = {
        "name": settings.model_name,
        "version": int(mv.version),
        "run_id": mv.run_id,
        "uri": f"models:/{settings.model_name}/{mv.version}",
    }
    return model, info


def _tag(client, settings: Settings, mv, tags: dict[str, str]) -> None:
    """Tags on the version's run and on the version itself."""
    for k, v in tags.items():
        client.set_tag(mv.run_id, k, v)
        client.set_model_version_tag(settings.model_name, mv.version, k, v)


def _recorded_reasons(tags: dict[str, str]) -> list[str]:
    return [v for k, v in sorted(tags.items()) if k.startswith(TAG_REASON)]


def _finish_interrupted(client, settings: Settings, challenger, champion) -> dict[str, Any] | None:
    """The result of finishing a gate a kill left half done, or None when there is none."""
    tags = challenger.tags or {}
    decided = tags.get(TAG_DECISION)
    is_champion = champion is not None and champion.version == challenger.version
    if is_champion and not decided and _recorded_reasons(tags):
        # killed after moving the alias, before recording the decision
        _tag(client, settings, challenger, {TAG_DECISION: "promoted"})
        log.warning("gate: challenger v%s is champion; recorded its decision", challenger.version)
        return {
            "status": "skipped",
            "reason": f"challenger v{challenger.version} is champion: recorded its decision promoted",
        }
    newer = champion is None or int(challenger.version) > int(champion.version)
    if decided == "promoted" and newer and tags.get(TAG_ROLLED_BACK) is None:
        # decided, but the champion alias never moved
        client.set_registered_model_alias(settings.model_name, CHAMPION, challenger.version)
        log.warning("gate: finished the promotion of challenger v%s", challenger.version)
        return {
            "status": "promoted",
            "decision": "promoted",
            "challenger": int(challenger.version),
            "champion": int(challenger.version),
            "previous_champion": int(champion.version) if champion is not None else None,
            "test_day": tags.get(TAG_GATE_TEST_DAY),
            "reasons": _recorded_reasons(tags),
            "finished_interrupted": True,
        }
    return None


def gate(settings: Settings, d: date) -> dict[str, Any]:
    """Challenger vs champion on the challenger's test day; promote when every rule passes."""
    with home_lock(settings, f"gate {d.isoformat()}"):
        return _gate(settings, d)


def _fit_end(client, run_id: str | None) -> date | None:
    """The newest day a version trained or validated on (its run's ``valid_days`` parameter)."""
    if not run_id:
        return None
    try:
        valid = client.get_run(run_id).data.params.get("valid_days", "")
    except MlflowException:
        return None
    days = [date.fromisoformat(x) for x in valid.split(",") if x]
    return max(days) if days else None


def evidence_days(settings: Settings, client, challenger, champion) -> list[date]:
    """The labelled days after everything either model fitted on, up to the challenger's test day."""
    test_day = date.fromisoformat(challenger.tags[TAG_TEST_DAY])
    seen = [
        x
        for x in (_fit_end(client, challenger.run_id), _fit_end(client, getattr(champion, "run_id", None)))
        if x
    ]
    after = max(seen) if seen else test_day - timedelta(days=1)
    start = max(after + timedelta(days=1), test_day - timedelta(days=settings.gate_window_days - 1))
    return [x for x in partition_dates(settings, KIND) if start <= x <= test_day]


def _evidence(settings: Settings, client, challenger, champion) -> tuple[gt.Evidence, list[date]]:
    days = evidence_days(settings, client, challenger, champion)
    label = label_column(settings)
    frames = [df for _, df in labelled_days(settings, days, label)]
    df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
    span = f"{days[0]}..{days[-1]} ({len(days)} days)" if days else "no days"
    if not len(df):
        return gt.Evidence(0, 0, span, gt.Scorecard(float("nan"), float("nan"))), days
    y = df[label].astype(int).to_numpy()
    channels = df["channel"].astype(str).to_numpy() if "channel" in df else np.full(len(df), "all")
    nt = settings.num_threads
    p_ch = load_version(settings, challenger.version).predict_proba(df, num_threads=nt)
    p_cp = None
    if champion is not None:
        p_cp = load_version(settings, champion.version).predict_proba(df, num_threads=nt)
    return gt.compare(settings, y, p_ch, p_cp, channels, span), days


def _champion_age(settings: Settings, champion, d: date) -> int | None:
    trained = (champion.tags or {}).get(TAG_DATE) if champion is not None else None
    return (d - date.fromisoformat(trained)).days if trained else None


def _gate(settings: Settings, d: date) -> dict[str, Any]:
    client = mlflow_client(settings)
    challenger = _alias(client, settings, CHALLENGER)
    champion = _alias(client, settings, CHAMPION)
    if challenger is None:
        return {"status": "skipped", "reason": "no challenger registered"}
    finished = _finish_interrupted(client, settings, challenger, champion)
    if finished is not None:
        return finished
    if champion is not None and int(challenger.version) <= int(champion.version):
        return {
            "status": "skipped",
            "reason": "no challenger newer than the champion"
            f" (champion v{champion.version}, challenger v{challenger.version})",
        }
    done = (challenger.tags or {}).get(TAG_DECISION)
    if done:
        return {"status": "skipped", "reason": f"challenger v{challenger.version} already gated: {done}"}

    test_day = date.fromisoformat(challenger.tags[TAG_TEST_DAY])
    evidence, _ = _evidence(settings, client, challenger, champion)
    ch_tags = challenger.tags or {}
    drift_reasons = []
    if ch_tags.get(TAG_DRIFT_BLOCKED) == "true":
        drift_reasons = [v for k, v in sorted(ch_tags.items()) if k.startswith(TAG_DRIFT_REASON)]
        drift_reasons = drift_reasons or ["shift above threshold"]
    decision, reasons = gt.decide(settings, evidence, drift_reasons, _champion_age(settings, champion, d))
    _record(client, settings, challenger, champion, d, test_day, reasons, evidence, decision)
    log.info("gate %s: challenger v%s %s (%s)", d, challenger.version, decision, "; ".join(reasons))
    promoted = decision == gt.PROMOTED
    cp = evidence.champion
    return {
        "status": decision,
        "decision": decision,
        "challenger": int(challenger.version),
        "champion": int(challenger.version)
        if promoted
        else (int(champion.version) if champion is not None else None),
        "previous_champion": int(champion.version) if champion is not None else None,
        "test_day": test_day.isoformat(),
        "evidence": {"days": evidence.days, "rows": evidence.rows, "positives": evidence.positives},
        "reasons": reasons,
        "challenger_auc": round(evidence.challenger.auc, 6),
        "champion_auc": round(cp.auc, 6) if cp is not None else None,
        "auc_diff_interval": [round(evidence.auc_lo, 6), round(evidence.auc_hi, 6)]
        if cp is not None
        else None,
    }


def _gate_metrics(evidence: gt.Evidence) -> dict[str, float]:
    out = {"gate_rows": float(evidence.rows), "gate_positives": float(evidence.positives)}
    for who, card in (("challenger", evidence.challenger), ("champion", evidence.champion)):
        if card is not None:
            for k in ("auc", "ece", "log_loss", "brier"):
                out[f"gate_{who}_{k}"] = getattr(card, k)
    if evidence.champion is not None:
        out |= {"gate_auc_diff": evidence.auc_diff, "gate_auc_diff_lo": evidence.auc_lo}
        out["gate_auc_diff_hi"] = evidence.auc_hi
        for name in ("log_loss", "brier"):
            diff = getattr(evidence, f"{name}_diff")
            keys = (f"gate_{name}_diff", f"gate_{name}_diff_lo", f"gate_{name}_diff_hi")
            out |= dict(zip(keys, diff, strict=True))
    return out


def _record(
    client,
    settings: Settings,
    challenger,
    champion,
    d: date,
    test_day: date,
    reasons: list[str],
    evidence: gt.Evidence,
    decision: str,
) -> None:
    """Reasons and figures first, then the alias (when promoted), then the decision, last."""
    _tag(
        client,
        settings,
        challenger,
        {
            TAG_GATE_DATE: d.isoformat(),
            TAG_GATE_TEST_DAY: test_day.isoformat(),
            TAG_GATE_EVIDENCE_DAYS: evidence.days,
            TAG_GATE_CHAMPION: str(champion.version) if champion is not None else "none",
            **{f"{TAG_REASON}{i:02d}": r[:5000] for i, r in enumerate(reasons)},
        },
    )
    metrics = {k: float(v) for k, v in _gate_metrics(evidence).items() if np.isfinite(v)}
    if metrics:
        client.log_batch(
            challenger.run_id,
            metrics=[Metric(metric_name(k), v, int(time.time() * 1000), 0) for k, v in metrics.items()],
        )
    if decision == gt.PROMOTED:
        client.set_registered_model_alias(settings.model_name, CHAMPION, challenger.version)
    _tag(client, settings, challenger, {TAG_DECISION: decision})
    describe_version(client, settings, challenger.version, decision, reasons)


def promote(settings: Settings, version: int) -> dict[str, Any]:
    """Point ``champion`` at ``version`` (any registered version: this is also the rollback)."""
    client = mlflow_client(settings)
    try:
        mv = client.get_model_version(settings.model_name, str(int(version)))
    except MlflowException:
        raise InputError(f"model {settings.model_name!r} has no version {version}") from None
    previous = _alias(client, settings, CHAMPION)
    if previous is not None and previous.version != mv.version:
        # so that the gate never re-promotes it as an unfinished promotion
        client.set_model_version_tag(settings.model_name, previous.version, TAG_ROLLED_BACK, "manual")
    client.set_registered_model_alias(settings.model_name, CHAMPION, mv.version)
    client.set_model_version_tag(settings.model_name, mv.version, "contactrank.promoted", "manual")
    log.info("champion -> v%s (was %s)", mv.version, previous.version if previous else "none")
    return {
        "status": "promoted",
        "version": int(mv.version),
        "previous": int(previous.version) if previous is not None else None,
        "run_id": mv.run_id,
    }
