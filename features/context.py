"""The calendar context of an attempt: the one definition used by training and by scoring."""

from __future__ import annotations

from datetime import date
from typing import Any

import numpy as np
import pandas as pd

from contactrank.errors import ContactrankError


class ContextError(ContactrankError):
    """The context could not be added (hours that do not match the rows)."""


def add_context(df: pd.DataFrame, day: date, hour: Any) -> pd.DataFrame:
    """``df`` plus the calendar context of an attempt on ``day`` at local ``hour`` (scalar or array).

    The single definition used by training (day D, the attempt's local hour) and scoring (D+1, each
    allowed hour): ``f_hour`` (0-23), ``f_dow`` (0 = Monday), ``f_month`` (1-12), ``f_dom`` (1-31).
    """
    n = len(df)
    if np.ndim(hour) == 0:
        hours = np.full(n, np.nan if hour is None else hour, dtype="float64")
    else:
        hours = pd.to_numeric(pd.Series(np.asarray(hour)), errors="coerce").to_numpy(
            dtype="float64", na_value=np.nan
        )
        if len(hours) != n:
            raise ContextError(f"add_context: {len(hours)} hours for {n} rows")
    f_hour = hours.astype("int8") if not np.isnan(hours).any() else hours
    return df.assign(
        f_hour=f_hour,
        f_dow=np.full(n, day.weekday(), dtype="int8"),
        f_month=np.full(n, day.month, dtype="int8"),
        f_dom=np.full(n, day.day, dtype="int8"),
    )
