"""MLflow setup: tracking URI, experiment with an explicit artifact location, run provenance.

Nothing is configured at import; every function configures MLflow when called.

MLflow stores artifact locations as absolute URIs (the experiment's, every run's, every logged
model's), and has no setting to make them relative. A home copied elsewhere (``cp -a``) would go
on reading and writing the old home's ``mlartifacts``, or fail once the old home is gone. So when
the store is the home's own SQLite file and its experiment points at ``<another home>/mlartifacts``,
``configure`` rewrites those URIs to the current home's ``mlartifacts`` (once: afterwards they
match). A tracking server keeps its artifacts itself and is left alone.

The experiment carries the tag ``mlflow.experimentKind = custom_model_development``: without it
the MLflow 3 UI guesses the kind and may open the experiment on its GenAI pages (traces, token
usage) instead of the training runs. Experiments created before get the tag at the next configure.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import subprocess
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from contactrank.settings import Settings

log = logging.getLogger(__name__)

SQLITE_PREFIX = "sqlite:///"
ARTIFACTS_DIR = "mlartifacts"
# the value the MLflow UI reads to show an experiment as machine-learning model training
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
EXPERIMENT_KIND = "custom_model_development"
EXPERIMENT_NOTE_TAG = "mlflow.note.content"  # the description the UI shows on the experiment page
EXPERIMENT_NOTE = (
    "Daily trainings of the contactrank contact-success model (one run per training: "
    "parameters, grouped metrics, evaluation plots, the model). Tuning studies run here too."
)
# every column of the MLflow SQL store that holds an artifact URI under the experiment's location
_ARTIFACT_COLUMNS = (
    ("experiments", "artifact_location"),
    ("runs", "artifact_uri"),
    ("logged_models", "artifact_location"),
    ("model_versions", "storage_location"),
    ("model_versions", "source"),
)


def configure(settings: Settings) -> str:
    """Point MLflow at ``settings.tracking_uri`` and the experiment; return the experiment id.

    The experiment is created with ``settings.artifact_location`` so artifacts never land in a
    ``./mlruns`` relative to the working directory (the default with a ``sqlite://`` store).
    """
    uri = settings.tracking_uri
    if uri.startswith(SQLITE_PREFIX):
        Path(uri[len(SQLITE_PREFIX) :]).parent.mkdir(parents=True, exist_ok=True)
    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(uri)
    # MLflow also writes the URI into MLFLOW_TRACKING_URI, which Settings reads as the user's own
    # choice: left there, a second home in this process would use this home's store.
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before
    # The registry follows the tracking store unless MLFLOW_REGISTRY_URI says otherwise.
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(settings.experiment_name)
    if exp is None:
        try:
            exp_id = client.create_experiment(
                settings.experiment_name,
                artifact_location=settings.artifact_location,
                tags={EXPERIMENT_KIND_TAG: EXPERIMENT_KIND, EXPERIMENT_NOTE_TAG: EXPERIMENT_NOTE},
            )
        except Exception:  # created concurrently by another process: read it back
            exp = client.get_experiment_by_name(settings.experiment_name)
            if exp is None:
                raise
            exp_id = exp.experiment_id
    else:
        exp_id = exp.experiment_id
        if exp.artifact_location != settings.artifact_location:
            relocate_artifacts(settings, exp.artifact_location)
    if exp is not None:
        mark_model_training(client, exp)
    mlflow.set_experiment(experiment_id=exp_id)
    return str(exp_id)


def experiment_url(base_url: str, experiment_id: str) -> str:
    """The address of the experiment's runs in the MLflow UI, in its model-training view.

    The MLflow 3 UI picks GenAI or model training with a switch of its own (remembered by the
    browser, GenAI until changed) rather than from the experiment's kind tag; the
    ``workflowType`` parameter sets that switch, so this address opens on the training runs."""
    return f"{base_url.rstrip('/')}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def mark_model_training(client: MlflowClient, exp) -> None:
    """Give an experiment created without them the kind tag (and the note when it has none).

    A kind someone chose in the UI is kept; only a missing or inferred one is replaced."""
    tags = exp.tags or {}
    kind = tags.get(EXPERIMENT_KIND_TAG)
    if kind is None or kind.endswith("_inferred"):
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, EXPERIMENT_KIND)
    if not tags.get(EXPERIMENT_NOTE_TAG):
        client.set_experiment_tag(exp.experiment_id, EXPERIMENT_NOTE_TAG, EXPERIMENT_NOTE)


def _home_store(settings: Settings) -> Path | None:
    """The SQLite file of the tracking store when it lies inside the home, else None."""
    uri = settings.tracking_uri
    if not uri.startswith(SQLITE_PREFIX):
        return None
    db = Path(uri[len(SQLITE_PREFIX) :]).resolve()
    home = Path(settings.home).resolve()
    return db if home in db.parents else None


def relocate_artifacts(settings: Settings, old: str) -> bool:
    """Point every artifact URI under ``old`` (``<old home>/mlartifacts``) at this home's; True if done.

    Only for the home's own SQLite store, and only for the layout this module creates: any other
    location was chosen on purpose and is kept."""
    db = _home_store(settings)
    new = settings.artifact_location
    if db is None or old == new or not old.startswith("file://") or not old.endswith("/" + ARTIFACTS_DIR):
        return False
    with sqlite3.connect(db) as con:
        tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, column in _ARTIFACT_COLUMNS:
            if table not in tables:
                continue
            if column not in {r[1] for r in con.execute(f"PRAGMA table_info({table})")}:
                continue
            # names come from the constant above, values are bound
            con.execute(
                f"UPDATE {table} SET {column} = ? || substr({column}, ?)"  # noqa: S608
                f" WHERE {column} = ? OR substr({column}, 1, ?) = ?",
                (new, len(old) + 1, old, len(old) + 1, old + "/"),
            )
    log.warning("artifact locations moved from %s to %s (the home was copied)", old, new)
    return True


def client(settings: Settings):
    """An ``MlflowClient`` on the configured store (calls :func:`configure` first)."""
    configure(settings)
    return MlflowClient(tracking_uri=settings.tracking_uri)


def git_sha(repo: Path | None = None) -> str | None:
    """The commit of the code tree, or None when git or the repository is unavailable."""
    root = repo or Path(__file__).resolve().parents[1]
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and sha else None
