"""What the daily report is made of: the lake, the model of the day, the export and the MLflow runs.

``ReportInputs`` loads each input once, on first use, and shares it between the panels; a load
that fails is remembered and re-raised to every panel that asks, so a missing model costs one
attempt, not eight. ``MissingInput`` is the expected failure: the input does not exist (yet).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from contactrank import storage
from contactrank.features import lake
from contactrank.features.schema import LABEL_COLUMNS, REACH_OUTCOMES
from contactrank.features.sql import quote_literal, read_parquet
from contactrank.ml.registry import TAG_GATE_DATE, load_champion, load_version
from contactrank.ml.tracking import client as mlflow_client
from contactrank.ml.tracking import configure
from contactrank.ml.train_logging import TAG_DATE
from contactrank.settings import Settings

HISTORY_DAYS = 60  # outcome mix, quarantine and reach-by-hour look back this far
MAX_ROWS = 200_000  # rows scored for calibration, gains and drift: stable curves at bounded cost
MAX_WINDOW_DAYS = 14  # training days sampled to represent the window


class MissingInput(Exception):
    """An input the panel needs does not exist (yet); the message says which."""


@dataclass
class RunsOfDay:
    """The training run of D and the run whose challenger was gated on D (often the same run)."""

    trained: Any = None
    gated: Any = None

    @property
    def of_day(self) -> Any:
        return self.trained or self.gated


def one_line(exc: BaseException) -> str:
    """The first line of an exception's message, bounded: what a panel or a log line can show."""
    return (str(exc).strip().splitlines() or [""])[0][:300]


