"""The file calibration: a second calibration, fitted on the score that scoring publishes.

The published score is a product of two factors (``ml.hours``). The first is the model's
calibrated probability averaged over the allowed hours. The model's calibrator was fitted on
attempts at their own hour. The second is the habit profile's lift at the chosen hour, which was
fitted on bucket counts. Neither factor was fitted on the product. On the judged worlds the
product stayed under the truth wherever the lift was capped (office hours), and moving either
factor alone fixed one world and broke another (docs/benchmarks.md).

So training scores the validation days' attempts as a file would have scored them, at the hour
each was tried, and fits one more map from that number to the outcome:

- **First tries only.** These are each person's attempts at the earliest hour they were tried
  that day. A file's row is tried first on its day; a retry later the same day, after a miss,
  answers less often.
- **Platt, pulled toward leaving the score as it is.** A few thousand first tries are too few for
  isotonic steps, which moved the file's ECE up on some seeds. Fitted alone, Platt also carries
  the validation days' own level into the next day's file: chosen over no map by out-of-fold
  ECE, it lowered office hours' error but raised `default`'s on the model seeds whose validation
  days answered more often than the judged day. A Gaussian prior centred on the
  identity map (``PRIOR_ROWS``: worth about one judged home's first tries of three days) keeps
  most of the correction where it is large and steady and little of it where it is noise
  (docs/benchmarks.md).

Ranking is unchanged: the map is monotone, so it orders every person's rows as before.
"""

from __future__ import annotations

import logging
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from contactrank.ml import evaluate as ev
from contactrank.ml.dataset import labelled_days
from contactrank.ml.hour_outputs import read_hours
from contactrank.ml.hours import hour_scores
from contactrank.ml.model import Calibrator, ContactModel
from contactrank.ml.predictor import Predictor
from contactrank.ml.timezones import clock_shifts
from contactrank.ml.training_sample import label_column, sample_share
from contactrank.settings import Settings

log = logging.getLogger(__name__)

PRIOR_ROWS = 300.0  # the prior's precision on the map's slope and intercept (PlattCalibrator.fit)
# validation rows read at most (whole persons, as training samples them): a two-parameter map
# needs no more, and the hours of every row are predicted, so this bounds its time at any scale
MAX_ROWS = 50_000


def first_tries(df: pd.DataFrame) -> np.ndarray:
    """Per row of one day's attempts: whether it is at the earliest hour its person was tried that day."""
    hour = pd.to_numeric(df["f_hour"], errors="coerce")
    return (hour == hour.groupby(df["person_id"].astype(str).to_numpy()).transform("min")).to_numpy()


def tried_hour_scores(
    settings: Settings, model: ContactModel, df: pd.DataFrame, day: date
) -> tuple[np.ndarray, np.ndarray]:
    """The score a file would publish for each attempt of ``df`` (attempts on ``day``) at the
    hour it was tried, and whether that hour is one its channel allows (no score where not).

    The file for ``day`` is scored the day before, so each person's clock is read as of then.
    """
    predictor = Predictor(settings, model, 0)
    persons = pd.Series(df["person_id"].astype(str).unique(), dtype=object)
    shifts = clock_shifts(settings, day - timedelta(days=1), persons)
    outputs = read_hours(settings, model, predictor, df, day, shifts)
    hour = pd.to_numeric(df["f_hour"], errors="coerce").to_numpy(dtype=np.float64)
    col = pd.Index(outputs.hour_of).get_indexer(hour)
    found = np.flatnonzero(col >= 0)
    ok = np.zeros(len(df), dtype=bool)
    ok[found] = outputs.allowed[found, col[found]]
    scores = hour_scores(predictor, outputs.raws, np.where(ok, col, 0), outputs.profile)
    return np.where(ok, scores, np.nan), ok


def fit_file_calibrator(
    settings: Settings,
    model: ContactModel,
    days: list[date],
    known_counts: dict[date, tuple[int, int]] | None = None,
) -> tuple[Calibrator | None, dict[str, Any]]:
    """The file calibrator for ``model`` (see the module docstring), fitted on the first tries of
    ``days``; None without any. ``model`` must not carry one yet. ``known_counts``: the days'
    (labelled rows, positives) already counted (``Window.counts``), not read again."""
    if model.file_calibrator is not None:
        raise ValueError("the model already has a file calibrator: it would be fitted on its own output")
    label = label_column(settings)
    share, _ = sample_share(settings, days, MAX_ROWS, known_counts)
    scores, labels = [], []
    for x, df in labelled_days(settings, days, label, share=share):
        df = df[first_tries(df)].reset_index(drop=True)
        if df.empty:
            continue
        score, ok = tried_hour_scores(settings, model, df, x)
        scores.append(score[ok])
        labels.append(df[label].to_numpy(dtype=np.int64)[ok])
    if not scores:
        return None, {"method": "none", "rows": 0}
    score, y = np.concatenate(scores), np.concatenate(labels)
    if len(np.unique(y)) < 2:
        return None, {"method": "none", "rows": len(y)}
    calibrator = ev.PlattCalibrator.fit(score, y, prior_rows=PRIOR_ROWS)
    mapped = calibrator.predict(score)
    report = {
        "method": "platt",
        "a": calibrator.a,
        "b": calibrator.b,
        "rows": len(y),
        "mean_score": float(score.mean()),
        "mean_mapped": float(mapped.mean()),
        "mean_outcome": float(y.mean()),
        "ece_before": ev.ece(y, score),
        "ece_after": ev.ece(y, mapped),
    }
    log.info(
        "file calibration on %d first tries: a %.3f, b %.3f (mean score %.4f -> %.4f, outcome %.4f)",
        len(y),
        calibrator.a,
        calibrator.b,
        report["mean_score"],
        report["mean_mapped"],
        report["mean_outcome"],
    )
    return calibrator, report
