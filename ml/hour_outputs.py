"""The model's output for every candidate at every hour its channel allows.

Scoring reads these outputs to choose each candidate's best hour and score it there. Training
reads the same outputs for the validation rows, to calibrate the number the file publishes
(``ml.file_calibration``). Both call :func:`read_hours`, so the two cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pandas as pd

from contactrank.features.context import HourInputs, add_context
from contactrank.ml.hours import HourBlock, HourProfile, allowed_hours, fill_hours
from contactrank.ml.model import ContactModel
from contactrank.ml.predictor import Predictor, feature_values, model_matrix
from contactrank.settings import Settings


@dataclass
class HourOutputs:
    """Each candidate's smoothed output at each allowed hour, and the inputs scoring needs beside it."""

    hour_of: np.ndarray  # the hour of each column, in the recorded clock
    allowed: np.ndarray  # candidates x hours
    raws: np.ndarray  # candidates x hours: smoothed booster output, -inf where the hour is not allowed
    base: np.ndarray  # the candidates' model inputs before any hour's context is written in
    blocks: list[HourBlock]
    context_of: dict[int, tuple[list[int], np.ndarray]]  # per hour column: context columns and values
    profile: HourProfile | None


def read_hours(
    settings: Settings,
    model: ContactModel,
    predictor: Predictor,
    df: pd.DataFrame,
    day: date,
    clock_shift: pd.Series | None = None,
) -> HourOutputs:
    """The outputs of the candidates ``df`` (feature rows) for a contact on ``day``.

    Hours are in the recorded clock. ``clock_shift`` (per ``person_id``, ``timezones.clock_shifts``)
    moves each person's allowed window into that clock.
    """
    shift = None
    if clock_shift is not None and len(clock_shift):
        shift = df["person_id"].astype(str).map(clock_shift).fillna(0).to_numpy(dtype=np.int64)
    hours, allowed = allowed_hours(settings, df["channel"], shift)
    hour_of = np.asarray(hours, dtype=np.int64)
    base = model_matrix(model, model.prepare(df))
    raws = np.full((len(df), len(hours)), -np.inf)
    blocks, total = hour_blocks(hours, allowed)
    inputs = HourInputs.of(df)
    profile = HourProfile.of(settings, inputs, hour_of, shift)
    context_of: dict[int, tuple[list[int], np.ndarray]] = {}
    if blocks:
        raw, context_of = raw_by_hour(model, predictor, base, inputs, blocks, total, day)
        fill_hours(raw, raws, blocks)
    return HourOutputs(hour_of, allowed, raws, base, blocks, context_of, profile)


def hour_blocks(hours: list[int], allowed: np.ndarray) -> tuple[list[HourBlock], int]:
    """The non-empty blocks of (candidate x hour) rows and their total row count."""
    blocks: list[HourBlock] = []
    offset = 0
    for j, h in enumerate(hours):
        rows = np.flatnonzero(allowed[:, j])
        if len(rows):
            blocks.append((j, h, rows, offset))
            offset += len(rows)
    return blocks, offset


def raw_by_hour(
    model: ContactModel,
    predictor: Predictor,
    base: np.ndarray,
    inputs: HourInputs | None,
    blocks: list[HourBlock],
    total: int,
    day: date,
) -> tuple[np.ndarray, dict[int, tuple[list[int], np.ndarray]]]:
    """The booster's output of every (candidate x hour) row, in block order, and each hour's
    context as model inputs (its columns and one row per row of the block).

    The rows are predicted one hour at a time in one candidate-sized matrix whose context columns
    are rewritten per hour: a (candidate x hour) matrix would be allocated and filled anew for every
    batch, which cost more than predicting it. The context comes from ``features.context.add_context``
    (the definition used in training), given the candidates' stored inputs of the hour-dependent
    features (``inputs``, None for a model without them), read once for all hours.
    """
    raw = np.empty(total, dtype=np.float64)
    context_of: dict[int, tuple[list[int], np.ndarray]] = {}
    every_hour = base.copy()  # the block of an hour allowed for every candidate
    written: set[int] = set()
    for j, h, rows, offset in blocks:
        every = len(rows) == len(base)
        hour_inputs = inputs if inputs is None or every else inputs.take(rows)
        context = add_context(pd.DataFrame(index=pd.RangeIndex(len(rows))), day, h, hour_inputs=hour_inputs)
        names = [c for c in context.columns if c in model.features]
        cols = [model.features.index(c) for c in names]
        values = np.empty((len(rows), len(names)))
        for i, c in enumerate(names):
            values[:, i] = feature_values(model, c, context[c])
        if every:
            block = every_hour
            stale = sorted(written - set(cols))  # another hour's context column this hour lacks
            block[:, stale] = base[:, stale]
            written = set(cols)
        else:
            block = np.take(base, rows, axis=0)
        block[:, cols] = values
        raw[offset : offset + len(rows)] = predictor.raw(block)
        context_of[j] = (cols, values)
    return raw, context_of


def rows_at(outputs: HourOutputs, best: np.ndarray) -> np.ndarray:
    """The model inputs of each candidate at its hour column ``best``."""
    x = outputs.base.copy()
    for j, _, rows, _ in outputs.blocks:
        sel = best[rows] == j
        cols, values = outputs.context_of[j]
        if cols and sel.any():
            x[np.ix_(rows[sel], cols)] = values[sel]
    return x
