"""Policies: the library never imports Airflow; DAG files import nothing heavy at parse time."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from helpers.airflow_env import DAG_FILES, PLUGINS, ROOT, airflow_env

LIBRARY = ("contactrank", "features", "ml")
HEAVY = ("pandas", "lightgbm", "mlflow", "optuna", "duckdb", "pyarrow", "numpy", "sklearn", "matplotlib")
FORBIDDEN = ("airflow", "contactrank_airflow", "contactrank_links")


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.lineno, node.module))
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) in {
            "import_module",
            "__import__",
        }:
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                out.append((node.lineno, node.args[0].value))
    return out


def test_library_never_imports_airflow() -> None:
    files = [p for pkg in LIBRARY for p in (ROOT / pkg).rglob("*.py")]
    assert len(files) >= 10, "the library packages were not found"
    bad = [
        f"{p.relative_to(ROOT)}:{line} imports {name}"
        for p in files
        for line, name in _imports(p)
        if name.split(".")[0] in FORBIDDEN
    ]
    assert not bad, "the library must not import Airflow:\n" + "\n".join(bad)


def test_policy_test_detects_an_airflow_import(tmp_path: Path) -> None:
    """The AST walk sees every form of import (else the test above could never fail)."""
    f = tmp_path / "m.py"
    f.write_text(
        "def f():\n    from airflow.sdk import dag\n"
        "import airflow.models\n"
        "import importlib\nimportlib.import_module('airflow')\n"
    )
    assert sorted(n for _, n in _imports(f)) == ["airflow", "airflow.models", "airflow.sdk", "importlib"]


_PROBE = r"""
import importlib.util, json, sys, time
import airflow.sdk  # loaded once by the dag-processor: not part of a file's parse time
heavy = {heavy!r}
before = sorted(m for m in heavy if m in sys.modules)
path = sys.argv[1]
t0, c0 = time.perf_counter(), time.process_time()
spec = importlib.util.spec_from_file_location("dag_under_test", path)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
elapsed, cpu = time.perf_counter() - t0, time.process_time() - c0
after = sorted(m for m in heavy if m in sys.modules)
print(json.dumps({{"seconds": elapsed, "cpu": cpu, "before": before, "after": after}}))
"""


@pytest.fixture(scope="module")
def probes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Import each DAG file in a fresh interpreter: its parse time and the heavy modules loaded."""
    env = {**os.environ, **airflow_env(tmp_path_factory.mktemp("airflow"))}
    env["PYTHONPATH"] = os.pathsep.join([str(PLUGINS), str(ROOT)])
    out = {}
    for path in DAG_FILES:
        proc = subprocess.run(
            [sys.executable, "-c", _PROBE.format(heavy=HEAVY), str(path)],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert proc.returncode == 0, f"{path.name} failed to import:\n{proc.stderr[-3000:]}"
        out[path.name] = json.loads(proc.stdout.strip().splitlines()[-1])
    return out


def test_dag_files_exist() -> None:
    assert {p.stem for p in DAG_FILES} >= {"contact_daily", "contact_tuning", "contact_erasure"}


@pytest.mark.parametrize("name", [p.name for p in DAG_FILES])
def test_no_heavy_imports_at_parse_time(probes: dict[str, dict], name: str) -> None:
    assert probes[name]["before"] == [], "airflow.sdk itself loaded a heavy module: the check is void"
    assert probes[name]["after"] == [], f"parsing {name} imported {probes[name]['after']}"


@pytest.mark.parametrize("name", [p.name for p in DAG_FILES])
def test_dag_file_parses_in_under_a_second(probes: dict[str, dict], name: str) -> None:
    # CPU seconds of the parsing process: on a shared 2-core machine wall time also counts the
    # other processes' load, which says nothing about the file.
    p = probes[name]
    assert p["cpu"] < 1.0, f"{name} took {p['cpu']:.2f} CPU s ({p['seconds']:.2f} s wall) to parse"
