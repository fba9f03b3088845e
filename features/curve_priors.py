"""The hour curves' prior in the lake: fitted on one day, read by the days after it.

The prior (``hour_curves.CurveFit``) is everyone's: the weights of a few thousand habit components,
the offsets and, per attribute value, the habits' weights. It is fitted from everyone's tries of the
habit window, which move little from one day to the next, and its fit is most of what the curves
cost (EM rounds over every sampled person's likelihoods); each person's posterior under it is
cheap. So a day's curves are read under the newest prior stored for an earlier date in
``(d - settings.hour_curve_refit_days, d)``; only when there is none is a prior fitted, and stored
under d for the days after it (with a cadence of 1 day nothing is stored: nobody would read it).

A day built again reads the prior it read the first time, or fits its own again from the same
inputs, so its curves are the same: idempotent for its date, as long as the days are built in date
order (the daily run and a backfill are). A day never reads its own date's prior, so a day whose
files were delivered again is fitted on what it holds now. A prior fitted by other code
(``PRIOR_VERSION``), on another grid or with other own-lines counts is not read.

Layout: ``curve_prior/date=D/part-0.parquet``, one row per part of the fit (``part``: ``base``,
``channel_offset``, ``retry_offset``, ``level_weight``, ``habit_weight``, or ``habit_by_value``
with its ``attribute`` and ``value``), the numbers in ``weights``; ``version`` on every row. It holds
no person's row: only sums over everyone, and attribute values held by many.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from contactrank.features.hour_curves import LEVELS, PEAKS, CurveFit, bumps
from contactrank.features.hour_profiles import values_of
from contactrank.features.lake import partition_dates, read_partition, write_partition
from contactrank.settings import Settings

CURVE_PRIOR = "curve_prior"
# bump when the fit or its grid changes: a prior stored by other code is fitted again, not read
PRIOR_VERSION = 1
_SCALARS = ("base", "retry_offset")
_VECTORS = ("channel_offset", "level_weight", "habit_weight")


@dataclass
class StoredPrior:
    """A prior and, per attribute it follows, the values its rows of ``habit_by_value`` stand for."""

    fit: CurveFit
    vocabularies: dict[str, list[str]]

    def for_attributes(self, names: list[str]) -> CurveFit:
        """The fit with ``habit_by_value`` in the order of ``names`` (no rows for an attribute the
        prior does not follow: ``codes_in`` gives none of its values a code)."""
        by_name = dict(zip(self.vocabularies, self.fit.habit_by_value, strict=True))
        by_value = [by_name.get(n, np.empty((0, len(self.fit.habit_weight)))) for n in names]
        return CurveFit(self.fit.base, self.fit.channel_offset, self.fit.retry_offset,
                        self.fit.level_weight, self.fit.habit_weight, by_value)  # fmt: skip


def codes_in(vocabularies: dict[str, list[str]], names: list[str], columns: list[pa.Array]) -> np.ndarray:
    """(rows x ``names``) each row's value index in its attribute's vocabulary (-1: none, or a value
    or an attribute the vocabularies do not know)."""
    codes = np.full((len(columns[0]) if columns else 0, len(names)), -1, dtype=np.int64)
    for a, (name, column) in enumerate(zip(names, columns, strict=True)):
        vocabulary = pa.array(vocabularies.get(name, []), pa.string())
        codes[:, a] = pc.index_in(column, value_set=vocabulary).fill_null(-1).to_numpy()
    return codes


def vocabularies_of(names: list[str], columns: list[pa.Array]) -> dict[str, list[str]]:
    """Per attribute, its sorted distinct values (as ``hour_profiles.value_codes`` indexes them)."""
    return {n: values_of(c) for n, c in zip(names, columns, strict=True)}


def _key(settings: Settings) -> str:
    """What a stored prior must have been fitted with to be read: this code, this grid, these counts."""
    grid = f"levels={len(LEVELS)}:habits={len(bumps())}:peaks={len(PEAKS)}"
    return f"{PRIOR_VERSION}:{grid}:own_lines={settings.hour_habit_own_lines}"


def newest_prior(settings: Settings, d: date) -> StoredPrior | None:
    """The newest stored prior dated in ``(d - hour_curve_refit_days, d)`` fitted by this code with
    these settings, or None."""
    if settings.hour_curve_refit_days == 1:
        return None
    for x in reversed(partition_dates(settings, CURVE_PRIOR)):
        if x >= d:
            continue
        if (d - x).days >= settings.hour_curve_refit_days:
            return None
        table = read_partition(settings, CURVE_PRIOR, x)
        if table is not None and table.num_rows and set(table["version"].to_pylist()) == {_key(settings)}:
            return _from_table(table)
    return None


def store_prior(settings: Settings, d: date, prior: StoredPrior) -> None:
    """``curve_prior/date=d``, replacing any earlier one of d (nothing with a cadence of 1 day)."""
    if settings.hour_curve_refit_days == 1:
        return
    fit = prior.fit
    rows: list[tuple[str, str | None, str | None, list[float]]] = [
        *((name, None, None, [float(getattr(fit, name))]) for name in _SCALARS),
        *((name, None, None, np.asarray(getattr(fit, name), np.float64).tolist()) for name in _VECTORS),
    ]
    for (name, values), weights in zip(prior.vocabularies.items(), fit.habit_by_value, strict=True):
        for value, row in zip(values, np.asarray(weights, np.float64), strict=True):
            rows.append(("habit_by_value", name, value, row.tolist()))
    parts, attributes, values, weights = (list(column) for column in zip(*rows, strict=True))
    table = pa.table({
        "part": pa.array(parts, pa.string()), "attribute": pa.array(attributes, pa.string()),
        "value": pa.array(values, pa.string()), "weights": pa.array(weights, pa.list_(pa.float64())),
        "version": pa.array([_key(settings)] * len(rows), pa.string()),
    })  # fmt: skip
    write_partition(settings, CURVE_PRIOR, d, table)


def _from_table(table: pa.Table) -> StoredPrior:
    rows = table.to_pylist()
    single = {r["part"]: np.asarray(r["weights"], np.float64) for r in rows if r["part"] != "habit_by_value"}
    vocabularies: dict[str, list[str]] = {}
    by_value: dict[str, list[list[float]]] = {}
    for r in rows:
        if r["part"] == "habit_by_value":
            vocabularies.setdefault(r["attribute"], []).append(r["value"])
            by_value.setdefault(r["attribute"], []).append(r["weights"])
    fit = CurveFit(float(single["base"][0]), single["channel_offset"], float(single["retry_offset"][0]),
                   single["level_weight"], single["habit_weight"],
                   [np.asarray(by_value[n], np.float64) for n in vocabularies])  # fmt: skip
    return StoredPrior(fit, vocabularies)
