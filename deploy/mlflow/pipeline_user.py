"""Create (or re-key) the MLflow user the pipeline signs in as; idempotent.

Run by the one-shot ``mlflow-init`` service of docker-compose.yml once the MLflow server (basic-auth
app) is healthy, signed in as the admin:

    python deploy/mlflow/pipeline_user.py

- the admin password is read from ``$MLFLOW_ADMIN_PASSWORD_FILE`` (default
  /run/secrets/mlflow_admin_password), the admin name from ``$MLFLOW_ADMIN_USERNAME`` (admin);
- the pipeline's credentials from ``$MLFLOW_PIPELINE_CREDENTIALS_FILE`` (default
  /run/secrets/mlflow_pipeline_credentials), in MLflow's own credentials format, the file the
  Airflow containers read as ``~/.mlflow/credentials``::

      [mlflow]
      mlflow_tracking_username = contactrank-pipeline
      mlflow_tracking_password = <long random>

The user is created without admin rights. It gets MANAGE on the experiment and the registered model
(``$CONTACTRANK_EXPERIMENT_NAME`` / ``$CONTACTRANK_MODEL_NAME``, both ``contactrank``) when they exist
already; otherwise it creates them itself on the first training, which makes it their owner. Other
signed-in users read (``default_permission = READ``); nobody else can move ``champion``.
"""

from __future__ import annotations

import configparser
import os
import sys
from pathlib import Path


def _read(path: str) -> str:
    text = Path(path).read_text().strip()
    if not text:
        raise SystemExit(f"mlflow init: {path} is empty")
    return text


def pipeline_credentials(path: str) -> tuple[str, str]:
    parser = configparser.ConfigParser()
    parser.read_string(Path(path).read_text())
    section = parser["mlflow"] if parser.has_section("mlflow") else {}
    user, password = section.get("mlflow_tracking_username"), section.get("mlflow_tracking_password")
    if not user or not password:
        raise SystemExit(
            f"mlflow init: {path} needs [mlflow] mlflow_tracking_username and mlflow_tracking_password"
        )
    return user.strip(), password.strip()


def main() -> int:
    uri = os.environ.get("MLFLOW_TRACKING_URI", "http://mlflow:5000")
    user, password = pipeline_credentials(
        os.environ.get("MLFLOW_PIPELINE_CREDENTIALS_FILE", "/run/secrets/mlflow_pipeline_credentials")
    )
    # Signed in as the admin for this process only (MLflow reads these at each request).
    os.environ["MLFLOW_TRACKING_USERNAME"] = os.environ.get("MLFLOW_ADMIN_USERNAME", "admin")
    os.environ["MLFLOW_TRACKING_PASSWORD"] = _read(
        os.environ.get("MLFLOW_ADMIN_PASSWORD_FILE", "/run/secrets/mlflow_admin_password")
    )

    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException
    from mlflow.server import get_app_client

    auth = get_app_client("basic-auth", tracking_uri=uri)
    try:
        auth.get_user(user)
    except MlflowException:
        auth.create_user(user, password)
        print(f"mlflow init: created user {user}")
    else:
        auth.update_user_password(user, password)
        print(f"mlflow init: user {user} exists; password set from the secret")

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name(os.environ.get("CONTACTRANK_EXPERIMENT_NAME", "contactrank"))
    if experiment is not None:
        auth.grant_user_permission(user, "experiment", experiment.experiment_id, "MANAGE")
        print(f"mlflow init: {user} manages experiment {experiment.name}")
    model = os.environ.get("CONTACTRANK_MODEL_NAME", "contactrank")
    try:
        client.get_registered_model(model)
    except MlflowException:
        pass
    else:
        auth.grant_user_permission(user, "registered_model", model, "MANAGE")
        print(f"mlflow init: {user} manages registered model {model}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
