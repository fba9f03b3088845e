"""Business dates: strict parsing (they become path components) and small helpers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import date, timedelta

from contactrank.errors import InputError

_DATE_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
_ID_RE = re.compile(r"[^\x00-\x1f/\\]{1,256}")


def parse_date(value: str | date) -> date:
    """Parse ``YYYY-MM-DD``; anything else (``../../etc``, ``2026-13-01``) raises InputError."""
    if isinstance(value, date):
        return value
    text = str(value).strip()
    if not _DATE_RE.fullmatch(text):
        raise InputError(f"invalid date {value!r}: expected YYYY-MM-DD")
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise InputError(f"invalid date {value!r}: {exc}") from None


def validate_id(value: str, what: str = "id") -> str:
    """Refuse ids that are empty, too long, or carry path separators or control characters."""
    text = str(value)
    if not _ID_RE.fullmatch(text) or text in {".", ".."}:
        raise InputError(f"invalid {what} {value!r}")
    return text


def date_range(start: date, end: date) -> Iterator[date]:
    """Every date from start to end, both included."""
    d = start
    while d <= end:
        yield d
        d += timedelta(days=1)
