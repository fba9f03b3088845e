"""Typed values from landing cells: numbers, booleans, dates, timestamps and contact ids.

Vectorised, no Python loop per row. Every parser takes an Arrow column (strings from a CSV, or a
Parquet file's typed column) and returns the values plus a numpy ``ok`` mask, so the caller can
quarantine the failing rows with a reason and keep the rest.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from contactrank.features.arrow_columns import (
    as_string,
    ascii_digits,
    blank,
    chunks,
    contiguous,
    segment_sums,
    string_buffers,
    to_mask,
    to_numpy_int,
)

# --- numbers, bools, dates ---------------------------------------------------------------------------

_NUMBER_RE = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_TRUE = ("true", "t", "1", "yes", "y")
_FALSE = ("false", "f", "0", "no", "n")


def parse_float(col: pa.Array | pa.ChunkedArray) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(float64 values, ok, present); blanks are null and ok, non-numbers are not ok."""
    if pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_decimal(col.type):
        vals = col.cast(pa.float64())
        present = to_mask(pc.is_valid(vals))
        ok = to_mask(pc.is_finite(pc.fill_null(vals, 0.0)))
        return vals, ok, present
    if pa.types.is_boolean(col.type):
        present = to_mask(pc.is_valid(col))
        return pa.nulls(len(col), pa.float64()), ~present, present
    s = as_string(col)
    present = ~blank(s)
    if present.all() or not present.any() or to_mask(pc.is_null(s))[~present].all():
        try:  # fast path: every value is a plain number (Arrow's parser is strict: no "nan", no spaces)
            vals = pc.cast(s, pa.float64())
            if to_mask(pc.is_finite(pc.fill_null(vals, 0.0))).all():
                return vals, np.ones(len(s), bool), present
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    good = to_mask(pc.match_substring_regex(s, _NUMBER_RE))
    vals = pc.cast(
        pc.utf8_trim_whitespace(pc.if_else(pa.array(good), s, pa.scalar(None, pa.string()))), pa.float64()
    )
    # a well-formed number beyond float64 ("1e400") parses to inf: as unusable as "inf" itself
    good &= to_mask(pc.is_finite(pc.fill_null(vals, 0.0)))
    vals = pc.if_else(pa.array(good), vals, pa.scalar(None, pa.float64()))
    return vals, good | ~present, present


def parse_bool(col: pa.Array, default: bool | None = True) -> tuple[pa.Array, np.ndarray]:
    """(bool values, ok): true/false/t/f/1/0/yes/no, any case; blanks take ``default``."""
    if pa.types.is_boolean(col.type):
        return pc.fill_null(col, default) if default is not None else col, np.ones(len(col), bool)
    if pa.types.is_integer(col.type):
        ok = to_mask(pc.or_kleene(pc.is_null(col), pc.is_in(col, pa.array([0, 1], col.type))))
        vals = pc.not_equal(col, pa.scalar(0, col.type))
        return (pc.fill_null(vals, default) if default is not None else vals), ok
    s = pc.utf8_lower(pc.utf8_trim_whitespace(as_string(col)))
    is_t = to_mask(pc.is_in(s, pa.array(_TRUE)))
    is_f = to_mask(pc.is_in(s, pa.array(_FALSE)))
    empty = blank(s)
    ok = is_t | is_f | empty
    vals = pa.array(
        np.where(is_t, True, np.where(is_f, False, default if default is not None else False)),
        mask=(empty & (default is None)) | ~ok,
    )
    return vals, ok


