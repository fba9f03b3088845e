"""The shape of the library: one namespace, imports only downward, no cycles, no private reach-ins.

The layers, bottom to top (docs/design.md draws the same table):

| layer | modules |
|---|---|
| foundation | settings, errors, dates, privacy, the home lock, storage (local folder or S3), shards |
| data | schema, lake, sql, parsing and validation, ingest, importers, simulator |
| features | the point-in-time feature build, the attempt context |
| model | model, evaluation, training (or on Dask), tune, registry, outputs by hour, file calibration |
| serving | candidates, scoring, exploration, reasons, publish, off-policy evaluation |
| reporting | the daily report |
| application | stages, pipeline, cli, demo, erase, the lookup API |

A module may import its own layer or any layer below; every module of the package must be placed
in exactly one layer (a new module fails this test until it is).
"""

from __future__ import annotations

import ast
import fnmatch
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "foundation",
        (
            "contactrank",
            "contactrank.features",
            "contactrank.ml",
            "contactrank.settings",
            "contactrank.errors",
            "contactrank.dates",
            "contactrank.privacy",
            "contactrank.lock",
            "contactrank.duckdb_fs",
            "contactrank.storage",
            "contactrank.shards",
        ),
    ),
    (
        "data",
        (
            "contactrank.features.schema",
            "contactrank.features.lake",
            "contactrank.features.sql",
            "contactrank.features.parsers",
            "contactrank.features.arrow_columns",
            "contactrank.features.landing_files",
            "contactrank.features.person_rules",
            "contactrank.features.person_clocks",
            "contactrank.features.validate",
            "contactrank.features.validate_*",
            "contactrank.features.ingest*",
            "contactrank.features.landing_*",
            "contactrank.features.contacts_state",
            "contactrank.features.suppression_*",
            "contactrank.features.importers",
            "contactrank.features.importers.*",
            "contactrank.features.simulate*",
            "contactrank.features.simulated_*",
        ),
    ),
    (
        "features",
        (
            "contactrank.features.context",
            "contactrank.features.build",
            "contactrank.features.history",
            "contactrank.features.daily_aggregates",
            "contactrank.features.feature_*",
            "contactrank.features.hour_profiles",
            "contactrank.features.hour_shapes",
            "contactrank.features.hour_curves",
            "contactrank.features.curve_priors",
            "contactrank.features.person_curves",
            "contactrank.features.person_attributes",
        ),
    ),
    (
        "model",
        (
            "contactrank.ml.model",
            "contactrank.ml.tracking",
            "contactrank.ml.evaluate",
            "contactrank.ml.calibration",
            "contactrank.ml.plots",
            "contactrank.ml.drift",
            "contactrank.ml.dataset",
            "contactrank.ml.train*",
            "contactrank.ml.tune",
            "contactrank.ml.registry",
            "contactrank.ml.gate",
            # the model's reading at every hour: training calibrates the score scoring publishes
            "contactrank.ml.predictor",
            "contactrank.ml.hours",
            "contactrank.ml.hour_outputs",
            "contactrank.ml.timezones",
            "contactrank.ml.file_calibration",
        ),
    ),
    (
        "serving",
        (
            "contactrank.ml.candidates",
            "contactrank.ml.score*",
            "contactrank.ml.explore",
            "contactrank.ml.reasons",
            "contactrank.ml.publish",
            "contactrank.ml.policy_eval",
        ),
    ),
    ("reporting", ("contactrank.ml.report*",)),
    (
        "application",
        (
            "contactrank.stages",
            "contactrank.pipeline",
            "contactrank.cli",
            "contactrank.demo",
            "contactrank.erase",
            "contactrank.erasure_records",
            "contactrank.serve*",
            "contactrank.console",
        ),
    ),
)
LAYER_NAMES = [name for name, _ in LAYERS]

# Entry points whose start-up time a user feels: imports inside their functions are the point.
LAZY_ENTRY_POINTS = ("contactrank.cli", "contactrank.demo", "contactrank.pipeline")


def _package_dirs() -> dict[str, Path]:
    """Package name -> folder, from pyproject's setuptools mapping (the one source)."""
    conf = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    mapping = conf["package-dir"]
    out = {}
    for pkg in conf["packages"]:
        top = max((k for k in mapping if pkg == k or pkg.startswith(k + ".")), key=len)
        out[pkg] = (
            ROOT / mapping[top] / Path(*pkg[len(top) + 1 :].split(".")) if pkg != top else ROOT / mapping[top]
        )
    return out


def _modules() -> dict[str, Path]:
    out = {}
    for pkg, folder in _package_dirs().items():
        for path in sorted(folder.glob("*.py")):
            out[pkg if path.stem == "__init__" else f"{pkg}.{path.stem}"] = path
    return out


MODULES = _modules()


def _layer(module: str) -> int | None:
    hits = [
        i for i, (_, patterns) in enumerate(LAYERS) if any(fnmatch.fnmatchcase(module, p) for p in patterns)
    ]
    return hits[-1] if hits else None


