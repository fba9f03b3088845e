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

import logging
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import mlflow.pyfunc
import numpy as np
from mlflow.exceptions import MlflowException

from contactrank.errors import InputError, NotReady
from contactrank.lock import home_lock
from contactrank.ml import evaluate as ev
from contactrank.ml.dataset import label_column, labelled, read_day
from contactrank.ml.tracking import client as mlflow_client
from contactrank.ml.tracking import configure
from contactrank.ml.train_logging import (
    CHALLENGER,
    TAG_DECISION,
    TAG_DRIFT_BLOCKED,
    TAG_DRIFT_REASON,
    TAG_TEST_DAY,
)
from contactrank.settings import Settings

log = logging.getLogger(__name__)

CHAMPION = "champion"
TAG_REASON = "contactrank.gate.reason."
# set by ``promote`` on the version it moves the champion away from: a manual rollback
TAG_ROLLED_BACK = "contactrank.rolled_back"


@dataclass
class Scorecard:
    """What the gate compares: overall AUC, ECE, and AUC per channel slice."""

    auc: float
    ece: float
    channels: dict[str, float] = field(default_factory=dict)


def decide(settings: Settings, challenger: Scorecard, champion: Scorecard | None) -> tuple[bool, list[str]]:
    """Apply the gate's rules; return (promote?, every reason, each prefixed ``ok:`` or ``fail:``).

    Floors (always): AUC >= ``gate_auc_floor`` and ECE <= ``gate_ece_cap``. Against a champion
    (not for the first model): AUC not below the champion's by more than ``gate_auc_margin``,
    and no channel slice losing more than ``gate_slice_drop`` AUC.
    """
    reasons: list[str] = []

    def check(ok: bool, text: str) -> None:
        reasons.append(("ok: " if ok else "fail: ") + text)

    auc_ok = bool(np.isfinite(challenger.auc)) and challenger.auc >= settings.gate_auc_floor
    check(auc_ok, f"auc {challenger.auc:.4f} vs floor {settings.gate_auc_floor:.4f}")
    ece_ok = bool(np.isfinite(challenger.ece)) and challenger.ece <= settings.gate_ece_cap
    check(ece_ok, f"ece {challenger.ece:.4f} vs cap {settings.gate_ece_cap:.4f}")
    if champion is None:
        reasons.append("ok: first model, floors only")
    else:
        need = champion.auc - settings.gate_auc_margin
        check(
            challenger.auc >= need,
            f"auc {challenger.auc:.4f} vs champion {champion.auc:.4f}"
            f" (margin {settings.gate_auc_margin:.4f})",
        )
        for ch in sorted(set(challenger.channels) & set(champion.channels)):
            a, b = challenger.channels[ch], champion.channels[ch]
            check(
                a >= b - settings.gate_slice_drop,
                f"slice {ch}: auc {a:.4f} vs champion {b:.4f} (max drop {settings.gate_slice_drop:.4f})",
            )
    return all(r.startswith("ok:") for r in reasons), reasons


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
    """The ContactModel of one registered version (loaded through its MLflow pyfunc)."""
    configure(settings)
    pyfunc = mlflow.pyfunc.load_model(f"models:/{settings.model_name}/{version}")
    return pyfunc.unwrap_python_model().model


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


def _scorecard(settings: Settings, model, df, label: str) -> Scorecard:
    y = df[label].astype(int).to_numpy()
    p = model.predict_proba(df, num_threads=settings.num_threads)
    m = ev.binary_metrics(y, p)
    return Scorecard(
        auc=m["auc"], ece=m["ece"], channels=ev.channel_auc(y, p, df["channel"].astype(str).to_numpy())
    )


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
            "test_day": tags.get("contactrank.gate.test_day"),
            "reasons": _recorded_reasons(tags),
            "finished_interrupted": True,
        }
    return None


def gate(settings: Settings, d: date) -> dict[str, Any]:
    """Challenger vs champion on the challenger's test day; promote when every rule passes."""
    with home_lock(settings, f"gate {d.isoformat()}"):
        return _gate(settings, d)


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
    label = label_column(settings)
    df = labelled(read_day(settings, test_day), label)
    ch_card = _scorecard(settings, load_version(settings, challenger.version), df, label)
    cp_card = None
    if champion is not None:
        cp_card = _scorecard(settings, load_version(settings, champion.version), df, label)
    promote_it, reasons = decide(settings, ch_card, cp_card)
    # drift guard: a challenger trained on a shifted newest day never replaces a champion; the
    # champion keeps scoring (the first model has nothing to protect, so it only gets the floors)
    ch_tags = challenger.tags or {}
    if champion is not None and ch_tags.get(TAG_DRIFT_BLOCKED) == "true":
        promote_it = False
        drift_reasons = [v for k, v in sorted(ch_tags.items()) if k.startswith(TAG_DRIFT_REASON)]
        reasons = [*reasons, *(f"fail: drift: {r}" for r in drift_reasons or ["drift above threshold"])]
    decision = "promoted" if promote_it else "rejected"
    _record(client, settings, challenger, champion, d, test_day, reasons, ch_card, cp_card, decision)
    log.info("gate %s: challenger v%s %s (%s)", d, challenger.version, decision, "; ".join(reasons))
    return {
        "status": decision,
        "decision": decision,
        "challenger": int(challenger.version),
        "champion": int(challenger.version)
        if promote_it
        else (int(champion.version) if champion is not None else None),
        "previous_champion": int(champion.version) if champion is not None else None,
        "test_day": test_day.isoformat(),
        "reasons": reasons,
        "challenger_auc": round(ch_card.auc, 6),
        "champion_auc": round(cp_card.auc, 6) if cp_card is not None else None,
    }


def _record(
    client,
    settings: Settings,
    challenger,
    champion,
    d: date,
    test_day: date,
    reasons: list[str],
    ch_card: Scorecard,
    cp_card: Scorecard | None,
    decision: str,
) -> None:
    """Reasons and figures first, then the alias (when promoted), then the decision, last."""
    _tag(
        client,
        settings,
        challenger,
        {
            "contactrank.gate.date": d.isoformat(),
            "contactrank.gate.test_day": test_day.isoformat(),
            "contactrank.gate.champion_version": str(champion.version) if champion is not None else "none",
            **{f"{TAG_REASON}{i:02d}": r for i, r in enumerate(reasons)},
        },
    )
    metrics = {"gate_challenger_auc": ch_card.auc, "gate_challenger_ece": ch_card.ece}
    if cp_card is not None:
        metrics["gate_champion_auc"] = cp_card.auc
        metrics["gate_champion_ece"] = cp_card.ece
    for k, v in metrics.items():
        if np.isfinite(v):
            client.log_metric(challenger.run_id, k, float(v))
    if decision == "promoted":
        client.set_registered_model_alias(settings.model_name, CHAMPION, challenger.version)
    _tag(client, settings, challenger, {TAG_DECISION: decision})


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
