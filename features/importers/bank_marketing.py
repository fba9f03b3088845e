"""UCI Bank Marketing (Moro et al.) -> landing files of docs/contract.md §1.

The data set (``PROVENANCE.md`` of the public data sets' copy, §1 and §5) holds one row per client
and campaign, describing the *last* call of that campaign, with the rows in time order from May 2008
to Nov 2010. The mapping, for each data row ``i`` (1-based, the file has no client id):

- **person** ``bm<i>``: one person per row (the same real client may appear in several rows, but
  nothing links them).
- **contact** ``bm<i>-c``: one opaque address per person, channel ``voice``; ``source`` is the
  ``contact`` column (``cellular``, ``telephone`` or ``unknown``).
- **attempt** ``bm<i>-a``: the row's last call, on the row's date. The year is not in the file: it
  is inferred from the row order (the month sequence wraps around at each new year, starting in
  ``start_year``). The time of day is not in the file either: every call is placed at
  ``hour``:00 Lisbon time (default 12, a neutral midday; the bank is Portuguese), with the UTC
  offset Lisbon had on that date, so ``f_hour`` carries no information on this data. Outcome:
  ``converted`` when ``y == yes``; otherwise ``no_answer`` when ``duration == 0``, else
  ``right_party``. ``duration`` is written only as ``duration_s``, an *outcome* of the attempt:
  it is never a person attribute, so it can never become a feature.
- **person attributes**: every client column (age, job, marital, education, default, balance,
  housing, loan; for bank-additional also the five macro indicators, dots in the names replaced
  by ``_``) and the counts known before the call: ``campaign_prior_calls`` (``campaign`` - 1, the
  calls of this campaign before the last one), ``previous``, ``pdays`` (kept as the authors code
  it: -1 in bank-full, 999 in bank-additional mean "never contacted before") and ``poutcome``.
- **delivery date**: contacts and persons are delivered the calendar day *before* the call
  (``updated_at`` 18:00 Lisbon): a training example of date D sees the state at the end of D-1
  (docs/contract.md §3), so attributes delivered on D itself would never reach the model. That is
  also how a dialer works: tomorrow's call list and its client data are known today.
- **every calendar day** from the day before the first call to the last call gets an attempts
  folder (header only on days without calls), so ``contactrank backfill`` can run over the whole
  period.

``bank-additional-full.csv`` has ``month`` and ``day_of_week`` but no day of month: each run of
rows with the same (year, month, weekday) is placed on the first such weekday after the previous
run's date (clamped to the month's last such weekday), so its dates are approximate.

The output is deterministic (same input, same bytes); every file is written to a temporary name
and renamed into place, so re-running the import is idempotent.
"""

from __future__ import annotations

import logging
import os
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from contactrank.errors import InputError
from contactrank.features.schema import ATTEMPT_LANDING_COLUMNS

log = logging.getLogger(__name__)

TZ = ZoneInfo("Europe/Lisbon")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FULL_COLUMNS = (
    "age", "job", "marital", "education", "default", "balance", "housing", "loan", "contact",
    "day", "month", "duration", "campaign", "pdays", "previous", "poutcome", "y",
)  # fmt: skip
ADDITIONAL_COLUMNS = (
    "age", "job", "marital", "education", "default", "housing", "loan", "contact", "month",
    "day_of_week", "duration", "campaign", "pdays", "previous", "poutcome", "emp.var.rate",
    "cons.price.idx", "cons.conf.idx", "euribor3m", "nr.employed", "y",
)  # fmt: skip
# Columns that describe the call itself (its date or its result): never person attributes.
NOT_ATTRIBUTES = frozenset({"contact", "day", "month", "day_of_week", "duration", "campaign", "y"})
ATTEMPT_COLUMNS = ATTEMPT_LANDING_COLUMNS
CONTACT_COLUMNS = ("person_id", "contact_id", "channel", "source", "updated_at")
UPDATE_HOUR = 18  # local hour of the day-before delivery of contacts and persons
MAX_YEAR_WRAPS = 5  # more month wraps than this: the rows are not in time order (bank.csv is shuffled)


