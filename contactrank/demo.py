"""`make demo`: a simulated world through the real pipeline, the last days through Airflow.

1. simulate N days of landing files (default 60 days, 20k persons);
2. run the early days with the library (the same functions the DAG calls), with a progress bar;
3. run the last days through `airflow dags test contact_daily <date>` (real Airflow, SQLite metadata);
4. print a summary: rows published, persons, model version, AUC vs baselines and oracle, share
   explored, where the files are, and the commands that open the Airflow and MLflow UIs.

The terminal shows progress, one line per step (and per training) and the summary; the log of
the library, MLflow and the other libraries goes to ``<home>/logs/demo-<date>.log``
(``--verbose`` shows it too).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

from rich.console import Console
from rich.table import Table

from contactrank import console as output
from contactrank import storage
from contactrank.dates import parse_date
from contactrank.settings import Settings, load_settings, runtime_env

ROOT = Path(__file__).resolve().parents[1]
console = Console()


def airflow_env(settings: Settings, airflow_home: Path) -> dict[str, str]:
    """Environment for the `airflow` CLI: this project's DAGs/plugins, SQLite metadata under the home."""
    env = runtime_env(dict(os.environ))
    bindir = str(Path(sys.executable).parent)
    env.update(
        {
            "PATH": f"{bindir}:{env.get('PATH', '')}",
            "AIRFLOW_HOME": str(airflow_home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(ROOT / "plugins"),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__PARALLELISM": "2",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__DEFAULT_TASK_RETRY_DELAY": "5",
            "CONTACTRANK_HOME": str(settings.home.resolve()),
            "CONTACTRANK_LANDING_DIR": str(settings.landing.resolve()),
            "PYTHONPATH": f"{ROOT}:{env.get('PYTHONPATH', '')}",
        }
    )
    return env


def airflow_home_for(settings: Settings) -> Path:
    """Beside the contactrank home, not inside it: Airflow's DB keeps run params (an erased
    person's id in a contact_erasure run), and erasure guarantees nothing under the home holds it."""
    return settings.home.resolve().parent / f"{settings.home.resolve().name}-airflow"


def _run_airflow_days(settings: Settings, days: list[date]) -> None:
    airflow_home = airflow_home_for(settings)
    airflow_home.mkdir(parents=True, exist_ok=True)
    env = airflow_env(settings, airflow_home)
    airflow = shutil.which("airflow", path=env["PATH"]) or "airflow"
    with console.status("airflow db migrate"):
        subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True)
    for d in days:
        t0 = time.perf_counter()
        with console.status(f"airflow dags test contact_daily {d}"):
            proc = subprocess.run(
                [airflow, "dags", "test", "contact_daily", d.isoformat()],
                env=env,
                capture_output=True,
                text=True,
            )
        log = airflow_home / f"dags-test-{d}.log"
        log.write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0 or "state=failed" in proc.stdout + proc.stderr:
            raise SystemExit(f"airflow dags test contact_daily {d} failed; log: {log}")
        console.print(f"[green]✓[/] Airflow contact_daily {d} ({time.perf_counter() - t0:.0f} s, log {log})")


def _summary(settings: Settings, last: date, truth: bool) -> None:
    import pyarrow.parquet as pq

    export = storage.committed(settings.exports / "priority" / f"date={last}")
    manifest = json.loads((export / "_manifest.json").read_text())
    table = pq.read_table(export / "priority.parquet").to_pandas()
    rank1 = table[table["rank"] == 1]
    t = Table(title=f"contactrank demo — export of {last} (valid from {manifest.get('valid_from')})")
    t.add_column("figure")
    t.add_column("value", justify="right")
    t.add_row("rows published", f"{len(table):,}")
    t.add_row("persons", f"{table['person_id'].nunique():,}")
    for key, value in sorted(manifest.items()):
        if key.startswith("persons_left_out") or key.startswith("left_out"):
            t.add_row(key.replace("_", " "), str(value))
    t.add_row("model version", str(manifest.get("model_version") or manifest.get("model", {}).get("version")))
    t.add_row("share explored (rank 1)", f"{rank1['explore'].mean():.1%}")
    from contactrank.ml.train_metrics import metric_name  # with the stages: not at start-up

    metrics = _champion_metrics(settings)
    shown = {
        "auc": "champion AUC (its test day)",
        "baseline_random_auc": "random order AUC",
        "baseline_heuristic_auc": "last-success heuristic AUC",
        "baseline_oracle_auc": "oracle AUC (true probabilities)",
        "hit1": "champion hit@1 within person-day",
        "ece": "champion ECE",
    }
    for key, label in shown.items():
        if metric_name(key) in metrics:
            t.add_row(label, f"{metrics[metric_name(key)]:.4f}")
    console.print(t)
    console.print(f"Exports:  {export}")
    console.print(f"Report:   {settings.exports / 'reports' / f'date={last}' / 'report.html'}")
    if truth:
        console.print(f"Truth:    {settings.landing / 'truth.parquet'}")
    bindir = Path(sys.executable).parent
    console.print("\nOpen the UIs on the same stores:")
    from contactrank.ml.tracking import configure, experiment_url  # with the stages: not at start-up

    console.print(
        f"  [bold]MLflow[/]:  {bindir}/mlflow ui --backend-store-uri {settings.tracking_uri} --port 5000"
        f"\n           then open {experiment_url('http://127.0.0.1:5000', configure(settings))}"
    )
    console.print(
        f"  [bold]Airflow[/]: PATH={bindir}:$PATH AIRFLOW_HOME={airflow_home_for(settings)} "
        f"AIRFLOW__CORE__DAGS_FOLDER={ROOT / 'dags'} AIRFLOW__CORE__PLUGINS_FOLDER={ROOT / 'plugins'} "
        f"AIRFLOW__CORE__LOAD_EXAMPLES=False CONTACTRANK_HOME={settings.home.resolve()} airflow standalone"
    )