def _imports(path: Path, module: str) -> list[tuple[int, str, list[str], bool, str]]:
    """(line, imported module, imported names, inside a function?, source line) of contactrank imports."""
    source = path.read_text()
    lines = source.splitlines()
    tree = ast.parse(source, filename=str(path))
    package = module if path.stem == "__init__" else module.rpartition(".")[0]
    out = []

    def visit(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    out.append((child.lineno, alias.name, [], in_function, lines[child.lineno - 1]))
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    parts = package.split(".")
                    base = ".".join(parts[: len(parts) - child.level + 1] + ([base] if base else []))
                names = [a.name for a in child.names]
                # `from contactrank.ml import plots` imports a module, not a name
                subs = [f"{base}.{n}" for n in names if f"{base}.{n}" in MODULES]
                for sub in subs:
                    out.append((child.lineno, sub, [], in_function, lines[child.lineno - 1]))
                rest = [n for n in names if f"{base}.{n}" not in MODULES]
                if rest or not subs:
                    out.append((child.lineno, base, rest, in_function, lines[child.lineno - 1]))
            visit(child, inner)

    visit(tree, False)
    return [
        i
        for i in out
        if i[1] == "contactrank" or i[1].startswith("contactrank.") or i[1] in {"features", "ml"}
    ]


def test_every_module_is_in_one_layer() -> None:
    assert len(MODULES) > 30, f"the package was not found: {sorted(MODULES)}"
    unplaced = sorted(m for m in MODULES if _layer(m) is None)
    assert not unplaced, f"place these modules in a layer of {__name__}.LAYERS: {unplaced}"


def test_nothing_importable_named_features_or_ml_at_the_top() -> None:
    tops = {pkg.split(".")[0] for pkg in _package_dirs()}
    assert tops == {"contactrank"}, tops
    bad = [
        f"{m}:{line} imports {name}"
        for m, p in MODULES.items()
        for line, name, *_ in _imports(p, m)
        if name.split(".")[0] in {"features", "ml"}
    ]
    assert not bad, bad


def test_imports_only_go_down() -> None:
    bad = []
    for module, path in MODULES.items():
        mine = _layer(module)
        for line, name, _, _, _ in _imports(path, module):
            target = _owner(name)
            if target is None:
                bad.append(f"{module}:{line} imports {name}, which is not a module of the package")
            elif (_layer(target) or 0) > (mine or 0):
                bad.append(
                    f"{module} ({LAYER_NAMES[mine or 0]}):{line} imports {target} "
                    f"({LAYER_NAMES[_layer(target) or 0]})"
                )
    assert not bad, "upward imports:\n" + "\n".join(bad)


def test_no_private_names_across_modules() -> None:
    bad = []
    for module, path in MODULES.items():
        for line, name, names, _, _ in _imports(path, module):
            target = _owner(name)
            if target != module and (
                any(n.startswith("_") for n in names) or name.rpartition(".")[2].startswith("_")
            ):
                bad.append(f"{module}:{line} imports private {name} {names}")
    assert not bad, "\n".join(bad)


def test_no_import_cycles() -> None:
    graph = {m: {_owner(n) for _, n, *_ in _imports(p, m)} - {None, m} for m, p in MODULES.items()}
    # a package's __init__ is imported with any of its modules: only edges between modules count
    graph = {m: {t for t in ts if t not in _package_dirs()} for m, ts in graph.items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == 1:
                return stack[stack.index(t) :] + [t]
            if t not in state and (cycle := visit(t)):
                return cycle
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (cycle := visit(m)):
            pytest.fail("import cycle: " + " -> ".join(cycle))


def test_imports_inside_functions_say_why() -> None:
    """Library imports sit at the top of a module, except in the entry points whose start-up a user
    feels (CLI, demo, pipeline) and where a comment on the line says why (an optional heavy library)."""
    bad = []
    for module, path in MODULES.items():
        if module in LAZY_ENTRY_POINTS:
            continue
        lines = path.read_text().splitlines()
        for line, name, _, inside, text in _imports(path, module):
            before = lines[line - 2].strip() if line >= 2 else ""
            if inside and "#" not in text and not before.startswith("#"):
                bad.append(f"{module}:{line} imports {name} inside a function without a reason")
    assert not bad, "\n".join(bad)


def _owner(name: str) -> str | None:
    """The module of the package that an imported dotted name lives in."""
    while name:
        if name in MODULES:
            return name
        name = name.rpartition(".")[0]
    return None


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    """The walk resolves `from pkg import module`, relative imports and imports inside functions."""
    f = tmp_path / "lake.py"
    f.write_text(
        "from contactrank.ml import score\n"
        "def f():\n    from contactrank.ml.report import report\n"
        "from . import schema\n"
    )
    found = [(name, inside) for _, name, _, inside, _ in _imports(f, "contactrank.features.lake")]
    assert found == [
        ("contactrank.ml.score", False),
        ("contactrank.ml.report", True),
        ("contactrank.features.schema", False),
    ]
    assert _layer("contactrank.ml.score") > _layer("contactrank.features.lake")