# Long on purpose: one pass from the source rows to the four landing kinds, in the order of the mapping.
def import_bank_marketing(
    path: Path,
    landing: Path,
    *,
    start_year: int = 2008,
    hour: int = 12,
    limit: int | None = None,
) -> dict[str, Any]:
    """Map ``bank-full.csv`` or ``bank-additional-full.csv`` (detected by header) to landing files.

    ``limit`` keeps the first N data rows (tests, quick runs). Returns figures: variant, rows,
    persons, days (calendar days with landing folders), call_days, first_date, last_date,
    positives, no_answer, files.
    """
    path, landing = Path(path), Path(landing)
    raw, variant, dates = read_calls(path, start_year=start_year, limit=limit)
    if not 0 <= hour <= 23:
        raise InputError(f"hour {hour} is not a local hour 0-23")

    n = len(raw)
    ids = pd.Series([f"bm{i:06d}" for i in range(1, n + 1)])
    day = pd.Series(dates, dtype=object)
    before = pd.Series([d - timedelta(days=1) for d in dates], dtype=object)
    duration = pd.to_numeric(raw["duration"], errors="raise").astype("float64")
    converted = raw["y"].str.strip().str.lower().eq("yes").to_numpy()
    outcome = np.where(converted, "converted", np.where(duration.to_numpy() == 0, "no_answer", "right_party"))

    attempts = pd.DataFrame(
        {
            "attempt_id": ids + "-a",
            "person_id": ids,
            "contact_id": ids + "-c",
            "channel": "voice",
            "attempted_at": _stamps(dates, hour),
            "outcome": outcome,
            "campaign_id": "",
            "duration_s": duration,
            "_date": day,
        }
    )
    stamps_before = _stamps([d - timedelta(days=1) for d in dates], UPDATE_HOUR)
    contacts = pd.DataFrame(
        {
            "person_id": ids,
            "contact_id": ids + "-c",
            "channel": "voice",
            "source": raw["contact"].str.strip().str.lower().replace("", "unknown"),
            "updated_at": stamps_before,
            "_date": before,
        }
    )
    persons = _persons(raw, ids, stamps_before, before)

    first, last = min(dates), max(dates)
    files = 0
    files += _write_kind(
        landing / "attempts", attempts, first - timedelta(days=1), last, list(ATTEMPT_COLUMNS)
    )
    files += _write_kind(landing / "contacts", contacts, None, None, list(CONTACT_COLUMNS))
    files += _write_kind(
        landing / "persons", persons, None, None, [c for c in persons.columns if c != "_date"]
    )
    out = {
        "dataset": "bank-marketing",
        "variant": variant,
        "source": str(path),
        "landing": str(landing),
        "rows": n,
        "persons": n,
        "days": (last - first).days + 2,
        "call_days": int(day.nunique()),
        "first_date": first.isoformat(),
        "last_date": last.isoformat(),
        "positives": int(converted.sum()),
        "no_answer": int((outcome == "no_answer").sum()),
        "attributes": [c for c in persons.columns if c not in ("person_id", "updated_at", "_date")],
        "local_hour": hour,
        "files": files,
    }
    log.info(
        "bank-marketing import: %s",
        {k: out[k] for k in ("variant", "rows", "days", "first_date", "last_date")},
    )
    return out


def read_calls(
    path: Path, *, start_year: int = 2008, limit: int | None = None
) -> tuple[pd.DataFrame, str, list[date]]:
    """The rows of ``bank-full.csv`` or ``bank-additional-full.csv`` as strings, the variant, and
    the date of each call (the file has months and days, not years: see the module docstring)."""
    path = Path(path)
    raw, variant = _read(path, limit)
    return raw, variant, _dates(raw, variant, start_year, path)


def _persons(raw: pd.DataFrame, ids: pd.Series, stamps_before: list[str], before: pd.Series) -> pd.DataFrame:
    """One row per person: every client column and the counts known before the call."""
    persons = pd.DataFrame({"person_id": ids, "updated_at": stamps_before})
    for col in raw.columns:
        if col in NOT_ATTRIBUTES:
            continue
        persons[col.replace(".", "_")] = raw[col].to_numpy()
    persons.insert(
        persons.columns.get_loc("pdays"), "campaign_prior_calls", pd.to_numeric(raw["campaign"]) - 1
    )
    persons["_date"] = before
    assert "duration" not in persons.columns  # the one rule this importer exists to keep
    return persons


# --- reading -----------------------------------------------------------------------------------


def _read(path: Path, limit: int | None) -> tuple[pd.DataFrame, str]:
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    try:
        raw = pd.read_csv(path, sep=";", dtype=str, keep_default_na=False, nrows=limit)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise InputError(f"{path}: unreadable as a ';'-separated CSV ({str(exc).splitlines()[0]})") from None
    raw.columns = [c.strip() for c in raw.columns]
    cols = tuple(raw.columns)
    if cols == FULL_COLUMNS:
        variant = "bank-full"
    elif cols == ADDITIONAL_COLUMNS:
        variant = "bank-additional"
    else:
        raise InputError(
            f"{path}: header {';'.join(cols)[:200]!r} is neither bank-full nor bank-additional(-full)"
        )
    if raw.empty:
        raise InputError(f"{path}: no data rows")
    for col in raw.columns:
        raw[col] = raw[col].str.strip()
    for col in ("duration", "campaign"):
        bad = ~raw[col].str.fullmatch(r"\d+")
        if bad.any():
            row = int(np.flatnonzero(bad)[0]) + 1
            raise InputError(
                f"{path}: data row {row}, column {col!r}: {raw[col].iloc[row - 1]!r} is not a count"
            )
    if (raw["campaign"].astype(int) < 1).any():
        row = int(np.flatnonzero(raw["campaign"].astype(int) < 1)[0]) + 1
        raise InputError(
            f"{path}: data row {row}, column 'campaign': must be at least 1 (it counts the last call)"
        )
    return raw, variant