def _champion_metrics(settings: Settings) -> dict[str, float]:
    try:
        import mlflow

        from contactrank.ml.registry import load_champion
        from contactrank.ml.tracking import configure

        configure(settings)
        _, info = load_champion(settings)
        return dict(mlflow.tracking.MlflowClient().get_run(info["run_id"]).data.metrics)
    except Exception as exc:  # noqa: BLE001 - a summary must not fail the demo
        console.print(f"[yellow]no champion metrics: {exc}[/]")
        return {}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--days", type=int, default=60)
    p.add_argument("--persons", type=int, default=20_000)
    p.add_argument("--start", default="2026-09-01")
    p.add_argument(
        "--airflow-days", type=int, default=2, help="how many of the last days run through Airflow"
    )
    p.add_argument(
        "--retrain-every", type=int, default=7, help="retrain cadence during the CLI backfill (days)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("-v", "--verbose", action="store_true", help="show the log on the terminal too")
    args = p.parse_args(argv)
    runtime_env()
    settings = load_settings()
    log = output.setup_output(settings.home, "demo", args.verbose, console=console)
    try:
        _demo(settings, args)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - say where the details are, then fail
        import logging  # only on failure

        logging.getLogger(__name__).exception("demo failed")
        console.print(f"[red]demo failed[/]: {exc}\nlog: {log}")
        return 1
    finally:
        output.close_output()
    return 0


def _demo(settings: Settings, args: argparse.Namespace) -> None:
    from contactrank.features.simulate import simulate
    from contactrank.pipeline import STEPS

    t_start = time.perf_counter()
    start = parse_date(args.start)
    last = start + timedelta(days=args.days - 1)
    console.rule(
        f"contactrank demo: {args.days} days x {args.persons:,} persons, home {settings.home.resolve()}"
    )
    with console.status("simulating the world"):
        figures = simulate(settings.landing, start, args.days, persons=args.persons, seed=args.seed)
    console.print(f"[green]✓[/] simulated: {json.dumps(figures, default=str)[:300]}")
    cli_days = [start + timedelta(days=i) for i in range(args.days - args.airflow_days)]
    _library_days(settings.replace(retrain_every_days=args.retrain_every), cli_days)
    console.print(f"[green]✓[/] {len(cli_days)} days through the library ({', '.join(STEPS)})")
    _run_airflow_days(settings, [cli_days[-1] + timedelta(days=i + 1) for i in range(args.airflow_days)])
    _summary(settings, last, truth=True)
    console.print(f"\nDemo finished in {time.perf_counter() - t_start:.0f} s.")


def _library_days(settings: Settings, days: list[date]) -> None:
    """The days through ``run_date`` under a progress bar; a line per training, the rest in the log."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from contactrank.pipeline import STEPS, run_date

    results: dict[str, dict] = {}
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} days"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[step]}"),
        console=console,
    ) as progress:
        task = progress.add_task("backfill (CLI)", total=len(days), step="")
        for d in days:
            # the HTML report of every past day would double the demo's time: only the last one
            steps = STEPS if d == days[-1] else tuple(s for s in STEPS if s != "report")
            results[d.isoformat()] = run_date(
                settings,
                d,
                on_step=lambda s, d=d: progress.update(task, step=f"{d} {s}"),
                steps=steps,
            )
            if results[d.isoformat()].get("train", {}).get("status") == "trained":
                line = output.day_line(d.isoformat(), results[d.isoformat()])
                progress.console.print(f"[green]✓[/] {line}", highlight=False)
            progress.advance(task)
    line = output.not_ready_line(*output.not_ready_days(results))
    if line:
        console.print(f"[yellow]•[/] {line}", highlight=False)


if __name__ == "__main__":
    sys.exit(main())
