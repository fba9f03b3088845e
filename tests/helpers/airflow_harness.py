"""Helpers of the Airflow integration tests: environments, the contract check of an export, processes."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
from datetime import date, timedelta
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# docs/contract.md section 2, written out here so the test checks the contract, not the implementation.
CONTRACT_COLUMNS = [
    "person_id",
    "contact_id",
    "channel",
    "rank",
    "score",
    "best_hour",
    "reason",
    "explore",
    "propensity",
    "model_version",
    "timezone",
    "best_hour_utc",
]

# Small, quick model settings: the tests exercise orchestration, not model quality. The gate's
# floors are off because a few hundred simulated persons give a noisy test-day AUC and calibration,
# and the first challenger must become champion for score and publish to run.
QUICK_SETTINGS = {
    "CONTACTRANK_MIN_TRAIN_DAYS": "3",
    "CONTACTRANK_VALID_DAYS": "1",
    "CONTACTRANK_NUM_BOOST_ROUND": "60",
    "CONTACTRANK_GATE_AUC_FLOOR": "0",
    "CONTACTRANK_GATE_ECE_CAP": "1",
    "CONTACTRANK_NUM_THREADS": "1",
    "CONTACTRANK_DUCKDB_THREADS": "1",
    "CONTACTRANK_DUCKDB_MEMORY_LIMIT": "1GB",
}


def airflow_env(airflow_home: Path, contactrank_home: Path, **extra: str) -> dict[str, str]:
    """Environment of the `airflow` CLI and components: this repo's DAGs and plugins, quick retries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "CONTACTRANK_", "MLFLOW_"))}
    env.update(
        {
            "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "1",  # a failing step fails in seconds
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{airflow_home / 'airflow.db'}",
            "CONTACTRANK_HOME": str(contactrank_home),
            "CONTACTRANK_CONFIG": str(contactrank_home / "absent.toml"),
            "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
            "GIT_PYTHON_REFRESH": "quiet",
            **QUICK_SETTINGS,
        }
    )
    env.update(extra)
    return env


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check_export(folder: Path, d: date) -> list[dict]:
    """Assert that ``folder`` is a valid priority export of D (docs/contract.md section 2).

    Return its rows.
    """
    assert (folder / "_SUCCESS").is_file(), f"{folder}: no _SUCCESS"
    manifest = json.loads((folder / "_manifest.json").read_text())
    assert manifest["valid_from"] == (d + timedelta(days=1)).isoformat()
    for name in ("priority.parquet", "priority.csv"):
        entry = manifest["files"][name]
        digest = entry["sha256"] if isinstance(entry, dict) else entry
        assert digest == _sha256(folder / name), f"{name}: sha256 differs from the manifest"
    table = pq.read_table(folder / "priority.parquet")
    assert table.column_names == CONTRACT_COLUMNS
    assert table.num_rows == manifest["rows"] > 0
    csv = pacsv.read_csv(folder / "priority.csv")
    assert csv.num_rows == table.num_rows
    rows = table.to_pylist()
    versions = {r["model_version"] for r in rows}
    assert versions == {str(manifest["model"]["version"])}
    by_person: dict[str, list[int]] = {}
    for r in rows:
        assert 0.0 <= r["score"] <= 1.0 and 0 <= r["best_hour"] <= 23
        assert r["channel"] in {"voice", "sms", "email", "whatsapp"}
        assert 0.0 <= r["propensity"] <= 1.0
        assert r["timezone"] and 0 <= r["best_hour_utc"] <= 23
        by_person.setdefault(r["person_id"], []).append(r["rank"])
    for person, ranks in by_person.items():
        assert sorted(ranks) == list(range(1, len(ranks) + 1)), f"person {person}: ranks {sorted(ranks)}"
    return rows


def sorted_rows(rows: list[dict]) -> list[tuple]:
    return sorted(tuple(r[c] for c in CONTRACT_COLUMNS) for r in rows)
