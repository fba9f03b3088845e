"""What the commands and the demo show on the terminal, and where everything else goes.

The terminal gets progress (rich) and one summary line per step: a user must tell progress from
a problem at a glance. Every log record — the library's and third parties' (MLflow, Alembic,
LightGBM's Python warnings) — goes to ``<home>/logs/<command>-<date>.log``, whose path the CLI
prints on failure; ``-v`` shows the records on the terminal as well.
"""

from __future__ import annotations

import logging
import os
import sys
from datetime import date
from pathlib import Path
from typing import Any

from rich.console import Console

LOG_DIR = "logs"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# loggers MLflow gives their own stderr handler (see MLFLOW_CONFIGURE_LOGGING): sent to the file
THIRD_PARTY = ("mlflow", "alembic", "sqlalchemy.engine", "huey")
_MARK = "_contactrank_output"  # handlers this module added, replaced at the next setup


def log_file(home: Path, command: str, day: date | None = None) -> Path:
    """``<home>/logs/<command>-<date>.log`` (the date the command ran, not its business date)."""
    return Path(home) / LOG_DIR / f"{command}-{(day or date.today()).isoformat()}.log"


def stderr_console() -> Console:
    """The console for progress and summaries: stderr, since stdout carries the JSON result."""
    return Console(stderr=True)


# set on a log record (``extra={FILE_ONLY: True}``) that the terminal must not repeat
FILE_ONLY = "file_only"


def setup_output(
    home: Path, command: str, verbose: bool = False, console: Console | None = None, echo: bool | None = None
) -> Path:
    """Send every log record to the command's log file, and to the terminal when ``echo`` (default:
    ``verbose``, which also lowers the level to DEBUG).

    Call before MLflow is imported: MLflow then leaves its loggers to this setup instead of
    printing them itself. Returns the log file's path."""
    os.environ.setdefault("MLFLOW_CONFIGURE_LOGGING", "false")
    # tqdm bars of artifact downloads would draw over the progress bar
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    path = log_file(home, command)
    path.parent.mkdir(parents=True, exist_ok=True)
    level = logging.DEBUG if verbose else logging.INFO
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(handler)
        handler.close()
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(logging.Formatter(LOG_FORMAT))
    handlers: list[logging.Handler] = [to_file]
    if verbose if echo is None else echo:
        from rich.logging import RichHandler  # only when records go to the terminal

        terminal = RichHandler(console=console or stderr_console(), show_path=False)
        if not verbose:  # a failure is said once on the terminal: the contract's one line
            terminal.addFilter(lambda record: not getattr(record, FILE_ONLY, False))
        handlers.append(terminal)
    for handler in handlers:
        setattr(handler, _MARK, True)
        root.addHandler(handler)
    root.setLevel(level)
    for name in THIRD_PARTY:
        logger = logging.getLogger(name)
        logger.handlers = []
        logger.propagate = True
        # SQL statements and migrations only when asked for
        logger.setLevel(logging.NOTSET if verbose or name == "mlflow" else logging.WARNING)
    logging.captureWarnings(True)
    return path


def close_output() -> None:
    """Flush and detach the handlers :func:`setup_output` added (tests call it between commands)."""
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(handler)
        handler.close()
    logging.captureWarnings(False)


def _figure(value: Any) -> str:
    return f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)


def step_line(step: str, result: Any) -> str:
    """One line that says what a step did: its status and reason, or its first few counts."""
    if not isinstance(result, dict):
        return f"{step}: {result}"
    status = result.get("status")
    if status == "skipped":
        return f"{step}: skipped ({result.get('reason', 'no reason given')})"
    if status == "trained":
        auc = (result.get("metrics") or {}).get("auc")
        return f"{step}: version {result.get('version')}" + (f", test AUC {auc:.4f}" if auc else "")
    if isinstance(status, str) and "challenger" in result:  # a gate decision: promoted, rejected, ...
        failed = [str(r) for r in result.get("reasons", []) if not str(r).startswith("ok:")]
        why = f" ({failed[0].partition(': ')[2] or failed[0]})" if failed else ""
        return f"{step}: challenger v{result['challenger']} {status}{why}"
    counts = [(k, v) for k, v in result.items() if isinstance(v, int) and not isinstance(v, bool)]
    shown = ", ".join(f"{k.replace('_', ' ')} {_figure(v)}" for k, v in counts[:3])
    if status:
        return f"{step}: {status}" + (f", {shown}" if shown else "")
    if shown:
        return f"{step}: {shown}"
    path = result.get("path") or result.get(step)
    return f"{step}: done" + (f" ({path})" if path else "")


def day_line(day: str, results: dict[str, Any]) -> str:
    """One line for one date of a backfill: each step's outcome in a word or two.

    Steps skipped for want of a champion are left out: that is said once, at the end."""
    parts = []
    for step, result in results.items():
        if not isinstance(result, dict):
            parts.append(step)
        elif result.get("not_ready"):
            continue
        elif result.get("status") == "skipped":
            parts.append(f"{step} skipped")
        elif result.get("status") == "trained":
            parts.append(f"train v{result.get('version')}")
        elif isinstance(result.get("status"), str) and "challenger" in result:
            parts.append(f"{step} {result['status']}")
        else:
            counts = [v for v in result.values() if isinstance(v, int) and not isinstance(v, bool)]
            rows = result.get("rows")  # the step's own size says most; else its first count
            if isinstance(rows, int) and not isinstance(rows, bool):
                counts = [rows]
            parts.append(f"{step} {_figure(counts[0])}" if counts else step)
    return f"{day}: {', '.join(parts)}"


def not_ready_days(results: dict[str, dict[str, dict[str, Any]]]) -> tuple[list[str], str | None]:
    """The dates whose champion-needing steps were skipped, and the reason (said once)."""
    days, reason = [], None
    for day, steps in results.items():
        skipped = [r for r in steps.values() if isinstance(r, dict) and r.get("not_ready")]
        if skipped:
            days.append(day)
            reason = reason or skipped[0].get("reason")
    return days, reason


def not_ready_line(days: list[str], reason: str | None) -> str | None:
    """The one line about days without a champion, or None when every day had one."""
    if not days:
        return None
    span = days[0] if len(days) == 1 else f"{days[0]} to {days[-1]} ({len(days)} days)"
    return f"nothing scored or published for {span}: {reason}"


def failure_lines(command: str, reason: str, log: Path | None) -> list[str]:
    """The failure as the contract wants it, one line, naming where the details are."""
    where = f" (log: {log})" if log is not None else ""
    return [f"contactrank {command}: {reason}{where}"]


def print_lines(lines: list[str], stream=None) -> None:
    out = stream or sys.stderr
    for line in lines:
        print(line, file=out)
