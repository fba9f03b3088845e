"""Vectorised readers, parsers and normalisers for ingest (no Python loop per row).

Every parser takes a pyarrow array and returns values plus a numpy ``ok`` mask, so the caller can
quarantine the failing rows with a reason and keep the rest.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

# --- reading ---------------------------------------------------------------------------------


class UnreadableFile(Exception):
    """A landing file that cannot be read at all; ``rows`` estimates how many rows it held."""

    def __init__(self, reason: str, detail: str, rows: int = 1) -> None:
        super().__init__(detail)
        self.reason = reason
        self.detail = detail
        self.rows = max(int(rows), 1)


def _count_lines(path: Path) -> int:
    n = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            n += chunk.count(b"\n")
    return max(n - 1, 1)


def _csv_header(path: Path) -> list[str]:
    with open(path, "rb") as fh:
        head = fh.read(1 << 16)
    try:
        text = head.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        # a multi-byte character cut at the end of the chunk is fine; anything earlier is not
        if exc.start < len(head) - 4:
            raise UnreadableFile(
                "unreadable_file", f"{path}: not UTF-8 ({exc.reason} at byte {exc.start})", _count_lines(path)
            ) from None
        text = head[: exc.start].decode("utf-8-sig")
    first = next(csv.reader(io.StringIO(text)), None)
    if not first:
        raise UnreadableFile("unreadable_file", f"{path}: empty file, no header row")
    return first


def read_landing_file(path: Path) -> pa.Table:
    """Read one CSV (every column as string) or Parquet file; raise UnreadableFile on failure.

    Column names are stripped and lower-cased. A UTF-8 BOM is accepted.
    """
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        try:
            table = pq.read_table(path)
        except Exception as exc:  # noqa: BLE001 - any Arrow/OS error means the file is unreadable
            rows = 1
            try:
                rows = pq.ParquetFile(path).metadata.num_rows
            except Exception:  # noqa: BLE001
                pass
            raise UnreadableFile(
                "unreadable_file", f"{path}: {type(exc).__name__}: {_one_line(exc)}", rows
            ) from None
    else:
        header = _csv_header(path)
        convert = pacsv.ConvertOptions(
            column_types={name: pa.string() for name in header},
            strings_can_be_null=True,
            null_values=[""],
            quoted_strings_can_be_null=False,
        )
        table = None
        for newlines in (False, True):  # values with embedded newlines need the slower parser
            try:
                table = pacsv.read_csv(
                    path,
                    parse_options=pacsv.ParseOptions(newlines_in_values=newlines),
                    convert_options=convert,
                )
                break
            except pa.ArrowInvalid as exc:
                error = exc
                if "UTF8" in str(exc) or "UTF-8" in str(exc):
                    break
            except Exception as exc:  # noqa: BLE001
                error = exc
                break
        if table is None:
            raise UnreadableFile(
                "unreadable_file", f"{path}: {type(error).__name__}: {_one_line(error)}", _count_lines(path)
            )
    names = [str(c).strip().lower() for c in table.column_names]
    return table.rename_columns(names)


def _one_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


# --- row-level bookkeeping -------------------------------------------------------------------------


@dataclass
class Rejects:
    """The first failing (reason, column) of every row; rows with reason None are kept."""

    n: int

    def __post_init__(self) -> None:
        self.bad = np.zeros(self.n, bool)
        self.reason = np.empty(self.n, object)
        self.column = np.empty(self.n, object)

    def fail(self, mask: np.ndarray | pa.Array | pa.ChunkedArray, reason: str, column: str | None) -> None:
        m = to_mask(mask) & ~self.bad
        if m.any():
            self.bad |= m
            self.reason[m] = reason
            self.column[m] = column

    @property
    def ok(self) -> np.ndarray:
        return ~self.bad


def to_mask(mask: np.ndarray | pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numpy bool array from a (possibly null-bearing) arrow boolean array; null counts as False."""
    if isinstance(mask, np.ndarray):
        return mask.astype(bool, copy=False)
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks() if mask.num_chunks != 1 else mask.chunk(0)
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)


