"""`contactrank` command line (docs/contract.md §3). The only module that prints.

Every command exits 0 on success and non-zero with a one-line reason on stderr on failure.
stdout carries the JSON result; stderr the progress and one summary line per step; log records
go to ``<home>/logs/<command>-<date>.log`` (``contactrank.console``), on the terminal with ``-v``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

from contactrank import console as out
from contactrank.dates import parse_date
from contactrank.errors import ContactrankError
from contactrank.settings import Settings, load_settings, runtime_env

# commands that draw their own progress and summary lines; the others get a spinner and one line
_OWN_PROGRESS = ("run", "backfill", "serve", "train")


def _date(value: str) -> date:
    try:
        return parse_date(value)
    except ContactrankError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _print_json(obj: Any) -> None:
    print(json.dumps(obj, indent=2, default=str, sort_keys=True))


def _progress():
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    # stderr: stdout carries the JSON result that scripts parse
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        TextColumn("{task.fields[step]}"),
        console=out.stderr_console(),
        transient=False,
    )


def _say(progress, line: str) -> None:
    """A summary line above the progress bar."""
    progress.console.print(line, markup=False, highlight=False)


def newest_data_date(s: Settings, landing: Path | None) -> date | None:
    """The newest business date with landing files or an attempts partition in the lake."""
    found: list[date] = []
    for root in ((landing or s.landing), s.lake / "attempts"):
        folders = [root / kind for kind in ("attempts", "contacts", "suppressions", "persons")] + [root]
        for folder in folders:
            if folder.is_dir():
                for child in folder.glob("date=*"):
                    try:
                        found.append(date.fromisoformat(child.name[5:]))
                    except ValueError:
                        continue
    return max(found) if found else None


def refuse_future(s: Settings, a: argparse.Namespace) -> None:
    """A --date days after the newest data is a typo or a clock problem, not a day to process."""
    d = getattr(a, "date", None)
    if d is None or getattr(a, "allow_future", False):
        return
    newest = newest_data_date(s, Path(a.landing) if getattr(a, "landing", None) else None)
    if newest is not None and (d - newest).days > s.max_days_ahead_of_data:
        raise ContactrankError(
            f"--date {d} is {(d - newest).days} days after the newest data ({newest}); "
            "pass --allow-future to run it anyway"
        )


# the simulator's presets, named here so that `--help` does not import the simulator
WORLD_NAMES = ["default", "habits", "office_hours_incumbent", "evening_incumbent", "timezones"]


def cmd_simulate(s: Settings, a: argparse.Namespace) -> Any:
    from contactrank.features.simulate import simulate

    return simulate(
        Path(a.landing) if a.landing else s.landing,
        a.start,
        a.days,
        persons=a.persons,
        seed=a.seed,
        fmt=a.format,
        world=a.world,
    )


def cmd_step(step: str):
    def run(s: Settings, a: argparse.Namespace) -> Any:
        from contactrank.pipeline import run_step

        return run_step(step, s, a.date, Path(a.landing) if getattr(a, "landing", None) else None)

    return run


def cmd_train(s: Settings, a: argparse.Namespace) -> Any:
    from contactrank.lock import home_lock
    from contactrank.ml.registry import gate
    from contactrank.ml.train import train

    console = out.stderr_console()
    with home_lock(s, f"train {a.date}"):
        with console.status(f"train {a.date}"):
            result = train(s, a.date, force=a.force)
        console.print(out.step_line("train", result), markup=False, highlight=False)
        if result.get("status") == "trained":
            with console.status(f"gate {a.date}"):
                result["gate"] = gate(s, a.date)
            console.print(out.step_line("gate", result["gate"]), markup=False, highlight=False)
    return result


def cmd_run(s: Settings, a: argparse.Namespace) -> Any:
    from contactrank.pipeline import STEPS, run_date

    landing = Path(a.landing) if a.landing else None
    with _progress() as progress:
        task = progress.add_task(f"run {a.date}", total=len(STEPS), step="")

        def on_step(step: str) -> None:
            progress.update(task, step=step, completed=STEPS.index(step))

        def on_done(step: str, result: dict[str, Any]) -> None:
            if not result.get("not_ready"):  # said once, below
                _say(progress, out.step_line(step, result))

        result = run_date(s, a.date, landing, on_step=on_step, on_done=on_done)
        progress.update(task, completed=len(STEPS), step="done")
        line = out.not_ready_line(*out.not_ready_days({a.date.isoformat(): result}))
        if line:
            _say(progress, line)
    return result


def cmd_backfill(s: Settings, a: argparse.Namespace) -> Any:
    from contactrank.pipeline import STEPS, backfill

    if a.end < a.start:
        raise ContactrankError(f"--end {a.end} is before --start {a.start}")
    days = (a.end - a.start).days + 1
    landing = Path(a.landing) if a.landing else None
    with _progress() as progress:
        task = progress.add_task("backfill", total=days * len(STEPS), step="")

        def on_step(d: date, step: str) -> None:
            done = (d - a.start).days * len(STEPS) + STEPS.index(step)
            progress.update(task, completed=done, step=f"{d} {step}")

        def on_day(d: date, results: dict[str, Any]) -> None:
            _say(progress, out.day_line(d.isoformat(), results))

        result = backfill(s, a.start, a.end, landing, on_step=on_step, on_day=on_day)
        progress.update(task, completed=days * len(STEPS), step="done")
        line = out.not_ready_line(*out.not_ready_days(result))
        if line:
            _say(progress, line)
    return {"days": days, "last": result[a.end.isoformat()]}


def cmd_tune(s: Settings, a: argparse.Namespace) -> Any:
    from contactrank.ml.tune import tune

    return tune(s, a.date, trials=a.trials)


def cmd_promote(s: Settings, a: argparse.Namespace) -> Any:
    from contactrank.lock import home_lock
    from contactrank.ml.registry import promote

    with home_lock(s, f"promote {a.version}"):
        return promote(s, a.version)


def cmd_erase(s: Settings, a: argparse.Namespace) -> Any:
    from contactrank.erase import erase, erase_requested, request_erasure

    if a.person_hash:
        return erase_requested(s, a.person_hash)
    if not a.person_id:
        raise ContactrankError("give --person-id (or --person-hash of a queued request)")
    if a.request:
        queued = request_erasure(s, a.person_id)
        conf = json.dumps({"person_hash": queued["person_hash"]})
        return {**queued, "trigger": f"airflow dags trigger contact_erasure --conf '{conf}'"}
    # any id that ingest accepted can be erased (a "/" or a control character included)
    return erase(s, a.person_id)


def cmd_report(s: Settings, a: argparse.Namespace) -> Any:
    from contactrank.ml.report import report

    return {"report": str(report(s, a.date))}


def cmd_evaluate_policy(s: Settings, a: argparse.Namespace) -> Any:
    from contactrank.ml.policy_eval import evaluate_policy

    return evaluate_policy(s, a.start, a.end, policy=a.policy)


def cmd_import(s: Settings, a: argparse.Namespace) -> Any:
    from contactrank.features.importers import import_dataset

    return import_dataset(a.dataset, Path(a.path), Path(a.landing) if a.landing else s.landing)


def cmd_serve(s: Settings, a: argparse.Namespace) -> Any:
    from contactrank.serve import run

    run(s, host=a.host, port=a.port, poll_seconds=a.poll_seconds)


# One long function on purpose: every command and option of the CLI contract, read in one place.
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="contactrank", description=__doc__.splitlines()[0])
    p.add_argument("--config", help="settings file (default: $CONTACTRANK_CONFIG or ./contactrank.toml)")
    p.add_argument(
        "-v", "--verbose", action="store_true", help="show the log (debug level) on the terminal too"
    )
    sub = p.add_subparsers(dest="command", required=True)

    def add(name: str, func, help_: str, date_arg: bool = True, landing: bool = False, shards: bool = False):
        sp = sub.add_parser(name, help=help_)
        if shards:
            sp.add_argument(
                "--shards", type=int, help="split persons into N shards (default: setting `shards`)"
            )
            sp.add_argument(
                "--workers", type=int, help="run the shards of a step in K processes (default: setting)"
            )
        if date_arg:
            sp.add_argument("--date", type=_date, required=True, help="business date YYYY-MM-DD")
            sp.add_argument(
                "--allow-future", action="store_true", help="run a date days after the newest landing data"
            )
        if landing:
            sp.add_argument("--landing", help="landing directory (default: $CONTACTRANK_HOME/landing)")
        sp.set_defaults(func=func)
        return sp

    sp = add(
        "simulate", cmd_simulate, "write a simulated world's landing files", date_arg=False, landing=True
    )
    sp.add_argument("--start", type=_date, required=True)
    sp.add_argument("--days", type=int, required=True)
    sp.add_argument("--persons", type=int, default=20_000)
    sp.add_argument("--seed", type=int, default=0)
    sp.add_argument("--format", choices=["csv", "parquet"], default="csv")
    sp.add_argument(
        "--world",
        default=None,
        choices=WORLD_NAMES,
        help="a preset of the simulator's world (habits, time zones, incumbent hours...)",
    )
    add("run", cmd_run, "every step for one date, in order", landing=True, shards=True)
    add("ingest", cmd_step("ingest"), "landing -> lake (bad rows to quarantine)", landing=True)
    add("features", cmd_step("features"), "lake -> features at the end of DATE", shards=True)
    sp = add("train", cmd_train, "retrain when due; challenger -> gate -> champion")
    sp.add_argument("--force", action="store_true", help="train even when not due")
    add("score", cmd_step("score"), "the champion scores the candidates of DATE", shards=True)
    add("publish", cmd_step("publish"), "atomic export of the priority files", shards=True)
    add("report", cmd_report, "the daily HTML report")
    sp = add(
        "backfill",
        cmd_backfill,
        "run every date from --start to --end",
        date_arg=False,
        landing=True,
        shards=True,
    )
    sp.add_argument("--start", type=_date, required=True)
    sp.add_argument("--end", type=_date, required=True)
    sp = add("tune", cmd_tune, "Optuna study; best params used by the next training")
    sp.add_argument("--trials", type=int, default=20)
    sp = add("promote", cmd_promote, "point the champion alias at a version (rollback)", date_arg=False)
    sp.add_argument("--version", type=int, required=True)
    sp = add("erase", cmd_erase, "GDPR erasure of a person everywhere", date_arg=False)
    sp.add_argument("--person-id")
    sp.add_argument(
        "--request", action="store_true", help="queue it for the contact_erasure DAG: prints the keyed hash"
    )
    sp.add_argument("--person-hash", help="carry out a queued request")
    sp = add(
        "evaluate-policy",
        cmd_evaluate_policy,
        "off-policy value (IPS/SNIPS) from logged exports",
        date_arg=False,
    )
    sp.add_argument("--start", type=_date, required=True)
    sp.add_argument("--end", type=_date, required=True)
    sp.add_argument(
        "--policy",
        default="model",
        help="an address policy (model, random, logging, last_success) or, given the logged address, "
        "an hour policy (greedy_hour, less_tried_hour, logging_hour)",
    )
    sp = add("serve", cmd_serve, "HTTP lookup API over the newest committed export", date_arg=False)
    sp.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    sp.add_argument("--port", type=int, default=8000, help="port to listen on (default: 8000)")
    sp.add_argument(
        "--poll-seconds", type=float, default=5.0, help="how often to look for a newer export (default: 5)"
    )
    sp = add("import", cmd_import, "map a public dataset to landing files", date_arg=False, landing=True)
    sp.add_argument("dataset", choices=["bank-marketing"])
    sp.add_argument("path")
    return p


def with_shards(settings: Settings, args: argparse.Namespace) -> Settings:
    """The settings with ``--shards`` and ``--workers`` applied (checked like the settings themselves)."""
    chosen = {k: getattr(args, a, None) for k, a in (("shards", "shards"), ("shard_workers", "workers"))}
    chosen = {k: v for k, v in chosen.items() if v is not None}
    return dataclasses.replace(settings, **chosen) if chosen else settings


def _run_command(settings: Settings, args: argparse.Namespace) -> Any:
    """The command, with a spinner and its summary line unless it draws its own progress."""
    func: Callable[[Settings, argparse.Namespace], Any] = args.func
    if args.command in _OWN_PROGRESS:
        return func(settings, args)
    console = out.stderr_console()
    with console.status(args.command):
        result = func(settings, args)
    if result is not None:
        console.print(out.step_line(args.command, result), markup=False, highlight=False)
    return result


def main(argv: list[str] | None = None) -> int:
    runtime_env()  # before LightGBM loads
    args = build_parser().parse_args(argv)
    log_path = None
    try:
        settings = with_shards(load_settings(args.config), args)
        # a server's log is what its operator watches: on the terminal as well as in the file
        log_path = out.setup_output(
            settings.home, args.command, args.verbose, echo=args.verbose or args.command == "serve"
        )
        refuse_future(settings, args)
        result = _run_command(settings, args)
    except ContactrankError as exc:
        logging.getLogger(__name__).info("%s failed: %s", args.command, exc, extra={out.FILE_ONLY: True})
        out.print_lines(out.failure_lines(args.command, str(exc), log_path))
        return 1
    except Exception as exc:  # noqa: BLE001 - the contract: any failure is one line and a non-zero exit
        logging.getLogger(__name__).exception("%s failed", args.command, extra={out.FILE_ONLY: True})
        reason = (str(exc).strip().splitlines() or [""])[0]
        out.print_lines(out.failure_lines(args.command, f"{type(exc).__name__}: {reason}", log_path))
        return 1
    finally:
        out.close_output()
    if result is not None:
        _print_json(result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
