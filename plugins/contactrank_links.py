"""Airflow plugin: extra links from contactrank tasks to their MLflow run and to the published export.

Links are resolved by the api-server when the UI asks for them. Each task stores what its links
point at under the XCom key ``contactrank_links`` (``mlflow_run_id``, ``model_version``,
``export_path``; see ``contactrank_airflow.push_links``); a task without that XCom shows the link
disabled. Where the links go is configured on the api-server:

- ``CONTACTRANK_MLFLOW_UI_URL``: the MLflow UI as a browser sees it (default: ``MLFLOW_TRACKING_URI``
  when it is an http(s) URL, else ``http://localhost:5000``);
- ``CONTACTRANK_EXPORT_URL``: a URL serving ``<CONTACTRANK_HOME>/exports`` (e.g. a file server or a
  bucket console); without it the link is the ``file://`` URI of the export directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from airflow.plugins_manager import AirflowPlugin
from airflow.sdk import BaseOperatorLink

LINKS_XCOM_KEY = "contactrank_links"  # same value as contactrank_airflow.LINKS_XCOM_KEY
MODEL_NAME_ENV = "CONTACTRANK_MODEL_NAME"


def mlflow_ui_url() -> str:
    """Base URL of the MLflow UI, without a trailing slash."""
    url = os.environ.get("CONTACTRANK_MLFLOW_UI_URL")
    if not url:
        tracking = os.environ.get("MLFLOW_TRACKING_URI", "")
        url = tracking if tracking.startswith(("http://", "https://")) else "http://localhost:5000"
    return url.rstrip("/")


def mlflow_link(info: dict[str, Any]) -> str:
    """URL of the task's MLflow run, else of the registered model version it used; '' when neither."""
    base = mlflow_ui_url()
    run_id = info.get("mlflow_run_id")
    if run_id:
        exp = info.get("mlflow_experiment_id")
        if exp:
            return f"{base}/#/experiments/{quote(str(exp))}/runs/{quote(str(run_id))}"
        return f"{base}/#/runs/{quote(str(run_id))}"
    version = info.get("model_version")
    if version:
        model = info.get("model_name") or os.environ.get(MODEL_NAME_ENV, "contactrank")
        return f"{base}/#/models/{quote(str(model))}/versions/{quote(str(version))}"
    return ""


def export_link(info: dict[str, Any]) -> str:
    """URL of the published export directory of the task's date; '' when the task published nothing."""
    path = info.get("export_path")
    if not path:
        return ""
    base = os.environ.get("CONTACTRANK_EXPORT_URL")
    if base:
        # The export directory is <exports>/priority/date=D: keep the part below <exports>.
        parts = Path(path).parts
        tail = "/".join(parts[-2:]) if len(parts) >= 2 else parts[-1]
        return f"{base.rstrip('/')}/{quote(tail, safe='/=')}/"
    return Path(path).resolve().as_uri() + "/"


def _links_xcom(ti_key: Any) -> dict[str, Any]:
    """The task instance's ``contactrank_links`` XCom, read from the metadata database."""
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        row = session.execute(
            XComModel.get_many(
                key=LINKS_XCOM_KEY,
                run_id=ti_key.run_id,
                dag_ids=ti_key.dag_id,
                task_ids=ti_key.task_id,
                map_indexes=ti_key.map_index,
            ).with_only_columns(XComModel.value)
        ).first()
    if not row:
        return {}
    value = row.value
    # The column holds JSON text; depending on the backend it may come back already decoded.
    for _ in range(2):
        if isinstance(value, str | bytes):
            try:
                value = json.loads(value)
            except ValueError:
                return {}
    return value if isinstance(value, dict) else {}


class MLflowRunLink(BaseOperatorLink):
    """The MLflow run a task logged (train), or the model version it used (gate, score, publish)."""

    name = "MLflow run"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return mlflow_link(_links_xcom(ti_key))


class PublishedExportLink(BaseOperatorLink):
    """The directory ``exports/priority/date=D/`` a publish task wrote."""

    name = "Published export"

    def get_link(self, operator: Any, *, ti_key: Any) -> str:
        return export_link(_links_xcom(ti_key))


class ContactrankPlugin(AirflowPlugin):
    """Registers the contactrank extra links on every task (empty where a task has nothing to link)."""

    name = "contactrank"
    global_operator_extra_links = [MLflowRunLink(), PublishedExportLink()]