def as_string(col: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous string array (other types cast to their text form)."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if pa.types.is_dictionary(col.type):
        col = col.dictionary_decode()
    if pa.types.is_string(col.type):
        return col
    if pa.types.is_null(col.type):
        return pa.nulls(len(col), pa.string())
    return col.cast(pa.string())


def blank(col: pa.Array) -> np.ndarray:
    """Null or only whitespace."""
    return to_mask(pc.or_kleene(pc.is_null(col), pc.equal(pc.utf8_trim_whitespace(col), "")))


def string_checks(col: pa.Array, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(has a NUL byte, longer than max_len characters), scanning raw buffers first for speed."""
    n = len(col)
    nul = np.zeros(n, bool)
    long = np.zeros(n, bool)
    if not pa.types.is_string(col.type) or n == 0:
        return nul, long
    data = col.buffers()[2]
    if data is not None and data.size and not np.frombuffer(data, np.uint8).all():
        nul = to_mask(pc.match_substring(col, "\x00"))
    if (pc.max(pc.binary_length(col)).as_py() or 0) > max_len:
        long = to_mask(pc.greater(pc.utf8_length(col), max_len))
    return nul, long


def trim(col: pa.Array) -> pa.Array:
    return pc.utf8_trim_whitespace(col)


def vocab(col: pa.Array, values: tuple[str, ...]) -> tuple[pa.Array, np.ndarray]:
    """Values of a closed vocabulary, trimmed and lower-cased only when needed."""
    allowed = pa.array(values)
    ok = to_mask(pc.is_in(col, allowed))
    if ok.all():
        return col, ok
    norm = pc.utf8_lower(pc.utf8_trim_whitespace(col))
    return norm, to_mask(pc.is_in(norm, allowed))


# --- numbers, bools, dates ---------------------------------------------------------------------------

_NUMBER_RE = r"^\s*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?\s*$"
_TRUE = ("true", "t", "1", "yes", "y")
_FALSE = ("false", "f", "0", "no", "n")


def parse_float(col: pa.Array) -> tuple[pa.Array, np.ndarray, np.ndarray]:
    """(float64 values, ok, present); blanks are null and ok, non-numbers are not ok."""
    if pa.types.is_floating(col.type) or pa.types.is_integer(col.type) or pa.types.is_decimal(col.type):
        vals = col.cast(pa.float64())
        present = to_mask(pc.is_valid(vals))
        ok = ~to_mask(pc.is_nan(pc.fill_null(vals, 0.0)))
        return vals, ok, present
    if pa.types.is_boolean(col.type):
        present = to_mask(pc.is_valid(col))
        return pa.nulls(len(col), pa.float64()), ~present, present
    s = as_string(col)
    present = ~blank(s)
    good = to_mask(pc.match_substring_regex(s, _NUMBER_RE))
    ok = good | ~present
    vals = pc.cast(
        pc.utf8_trim_whitespace(pc.if_else(pa.array(good), s, pa.scalar(None, pa.string()))), pa.float64()
    )
    return vals, ok, present


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

_UTC_TAILS = {"", "z", "utc", "+00:00", "+0000", "+00", "-00:00", "-0000", "-00"}
_TAIL_RE = r"^(Z|z|UTC|[+-]\d{2}(:?\d{2})?)?$"
_FULL_RE = (
    r"^\s*(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<hm>\d{2}:\d{2})(?P<sec>:\d{2})?(?P<frac>[.,]\d{1,9})?"
    r"\s*(?P<tz>Z|z|UTC|[+-]\d{2}(?::?\d{2})?)?\s*$"
)
_UTC_ZONES = {"UTC", "Etc/UTC", "+00:00", "Z", "GMT"}


def _tail_offset_minutes(tail: str) -> int:
    t = tail.strip()
    if t.lower() in _UTC_TAILS:
        return 0
    sign = -1 if t[0] == "-" else 1
    digits = t[1:].replace(":", "")
    return sign * (int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) >= 4 else 0))


def _from_parts(head: pa.Array, tail: pa.Array, frac_us: np.ndarray | None, local_tz: str):
    """UTC micros, local hour and ok for ``YYYY-MM-DDTHH:MM:SS`` heads and offset tails."""
    shape = to_mask(pc.match_substring_regex(head, r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$"))
    shape &= to_mask(pc.match_substring_regex(tail, _TAIL_RE))
    head = pc.if_else(pa.array(shape), head, pa.scalar(None, pa.string()))
    naive = pc.strptime(head, format="%Y-%m-%dT%H:%M:%S", unit="s", error_is_null=True)
    ok = to_mask(pc.is_valid(naive))
    # strptime rolls 02-30 over to 03-02 and 24:00 to the next day: the day must survive
    day = pc.cast(pc.if_else(pa.array(ok), pc.utf8_slice_codeunits(head, 8, 10), "0"), pa.int64())
    ok &= to_mask(pc.equal(pc.fill_null(pc.day(naive), -1), day))
    # offsets take few distinct values: parse each once and map back
    tails = pc.if_else(pa.array(ok), tail, "")
    uniq = pc.unique(tails)
    uniq_list = uniq.to_pylist()
    offsets = np.array([_tail_offset_minutes(t) for t in uniq_list], np.int64)
    is_utc = np.array([t.strip().lower() in _UTC_TAILS for t in uniq_list], bool)
    pos = pc.index_in(tails, uniq).to_numpy(zero_copy_only=False)
    off = offsets[pos]
    utc_flag = is_utc[pos]
    naive_us = pc.fill_null(naive.cast(pa.int64()), 0).to_numpy(zero_copy_only=False) * 1_000_000
    if frac_us is not None:
        naive_us = naive_us + frac_us
    utc_us = naive_us - off * 60_000_000
    hour_given = pc.fill_null(pc.hour(naive), 0).to_numpy(zero_copy_only=False)
    if utc_flag.any():
        hour_local = pc.hour(pa.array(utc_us, pa.timestamp("us", tz=local_tz))).to_numpy(zero_copy_only=False)
        hour = np.where(utc_flag, hour_local, hour_given)
    else:
        hour = hour_given
    return utc_us, hour.astype(np.int8), ok


def parse_timestamps(col: pa.Array, local_tz: str) -> tuple[pa.Array, pa.Array, np.ndarray, np.ndarray]:
    """(UTC timestamps, local hours int8, ok, present) from ISO 8601 strings or Parquet timestamps.

    The local hour is the hour in the offset the provider gave; timestamps without an offset are
    UTC (CONTRACT.md §1) and, like explicit UTC, get the hour in ``local_tz``.
    """
    if pa.types.is_timestamp(col.type) or pa.types.is_date(col.type):
        if pa.types.is_date(col.type):
            col = col.cast(pa.timestamp("us"))
        tz = col.type.tz
        present = to_mask(pc.is_valid(col))
        utc = (
            col.cast(pa.timestamp("us", tz=tz)).cast(pa.int64())
            if tz
            else col.cast(pa.timestamp("us")).cast(pa.int64())
        )
        utc_us = pc.fill_null(utc, 0).to_numpy(zero_copy_only=False)
        zone = local_tz if (tz is None or tz in _UTC_ZONES) else tz
        hour = pc.hour(pa.array(utc_us, pa.timestamp("us", tz=zone))).to_numpy(zero_copy_only=False)
        return (
            pa.array(utc_us, pa.timestamp("us", tz="UTC"), mask=~present),
            pa.array(hour.astype(np.int8), mask=~present),
            present.copy(),
            present,
        )
    s = as_string(col)
    present = ~blank(s)
    # fast path: the canonical shape YYYY-MM-DDTHH:MM:SS<offset>
    utc_us, hour, ok = _from_parts(
        pc.utf8_slice_codeunits(s, 0, 19), pc.utf8_slice_codeunits(s, 19, 64), None, local_tz
    )
    retry = np.flatnonzero(~ok & present)
    if retry.size:
        sub = s.take(pa.array(retry))
        parts = pc.extract_regex(sub, _FULL_RE)
        matched = to_mask(pc.is_valid(parts))
        f = {
            name: pc.fill_null(pc.struct_field(parts, name), "")
            for name in ("date", "hm", "sec", "frac", "tz")
        }
        sec = pc.if_else(pc.equal(f["sec"], ""), ":00", f["sec"])
        head = pc.binary_join_element_wise(f["date"], "T", f["hm"], sec, "")
        frac_digits = pc.utf8_rpad(
            pc.utf8_slice_codeunits(pc.if_else(pc.equal(f["frac"], ""), ".0", f["frac"]), 1, 7),
            width=6,
            padding="0",
        )
        frac_us = pc.cast(pc.if_else(pa.array(matched), frac_digits, "0"), pa.int64()).to_numpy(
            zero_copy_only=False
        )
        u2, h2, ok2 = _from_parts(head, f["tz"], frac_us, local_tz)
        ok2 &= matched
        utc_us[retry] = np.where(ok2, u2, utc_us[retry])
        hour[retry] = np.where(ok2, h2, hour[retry])
        ok[retry] = ok2
    valid = ok & present
    return (
        pa.array(utc_us, pa.timestamp("us", tz="UTC"), mask=~valid),
        pa.array(hour, mask=~valid),
        ok | ~present,
        present,
    )


# --- contact ids ----------------------------------------------------------------------------------------

_EMAIL_RE = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
_PHONE_RE = r"^(\+|00)?\(?[0-9][0-9 ().\-/]{5,}$"
_E164_RE = r"^\+[1-9][0-9]{7,14}$"


def normalise_contact_ids(col: pa.Array, country_code: str) -> pa.Array:
    """E.164 for phone numbers, lower case for e-mails, other (opaque) ids trimmed.

    National numbers (at most 11 digits, one leading trunk ``0`` dropped) get ``+<country_code>``;
    longer digit strings, ``+...`` and ``00...`` are taken as international. A phone-looking
    value that does not come out as 8-15 digits is kept as given (an opaque id).
    """
    s = pc.utf8_trim_whitespace(col)
    e164 = to_mask(pc.match_substring_regex(s, _E164_RE))
    if e164.all():
        return s
    rest = ~e164
    email = rest & to_mask(pc.match_substring_regex(s, _EMAIL_RE))
    if email.any():
        s = pc.replace_with_mask(s, pa.array(email), pc.utf8_lower(s.filter(pa.array(email))))
    phone = rest & ~email & to_mask(pc.match_substring_regex(s, _PHONE_RE))
    if phone.any():
        sub = s.filter(pa.array(phone))
        digits = pc.replace_substring_regex(sub, r"[^0-9]", "")
        plus = to_mask(pc.starts_with(sub, "+"))
        dbl0 = ~plus & to_mask(pc.starts_with(digits, "00"))
        length = pc.utf8_length(digits).to_numpy(zero_copy_only=False)
        national = ~plus & ~dbl0 & (length <= 11)
        nat_digits = pc.if_else(pc.starts_with(digits, "0"), pc.utf8_slice_codeunits(digits, 1, 64), digits)
        out = pc.if_else(
            pa.array(national),
            pc.binary_join_element_wise(country_code, nat_digits, ""),
            pc.if_else(pa.array(dbl0), pc.utf8_slice_codeunits(digits, 2, 64), digits),
        )
        out = pc.binary_join_element_wise("+", out, "")
        good = to_mask(pc.match_substring_regex(out, _E164_RE))
        out = pc.if_else(pa.array(good), out, sub)
        s = pc.replace_with_mask(s, pa.array(phone), out)
    return s
