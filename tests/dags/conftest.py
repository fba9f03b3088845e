"""Airflow test environment: a throw-away AIRFLOW_HOME and this repo's dags/ and plugins/.

Set at import, before anything imports Airflow: its configuration is read once per process.
"""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from pathlib import Path

import pytest
from helpers.airflow_env import DAGS, PLUGINS, airflow_env

if "airflow" not in sys.modules:
    _HOME = Path(tempfile.mkdtemp(prefix="contactrank-airflow-"))
    atexit.register(shutil.rmtree, _HOME, True)
    os.environ.update(airflow_env(_HOME))
    if str(PLUGINS) not in sys.path:
        sys.path.append(str(PLUGINS))


@pytest.fixture(scope="session")
def dagbag():
    """Every DAG of dags/, parsed the way the dag-processor does."""
    from airflow.dag_processing.dagbag import DagBag

    return DagBag(dag_folder=str(DAGS))