def _month_index(raw: pd.DataFrame, path: Path) -> np.ndarray:
    month = raw["month"].str.lower()
    bad = ~month.isin(MONTHS)
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 1
        raise InputError(
            f"{path}: data row {row}, column 'month': {raw['month'].iloc[row - 1]!r} is not a month"
        )
    return month.map({m: i + 1 for i, m in enumerate(MONTHS)}).to_numpy()


def _years(months: np.ndarray, start_year: int, path: Path) -> np.ndarray:
    """The year of every row: a month lower than the previous row's starts a new year."""
    wraps = np.concatenate([[0], np.cumsum(np.diff(months) < 0)])
    if wraps[-1] > MAX_YEAR_WRAPS:
        raise InputError(
            f"{path}: the month sequence wraps {int(wraps[-1])} times: the rows are not in time order, "
            "so their year cannot be inferred (bank.csv and bank-additional.csv are shuffled subsets: "
            "use bank-full.csv or bank-additional-full.csv)"
        )
    return start_year + wraps


def _dates(raw: pd.DataFrame, variant: str, start_year: int, path: Path) -> list[date]:
    months = _month_index(raw, path)
    years = _years(months, start_year, path)
    if variant == "bank-full":
        days = pd.to_numeric(raw["day"], errors="coerce").to_numpy()
        out = []
        for i, (y, m, dd) in enumerate(zip(years, months, days, strict=True)):
            try:
                out.append(date(int(y), int(m), int(dd)))
            except (ValueError, TypeError):
                raise InputError(
                    f"{path}: data row {i + 1}: day {raw['day'].iloc[i]!r} of {MONTHS[m - 1]} {y} "
                    "is not a date"
                ) from None
        return out
    return _dates_from_weekdays(raw, years, months, path)


def _dates_from_weekdays(raw: pd.DataFrame, years: np.ndarray, months: np.ndarray, path: Path) -> list[date]:
    dow = raw["day_of_week"].str.lower()
    bad = ~dow.isin(WEEKDAYS)
    if bad.any():
        row = int(np.flatnonzero(bad)[0]) + 1
        raise InputError(
            f"{path}: data row {row}, column 'day_of_week': {raw['day_of_week'].iloc[row - 1]!r} "
            "is not a weekday"
        )
    wd = dow.map({d: i for i, d in enumerate(WEEKDAYS)}).to_numpy()
    key = years * 1000 + months * 10 + wd
    starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]]))
    run_dates: list[date] = []
    cur: date | None = None
    for s in starts:
        y, m, w = int(years[s]), int(months[s]), int(wd[s])
        first = date(y, m, 1)
        lo = first if cur is None or (cur.year, cur.month) != (y, m) else cur + timedelta(days=1)
        d = lo + timedelta(days=(w - lo.weekday()) % 7)
        if d.month != m:  # more runs than weeks: stay on the month's last such weekday
            d = cur if cur is not None and cur.weekday() == w and cur.month == m else d - timedelta(days=7)
            while d.month != m:
                d -= timedelta(days=7)
        run_dates.append(d)
        cur = max(cur, d) if cur is not None and (cur.year, cur.month) == (y, m) else d
    lengths = np.diff(np.concatenate([starts, [len(raw)]]))
    return [d for d, k in zip(run_dates, lengths, strict=True) for _ in range(int(k))]


# --- writing -----------------------------------------------------------------------------------


def _stamps(dates: list[date], hour: int) -> list[str]:
    """ISO 8601 with the Lisbon offset of each date, at ``hour``:00 local."""
    cache: dict[date, str] = {}
    out = []
    for d in dates:
        s = cache.get(d)
        if s is None:
            s = cache[d] = datetime(d.year, d.month, d.day, hour, tzinfo=TZ).isoformat()
        out.append(s)
    return out


def _write_kind(
    folder: Path, df: pd.DataFrame, fill_from: date | None, fill_to: date | None, columns: list[str]
) -> int:
    """One ``date=D/part-0.csv`` per date of ``df`` (and header-only files on the empty days of
    [fill_from, fill_to]); returns the number of files written."""
    groups = {d: g for d, g in df.groupby("_date", sort=True)}
    if fill_from is not None and fill_to is not None:
        d = fill_from
        while d <= fill_to:
            groups.setdefault(d, df.iloc[0:0])
            d += timedelta(days=1)
    for d, g in groups.items():
        _atomic_csv(folder / f"date={d.isoformat()}" / "part-0.csv", g[columns])
    return len(groups)


def _atomic_csv(target: Path, df: pd.DataFrame) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    df.to_csv(tmp, index=False, lineterminator="\n")
    os.replace(tmp, target)
