"""MLflow setup: tracking URI, experiment with an explicit artifact location, run provenance.

Nothing is configured at import; every function configures MLflow when called.
"""

from __future__ import annotations

import logging
import subprocess
from pathlib import Path

import mlflow
from mlflow.tracking import MlflowClient

from contactrank.settings import Settings

log = logging.getLogger(__name__)


def configure(settings: Settings) -> str:
    """Point MLflow at ``settings.tracking_uri`` and the experiment; return the experiment id.

    The experiment is created with ``settings.artifact_location`` so artifacts never land in a
    ``./mlruns`` relative to the working directory (the default with a ``sqlite://`` store).
    """
    uri = settings.tracking_uri
    if uri.startswith("sqlite:///"):
        Path(uri[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    # The registry follows the tracking store unless MLFLOW_REGISTRY_URI says otherwise.
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name(settings.experiment_name)
    if exp is None:
        try:
            exp_id = client.create_experiment(
                settings.experiment_name, artifact_location=settings.artifact_location
            )
        except Exception:  # created concurrently by another process: read it back
            exp = client.get_experiment_by_name(settings.experiment_name)
            if exp is None:
                raise
            exp_id = exp.experiment_id
    else:
        exp_id = exp.experiment_id
    mlflow.set_experiment(experiment_id=exp_id)
    return str(exp_id)


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