class ReportInputs:
    """Lazy access to everything the panels read; failures are remembered, not retried."""

    def __init__(self, settings: Settings, d: date):
        self.settings = settings
        self.d = d
        self._cache: dict[str, Any] = {}

    def _once(self, name: str, loader: Callable[[], Any]) -> Any:
        if name not in self._cache:
            try:
                self._cache[name] = (True, loader())
            except Exception as exc:  # noqa: BLE001 - re-raised to every panel that asks
                self._cache[name] = (False, exc)
        ok, value = self._cache[name]
        if not ok:
            raise value
        return value

    # --- lake ------------------------------------------------------------------------------
    def history_days(self, kind: str) -> list[date]:
        start = self.d - timedelta(days=HISTORY_DAYS - 1)
        return [t for t in lake.partition_dates(self.settings, kind) if start <= t <= self.d]

    def attempt_stats(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """(daily outcome counts, reach by channel and local hour) over the history window."""
        return self._once("attempt_stats", self._attempt_stats)

    def _attempt_stats(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        days = self.history_days("attempts")
        if not days:
            raise MissingInput(
                f"no attempts partition in the lake for the {HISTORY_DAYS} days up to {self.d}"
            )
        files = [lake.partition_dir(self.settings, "attempts", t) / lake.DATA_FILE for t in days]
        reach = ", ".join(quote_literal(o) for o in sorted(REACH_OUTCOMES))
        con = lake.duckdb_connect(self.settings)
        try:
            con.execute(
                "CREATE TEMP VIEW attempts AS SELECT * FROM " + read_parquet(files, hive_partitioning="true")
            )
            mix = con.execute("SELECT date, outcome, count(*) AS n FROM attempts GROUP BY ALL").df()
            by_hour = con.execute(
                "SELECT channel, local_hour, count(*) AS n, "
                f"count(*) FILTER (WHERE outcome IN ({reach})) AS reached "
                "FROM attempts WHERE local_hour IS NOT NULL GROUP BY ALL"
            ).df()
        finally:
            con.close()
        return mix, by_hour

    def training_days(self) -> list[date]:
        return [t for t in lake.partition_dates(self.settings, "training") if t <= self.d]

    def labelled(self) -> tuple[date, pd.DataFrame]:
        """The newest labelled day up to D and (a sample of) its training rows."""
        return self._once("labelled", self._labelled)

    def _labelled(self) -> tuple[date, pd.DataFrame]:
        days = self.training_days()
        if not days:
            raise MissingInput(f"no labelled day yet (no training partition up to {self.d})")
        newest = days[-1]
        return newest, self._read([newest], MAX_ROWS)

    def window(self) -> tuple[list[date], pd.DataFrame]:
        """Training days of the window before the newest labelled day, sampled."""
        return self._once("window", self._window)

    def _window(self) -> tuple[list[date], pd.DataFrame]:
        newest, _ = self.labelled()
        start = newest - timedelta(days=self.settings.train_window_days)
        days = [t for t in self.training_days() if start <= t < newest]
        if not days:
            raise MissingInput(f"only one labelled day ({newest}): no training window to compare with")
        if len(days) > MAX_WINDOW_DAYS:
            picks = np.unique(np.linspace(0, len(days) - 1, MAX_WINDOW_DAYS).round().astype(int))
            days = [days[i] for i in picks]
        return days, self._read(days, MAX_ROWS)

    def _read(self, days: list[date], max_rows: int) -> pd.DataFrame:
        per_day = max(1, max_rows // len(days))
        frames = []
        for t in days:
            table = lake.read_partition(self.settings, "training", t)
            if table is None:
                continue
            df = table.to_pandas()
            if len(df) > per_day:
                df = df.sample(n=per_day, random_state=t.toordinal())
            frames.append(df)
        if not frames:
            raise MissingInput(f"training partitions {days[0]}..{days[-1]} could not be read")
        return pd.concat(frames, ignore_index=True)

    # --- model -----------------------------------------------------------------------------
    def champion(self) -> tuple[Any, dict[str, Any]]:
        return self._once("champion", self._champion)

    def _champion(self) -> tuple[Any, dict[str, Any]]:
        """The model of D: the version D's export was scored with, else the champion if it existed on D.

        Reading the version from the manifest keeps a re-run of an old date on the model of that
        date, not on whatever the champion is today.
        """
        if not self.mlflow_store_exists():
            raise MissingInput("no model yet: the MLflow store does not exist")
        published = ((self.manifest() or {}).get("model") or {}).get("version")
        if published is not None:
            try:
                return load_version(self.settings, published), {
                    "version": str(published),
                    "source": "published",
                }
            except Exception as exc:  # noqa: BLE001 - an unloadable version is a missing input here
                raise MissingInput(
                    f"model version {published} of the export could not be loaded: {one_line(exc)}"
                ) from None
        try:
            model, info = load_champion(self.settings)
        except Exception as exc:  # noqa: BLE001 - no champion is a missing input, whatever MLflow raises
            raise MissingInput(f"no champion model: {one_line(exc)}") from None
        trained = trained_on(self.settings, info.get("run_id"))
        if trained is not None and trained > self.d.isoformat():
            raise MissingInput(
                f"no model as of {self.d}: the champion v{info.get('version')} was trained on {trained}"
            )
        return model, {**info, "version": str(info.get("version")), "source": "champion"}

    def label_column(self) -> str:
        label = self.settings.label
        try:
            label = getattr(self.champion()[0], "label", label) or label
        except Exception:  # noqa: BLE001 - without a model the settings decide
            pass
        return LABEL_COLUMNS.get(label, LABEL_COLUMNS["reach"])

    def labelled_scores(self) -> np.ndarray:
        return self._once("labelled_scores", lambda: self._predict(self.labelled()[1]))

    def window_scores(self) -> np.ndarray:
        return self._once("window_scores", lambda: self._predict(self.window()[1]))

    def _predict(self, df: pd.DataFrame) -> np.ndarray:
        model, _ = self.champion()
        return np.asarray(model.predict_proba(df, num_threads=self.settings.num_threads), dtype="float64")

    # --- export ----------------------------------------------------------------------------
    def export(self) -> tuple[pd.DataFrame, str]:
        """The published rows of D (export directory, else the ``scores`` partition) and their source."""
        return self._once("export", self._export)

    def _export(self) -> tuple[pd.DataFrame, str]:
        path = self.export_dir() / "priority.parquet"
        if path.is_file():
            return lake.read_table(path).to_pandas(), str(path)
        table = lake.read_partition(self.settings, "scores", self.d)
        if table is not None:
            return table.to_pandas(), str(lake.partition_dir(self.settings, "scores", self.d))
        raise MissingInput(f"nothing published for {self.d} (no {path}, no scores partition)")

    def export_dir(self) -> storage.Location:
        return storage.committed(self.settings.exports / "priority" / f"date={self.d.isoformat()}")

    def manifest(self) -> dict[str, Any] | None:
        path = self.export_dir() / "_manifest.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    def ingest_report(self) -> dict[str, Any] | None:
        path = lake.partition_dir(self.settings, "attempts", self.d) / "_ingest_report.json"
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return None

    # --- MLflow ----------------------------------------------------------------------------
    def mlflow_store_exists(self) -> bool:
        """False when the default SQLite store was never created: then no model and no run exist."""
        uri = self.settings.tracking_uri
        if uri.startswith("sqlite:///"):
            return Path(uri[len("sqlite:///") :]).is_file()
        return True

    def runs(self) -> RunsOfDay:
        """The MLflow runs of D (none when there is no store yet)."""
        return self._once(
            "runs",
            lambda: runs_of_day(self.settings, self.d) if self.mlflow_store_exists() else RunsOfDay(),
        )


def trained_on(settings: Settings, run_id: str | None) -> str | None:
    """The business date (ISO) a registered model's training run was made for, when recorded."""
    if not run_id:
        return None
    return mlflow_client(settings).get_run(run_id).data.tags.get(TAG_DATE)


def runs_of_day(settings: Settings, d: date) -> RunsOfDay:
    """The newest run trained for ``d`` and the newest run gated on ``d``, by their date tags."""
    experiment_id = configure(settings)
    client = mlflow_client(settings)

    def newest(tag: str) -> Any:
        runs = client.search_runs(
            [experiment_id],
            filter_string=f"tags.`{tag}` = {quote_literal(d.isoformat())}",
            order_by=["attributes.start_time DESC"],
            max_results=1,
        )
        return runs[0] if runs else None

    return RunsOfDay(trained=newest(TAG_DATE), gated=newest(TAG_GATE_DATE))