def parse_date(col: pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(date32 values, ok, present) from ``YYYY-MM-DD`` (a timestamp's date part is accepted)."""
    if pa.types.is_date(col.type):
        return col.cast(pa.date32()), np.ones(len(col), bool), to_mask(pc.is_valid(col))
    if pa.types.is_timestamp(col.type):
        return col.cast(pa.date32()), np.ones(len(col), bool), to_mask(pc.is_valid(col))
    s = pc.utf8_trim_whitespace(as_string(col))
    present = ~blank(s)
    head = pc.utf8_slice_codeunits(s, 0, 10)
    shape = to_mask(pc.match_substring_regex(s, r"^\d{4}-\d{2}-\d{2}([T ].*)?$"))
    ts = pc.strptime(
        pc.if_else(pa.array(shape), head, pa.scalar(None, pa.string())),
        format="%Y-%m-%d",
        unit="s",
        error_is_null=True,
    )
    good = to_mask(pc.is_valid(ts))
    # strptime rolls 02-30 over to 03-02: require the day to survive the round trip
    day = pc.cast(pc.if_else(pa.array(good), pc.utf8_slice_codeunits(head, 8, 10), "0"), pa.int64())
    good &= to_mask(pc.equal(pc.fill_null(pc.day(ts), -1), day))
    vals = pc.if_else(pa.array(good), ts.cast(pa.date32()), pa.scalar(None, pa.date32()))
    return vals, good | ~present, present


# --- timestamps ---------------------------------------------------------------------------------------

_FULL_RE = (
    r"^\s*(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<hm>\d{2}:\d{2})(?P<sec>:\d{2})?(?P<frac>[.,]\d{1,9})?"
    r"\s*(?P<tz>Z|z|UTC|[+-]\d{2}(?::?\d{2})?)?\s*$"
)
_UTC_ZONES = {"UTC", "Etc/UTC", "+00:00", "Z", "GMT"}
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


# stays long: one pass over fixed byte positions; split up it would hand a dozen arrays around
def _iso_fast(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse ``YYYY-MM-DD[T ]HH:MM:SS[Z|+HHMM|+HH:MM]`` straight from the string buffers.

    Returns (UTC micros, hour as written, offset given and non-zero, ok). Vectorised over the
    bytes at fixed positions; anything else is not ok and goes to the slower regex path.
    """
    n = len(arr)
    offs, data = string_buffers(arr)
    start = offs[:-1]
    length = offs[1:] - start
    ok = (length == 19) | (length == 20) | (length == 24) | (length == 25)
    if arr.null_count:
        ok &= to_mask(pc.is_valid(arr))
    zeros = np.zeros(n, np.int64)
    if not ok.any() or data.size == 0:
        return zeros, zeros.astype(np.int8), np.zeros(n, bool), np.zeros(n, bool)
    lengths = np.unique(length[ok]) if not ok.all() else np.unique(length)
    if lengths.size == 1 and ok.all():
        # every value has the same shape: view the bytes as an (n, width) matrix, no copy
        width = int(lengths[0])
        mat = data[offs[0] : offs[0] + n * width].reshape(n, width)
    else:
        idx = np.minimum(start[:, None] + np.arange(25), data.size - 1)
        mat = data[idx]
    zero_col = np.zeros(n, np.uint8)

    def byte(k: int) -> np.ndarray:
        return (mat[:, k] if k < mat.shape[1] else zero_col).astype(np.int32)

    def digits(*positions: int, where: np.ndarray | None = None) -> np.ndarray:
        """The number at ``positions``; rows (in ``where``) with a non-digit there are not ok."""
        nonlocal ok
        value = np.zeros(n, np.int32)
        for k in positions:
            d = byte(k) - 48
            bad = (d < 0) | (d > 9)
            ok &= ~(bad if where is None else bad & where)
            value = value * 10 + d
        return value

    year, month, day = digits(0, 1, 2, 3), digits(5, 6), digits(8, 9)
    hour, minute, second = digits(11, 12), digits(14, 15), digits(17, 18)
    ok &= (byte(4) == 45) & (byte(7) == 45) & (byte(13) == 58) & (byte(16) == 58)
    sep = byte(10)
    ok &= (sep == 84) | (sep == 32) | (sep == 116)  # 'T', ' ', 't'
    leap = (year % 4 == 0) & ((year % 100 != 0) | (year % 400 == 0))
    m = np.clip(month, 1, 12)
    dim = _DAYS_IN_MONTH[m - 1] + ((m == 2) & leap)
    ok &= (
        (year >= 1)
        & (month >= 1)
        & (month <= 12)
        & (day >= 1)
        & (day <= dim)
        & (hour <= 23)
        & (minute <= 59)
        & (second <= 59)
    )
    # the offset: Z, +HHMM or +HH:MM
    b19 = byte(19)
    ok &= (length != 20) | (b19 == 90) | (b19 == 122)
    with_offset = length >= 24
    sign = np.where(b19 == 45, -1, 1)
    ok &= ~with_offset | (b19 == 43) | (b19 == 45)
    oh = np.where(with_offset, digits(20, 21, where=with_offset), 0)
    om_short = byte(22) * 10 + byte(23) - 528  # +HHMM: minutes at 22-23 ('0' * 11 = 528)
    om_long = byte(23) * 10 + byte(24) - 528  # +HH:MM: minutes at 23-24
    b = (length == 24) & ((byte(22) < 48) | (byte(22) > 57) | (byte(23) < 48) | (byte(23) > 57))
    b |= (length == 25) & (
        (byte(22) != 58) | (byte(23) < 48) | (byte(23) > 57) | (byte(24) < 48) | (byte(24) > 57)
    )
    ok &= ~b
    om = np.where(length == 25, om_long, np.where(length == 24, om_short, 0))
    offset_min = np.where(with_offset, sign * (oh * 60 + om), 0)
    ok &= (oh <= 23) & (om <= 59)
    seconds = (
        _days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second - offset_min * 60
    )
    utc_us = np.where(ok, seconds * 1_000_000, 0)
    return utc_us, np.where(ok, hour, 0).astype(np.int8), ok & (offset_min != 0), ok


def _days_from_civil(year: np.ndarray, month: np.ndarray, day: np.ndarray) -> np.ndarray:
    """Days since 1970-01-01 of valid dates, proleptic Gregorian (H. Hinnant's algorithm)."""
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return (era * 146097 + doe - 719468).astype(np.int64)


def _local_hours(utc_us: np.ndarray, local_tz: str) -> np.ndarray:
    return (
        pc.hour(pa.array(utc_us, pa.timestamp("us", tz=local_tz)))
        .to_numpy(zero_copy_only=False)
        .astype(np.int8)
    )


def parse_timestamps(
    col: pa.Array | pa.ChunkedArray, local_tz: str
) -> tuple[pa.Array, pa.Array, np.ndarray, np.ndarray]:
    """(UTC timestamps, local hours int8, ok, present) from ISO 8601 strings or Parquet timestamps.

    The local hour is the hour in the offset the provider gave; timestamps without an offset are
    UTC (docs/contract.md §1) and, like explicit UTC, get the hour in ``local_tz``.
    """
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        if pa.types.is_date(col.type):
            col = col.cast(pa.timestamp("us"))
        tz = col.type.tz
        present = to_mask(pc.is_valid(col))
        utc = col.cast(pa.timestamp("us", tz=tz) if tz else pa.timestamp("us")).cast(pa.int64())
        utc_us = to_numpy_int(pc.fill_null(utc, 0))
        zone = local_tz if (tz is None or tz in _UTC_ZONES) else tz
        hour = _local_hours(utc_us, zone)
        return (
            pa.array(utc_us, pa.timestamp("us", tz="UTC"), mask=~present),
            pa.array(hour, mask=~present),
            present.copy(),
            present,
        )
    s = as_string(col)
    present = ~blank(s)
    parts = [_iso_fast(c) for c in chunks(s)]
    if parts:
        utc_us, hour, given, ok = (np.concatenate(x) for x in zip(*parts, strict=True))
    else:
        utc_us, hour, given, ok = (
            np.zeros(0, np.int64),
            np.zeros(0, np.int8),
            np.zeros(0, bool),
            np.zeros(0, bool),
        )
    retry = np.flatnonzero(~ok & present)
    if retry.size:
        # the general shape: optional seconds, fractions, spaces, 'UTC', '+HH'
        sub = contiguous(s.filter(pa.array(~ok & present)))  # filter: per chunk, unlike take
        m = pc.extract_regex(sub, _FULL_RE)
        matched = to_mask(pc.is_valid(m))
        f = {k: pc.fill_null(pc.struct_field(m, k), "") for k in ("date", "hm", "sec", "frac", "tz")}
        sec = pc.if_else(pc.equal(f["sec"], ""), ":00", f["sec"])
        tz = pc.if_else(pc.equal(pc.utf8_upper(f["tz"]), "UTC"), "Z", f["tz"])
        tz = pc.if_else(pc.equal(pc.utf8_length(tz), 3), pc.binary_join_element_wise(tz, ":00", ""), tz)
        canon = pc.binary_join_element_wise(f["date"], "T", f["hm"], sec, tz, "")
        u2, h2, g2, ok2 = _iso_fast(pc.if_else(pa.array(matched), canon, ""))
        frac = pc.utf8_rpad(
            pc.utf8_slice_codeunits(pc.if_else(pc.equal(f["frac"], ""), ".0", f["frac"]), 1, 7),
            width=6,
            padding="0",
        )
        frac_us = to_numpy_int(pc.cast(pc.if_else(pa.array(ok2), frac, "0"), pa.int64()))
        utc_us[retry] = np.where(ok2, u2 + frac_us, 0)
        hour[retry] = h2
        given[retry] = g2
        ok[retry] = ok2
    utc_rows = ok & ~given
    if utc_rows.any():
        hour[utc_rows] = _local_hours(utc_us[utc_rows], local_tz)
    valid = ok & present
    return (
        pa.array(utc_us, pa.timestamp("us", tz="UTC"), mask=~valid),
        pa.array(hour, mask=~valid),
        ok | ~present,
        present,
    )


# --- contact ids ----------------------------------------------------------------------------------------

_PHONE_RE = r"^(\+|00)?\(?[0-9][0-9 ().\-/]{5,}$"
_E164_RE = r"^\+[1-9][0-9]{7,14}$"


def _id_flags(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(already E.164, contains '@', needs trimming) per value, from the raw bytes of each chunk."""
    parts = []
    for arr in chunks(col):
        n = len(arr)
        if n == 0:
            continue
        offs, data = string_buffers(arr)
        base = offs[0]
        data = data[base : offs[-1]]
        start, end = offs[:-1] - base, offs[1:] - base
        length = end - start
        if data.size == 0:
            parts.append((np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)))
            continue
        last = data.size - 1
        # per-value counts of non-digit bytes and of '@' by segment sums over the bytes
        nondigit = segment_sums((data - 48) > 9, start, length)
        at = segment_sums(data == 64, start, length)
        first = data[np.minimum(start, last)]
        second = data[np.minimum(start + 1, last)]
        final = data[np.maximum(np.minimum(end - 1, last), 0)]
        valid = length > 0
        if arr.null_count:
            valid &= to_mask(pc.is_valid(arr))
        e164 = (
            valid
            & (length >= 9)
            & (length <= 16)
            & (first == 43)
            & (second >= 49)
            & (second <= 57)
            & (nondigit == 1)
        )
        has_at = valid & (at > 0)
        # ASCII whitespace or a non-ASCII byte (maybe Unicode space) at either end: trim
        edge = (first <= 32) | (first >= 128) | (final <= 32) | (final >= 128)
        parts.append((e164, has_at, valid & edge))
    if not parts:
        return np.zeros(0, bool), np.zeros(0, bool), np.zeros(0, bool)
    return tuple(np.concatenate(x) for x in zip(*parts, strict=True))  # type: ignore[return-value]


def _national_to_e164(sub: pa.Array, country_code: str) -> tuple[pa.Array, np.ndarray]:
    """(E.164 candidates, ok) for phone-looking values (see normalise_contact_ids for the rules)."""
    digits = ascii_digits(sub)
    plus = to_mask(pc.starts_with(sub, "+"))
    dbl0 = ~plus & to_mask(pc.starts_with(digits, "00"))
    # one leading trunk '0' is not part of a national number
    nat_digits = pc.if_else(pc.starts_with(digits, "0"), pc.utf8_slice_codeunits(digits, 1, 64), digits)
    national = ~plus & ~dbl0 & (to_numpy_int(pc.binary_length(nat_digits)) <= 11)
    out = pc.if_else(
        pa.array(national),
        pc.binary_join_element_wise(country_code, nat_digits, ""),
        pc.if_else(pa.array(dbl0), pc.utf8_slice_codeunits(digits, 2, 64), digits),
    )
    out = pc.binary_join_element_wise("+", out, "")
    return out, to_mask(pc.match_substring_regex(out, _E164_RE))


def normalise_contact_ids(col: pa.Array | pa.ChunkedArray, country_code: str) -> pa.Array | pa.ChunkedArray:
    """E.164 for phone numbers, lower case for e-mails (anything with an ``@``), others trimmed.

    National numbers (at most 11 digits, one leading trunk ``0`` dropped) get ``+<country_code>``;
    longer digit strings, ``+...`` and ``00...`` are taken as international. A phone-looking
    value that does not come out as 8-15 digits is kept as given (an opaque id).
    Only the values that change are rewritten, in one pass over the column.
    """
    e164, has_at, spaced = _id_flags(col)
    s = col
    if spaced.any():
        s = pc.utf8_trim_whitespace(col)
        e164, has_at, _ = _id_flags(s)
    if e164.all():
        return s
    rest = ~e164
    email = rest & has_at
    changed = np.zeros(len(s), bool)
    new_values: list[tuple[np.ndarray, pa.Array]] = []  # (row indices, their new values)
    if email.any():
        rows = np.flatnonzero(email)
        sub = contiguous(s.filter(pa.array(email)))  # filter: per chunk, unlike take
        ascii_only = sub.buffers()[2] is None or string_buffers(sub)[1].max(initial=0) < 128
        lowered = pc.ascii_lower(sub) if ascii_only else pc.utf8_lower(sub)
        diff = to_mask(pc.not_equal(sub, lowered))
        if diff.any():
            changed[rows[diff]] = True
            new_values.append((rows[diff], lowered.filter(pa.array(diff))))
    maybe = rest & ~email
    if maybe.any():
        rows = np.flatnonzero(maybe)
        sub = contiguous(s.filter(pa.array(maybe)))
        phone = to_mask(pc.match_substring_regex(sub, _PHONE_RE))
        if phone.any():
            sub = sub.filter(pa.array(phone))
            rows = rows[phone]
            out, good = _national_to_e164(sub, country_code)
            good &= to_mask(pc.not_equal(out, sub))
            if good.any():
                changed[rows[good]] = True
                new_values.append((rows[good], out.filter(pa.array(good))))
    if not new_values:
        return s
    # the replacement values in row order: replace_with_mask consumes them in mask order
    rows = np.concatenate([r for r, _ in new_values])
    values = pa.concat_arrays([x for _, x in new_values])
    if len(new_values) > 1:
        values = values.take(pa.array(np.argsort(rows, kind="stable")))
    return pc.replace_with_mask(s, pa.array(changed), values)
