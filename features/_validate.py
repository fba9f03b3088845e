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


@dataclass(frozen=True)
class BadLine:
    """A CSV line the parser could not split into the header's columns."""

    row_number: int  # 1-based data row (physical line - 1)
    text: str
    expected: int
    actual: int


def read_landing_file(
    path: Path, dictionary: tuple[str, ...] = ()
) -> tuple[pa.Table, list[BadLine], np.ndarray | None]:
    """Read one CSV (every column as string) or Parquet file; raise UnreadableFile on failure.

    Returns (table, bad lines, row numbers of the table's rows or None for 1..n). A CSV line with
    the wrong number of fields is skipped and reported, not fatal. Column names are stripped and
    lower-cased. A UTF-8 BOM is accepted. ``dictionary`` names (lower-case) low-cardinality string
    columns that a Parquet file returns dictionary-encoded, as stored: no string is materialised
    per row, and the validators and the lake writer work on the dictionary (about 40% less CPU
    for reading a 1M-row attempts file).
    """
    path = Path(path)
    bad: list[BadLine] = []
    row_numbers = None
    if path.suffix.lower() == ".parquet":
        try:
            encoded = []
            if dictionary:
                schema = pq.read_schema(path)
                encoded = [
                    f.name
                    for f in schema
                    if str(f.name).strip().lower() in dictionary
                    and (pa.types.is_string(f.type) or pa.types.is_large_string(f.type))
                ]
            table = pq.read_table(path, read_dictionary=encoded or None)
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
        try:  # fast path: multi-threaded, no embedded newlines, every line well-formed
            table = pacsv.read_csv(path, convert_options=convert)
        except pa.ArrowInvalid as exc:
            if "UTF8" in str(exc) or "UTF-8" in str(exc):
                raise UnreadableFile(
                    "unreadable_file", f"{path}: {type(exc).__name__}: {_one_line(exc)}", _count_lines(path)
                ) from None

            def skip(row) -> str:  # called once per malformed line only
                bad.append(
                    BadLine(int(row.number or 0) - 1, row.text, row.expected_columns, row.actual_columns)
                )
                return "skip"

            try:  # slow path: single-threaded so skipped lines carry their line number
                table = pacsv.read_csv(
                    path,
                    # one block as large as the file (capped): a single huge value (a 10 MB
                    # string) must not make the reader give up on every good row around it
                    read_options=pacsv.ReadOptions(
                        use_threads=False, block_size=max(1 << 24, min(path.stat().st_size + 1, 1 << 30))
                    ),
                    parse_options=pacsv.ParseOptions(newlines_in_values=True, invalid_row_handler=skip),
                    convert_options=convert,
                )
            except Exception as exc2:  # noqa: BLE001
                raise UnreadableFile(
                    "unreadable_file", f"{path}: {type(exc2).__name__}: {_one_line(exc2)}", _count_lines(path)
                ) from None
            if bad:
                skipped = np.array([b.row_number for b in bad])
                row_numbers = np.setdiff1d(np.arange(1, table.num_rows + len(bad) + 1), skipped)[
                    : table.num_rows
                ]
        except Exception as exc:  # noqa: BLE001
            raise UnreadableFile(
                "unreadable_file", f"{path}: {type(exc).__name__}: {_one_line(exc)}", _count_lines(path)
            ) from None
    names = [str(c).strip().lower() for c in table.column_names]
    return table.rename_columns(names), bad, row_numbers


def _one_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [""])[0][:300]


# --- row-level bookkeeping -------------------------------------------------------------------------


@dataclass
class Rejects:
    """The first failing (reason, column) of every row; rows without one are kept.

    Reasons are stored as small integer codes so a clean million-row file costs one bool array.
    """

    n: int

    def __post_init__(self) -> None:
        self.bad = np.zeros(self.n, bool)
        self._code = np.zeros(self.n, np.int16)  # index into self._labels; 0 = none
        self._labels: list[tuple[str | None, str | None]] = [(None, None)]

    def fail(self, mask: np.ndarray | pa.Array | pa.ChunkedArray, reason: str, column: str | None) -> None:
        m = to_mask(mask) & ~self.bad
        if m.any():
            self.bad |= m
            self._labels.append((reason, column))
            self._code[m] = len(self._labels) - 1

    @property
    def ok(self) -> np.ndarray:
        return ~self.bad

    def reason(self, rows: np.ndarray) -> pa.Array:
        """The reasons of the given row indices."""
        return pa.array([r for r, _ in self._labels], pa.string()).take(pa.array(self._code[rows]))

    def column(self, rows: np.ndarray) -> pa.Array:
        """The failing columns of the given row indices."""
        return pa.array([c for _, c in self._labels], pa.string()).take(pa.array(self._code[rows]))

    @classmethod
    def concat(cls, parts: list[Rejects]) -> Rejects:
        """The rejects of consecutive row ranges, as one (row indices shift, labels merge)."""
        out = cls(sum(p.n for p in parts))
        out.bad = np.concatenate([p.bad for p in parts]) if parts else out.bad
        index = {label: i for i, label in enumerate(out._labels)}
        codes = []
        for p in parts:
            remap = np.array([index.setdefault(label, len(index)) for label in p._labels], np.int16)
            codes.append(remap[p._code])
        out._labels = list(index)
        if codes:
            out._code = np.concatenate(codes)
        return out


def to_mask(mask: np.ndarray | pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numpy bool array from a (possibly null-bearing) arrow boolean array; null counts as False."""
    if isinstance(mask, np.ndarray):
        return mask.astype(bool, copy=False)
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks() if mask.num_chunks != 1 else mask.chunk(0)
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)


def _is_dict(col: pa.Array | pa.ChunkedArray) -> bool:
    return pa.types.is_dictionary(col.type)


def _per_row(arr: pa.DictionaryArray, per_value: np.ndarray, null) -> np.ndarray:
    """The value of each row of a dictionary array, from one value per dictionary entry
    (``null`` for a null index)."""
    return np.append(per_value, null)[to_numpy_int(pc.fill_null(arr.indices, len(arr.dictionary)))]


def _row_mask(col: pa.Array | pa.ChunkedArray, value_mask, null: bool) -> np.ndarray:
    """Per-row mask of a dictionary column from ``value_mask(dictionary) -> numpy mask`` (per
    chunk, so a check costs the size of the dictionary); a null index gives ``null``."""
    parts = [np.zeros(0, bool)]
    for arr in _chunks(col):
        parts.append(_per_row(arr, value_mask(as_string(arr.dictionary)), null))
    return np.concatenate(parts)


def map_values(col: pa.Array | pa.ChunkedArray, fn) -> pa.Array | pa.ChunkedArray:
    """``fn`` (an element-wise string function) over the values; for a dictionary column, over its
    dictionary only. A dictionary that comes out with nulls or repeats is encoded afresh."""
    if not _is_dict(col):
        return fn(as_string(col))
    out = []
    for arr in _chunks(col):
        values = fn(as_string(arr.dictionary))
        if values.null_count or len(pc.unique(values)) != len(values):  # " a" and "a", or "" -> null
            out.append(pc.dictionary_encode(values.take(arr.indices)).cast(pa.dictionary(pa.int32(), pa.string())))
        else:
            out.append(pa.DictionaryArray.from_arrays(arr.indices.cast(pa.int32()), values))
    if isinstance(col, pa.ChunkedArray):
        return pa.chunked_array(out, pa.dictionary(pa.int32(), pa.string()))
    return out[0]


def as_string(col: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """The column as strings (other types cast to their text form); chunking is kept."""
    if pa.types.is_dictionary(col.type):
        col = pc.cast(col, col.type.value_type)
    if pa.types.is_string(col.type):
        return col
    if pa.types.is_null(col.type):
        return pa.nulls(len(col), pa.string())
    return col.cast(pa.string())


def _chunks(col: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    return list(col.chunks) if isinstance(col, pa.ChunkedArray) else [col]


def _string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """(offsets as int64 of length n+1, data bytes) of one string array, without copying the data."""
    n = len(arr)
    bufs = arr.buffers()
    otype = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    width = np.dtype(otype).itemsize
    offs = np.frombuffer(bufs[1], otype, count=n + 1, offset=arr.offset * width).astype(np.int64)
    data = np.frombuffer(bufs[2], np.uint8) if bufs[2] is not None else np.zeros(0, np.uint8)
    return offs, data


def blank(col: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """Null, empty or only whitespace."""
    if _is_dict(col):
        return _row_mask(col, blank, True)
    if not pa.types.is_string(col.type):
        empty = pc.or_kleene(pc.is_null(col), pc.equal(pc.binary_length(col), 0))
        return to_mask(pc.or_kleene(empty, pc.utf8_is_space(col)))
    parts = [np.zeros(0, bool)]
    for arr in _chunks(col):
        offs, _ = _string_buffers(arr)
        out = offs[1:] == offs[:-1]
        if arr.null_count:
            out |= ~to_mask(pc.is_valid(arr))
        if _edge_bytes(arr).any():  # a whitespace-only value starts with a space-like byte
            out |= to_mask(pc.utf8_is_space(arr))
        parts.append(out)
    return np.concatenate(parts)


def trim_blank(col: pa.Array | pa.ChunkedArray) -> tuple[pa.Array | pa.ChunkedArray, np.ndarray]:
    """(``trim(col)``, ``blank(col)``) in one scan of the bytes (the common case: nothing to trim)."""
    if _is_dict(col) or not pa.types.is_string(col.type):
        return trim(col), blank(col)
    if any(_edge_bytes(c).any() for c in _chunks(col) if len(c)):
        out = pc.utf8_trim_whitespace(col)
        return out, blank(out)
    parts = [np.zeros(0, bool)]
    for arr in _chunks(col):
        offs, _ = _string_buffers(arr)
        empty = offs[1:] == offs[:-1]
        parts.append(empty | ~to_mask(pc.is_valid(arr)) if arr.null_count else empty)
    return col, np.concatenate(parts)


def string_checks(col: pa.Array | pa.ChunkedArray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(has a NUL byte, longer than max_len characters), scanning raw buffers first for speed."""
    if _is_dict(col):
        return (
            _row_mask(col, lambda d: string_checks(d, max_len)[0], False),
            _row_mask(col, lambda d: string_checks(d, max_len)[1], False),
        )
    if pa.types.is_large_string(col.type):
        col = as_string(col)
    n = len(col)
    nul = np.zeros(n, bool)
    long = np.zeros(n, bool)
    if not pa.types.is_string(col.type) or n == 0:
        return nul, long
    if any(not _string_buffers(c)[1].all() for c in _chunks(col) if len(c)):
        nul = to_mask(pc.match_substring(col, "\x00"))
    if (pc.max(pc.binary_length(col)).as_py() or 0) > max_len:
        long = to_mask(pc.greater(pc.utf8_length(col), max_len))
    return nul, long


def trim(col: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Strip surrounding whitespace; skipped when no value starts or ends with a space-like byte."""
    if _is_dict(col):
        return map_values(col, trim)
    if not pa.types.is_string(col.type) or not any(_edge_bytes(c).any() for c in _chunks(col) if len(c)):
        return col
    return pc.utf8_trim_whitespace(col)


def _edge_bytes(arr: pa.Array) -> np.ndarray:
    """Values whose first or last byte is ASCII whitespace/control or non-ASCII (maybe a Unicode space)."""
    offs, data = _string_buffers(arr)
    start, end = offs[:-1], offs[1:]
    nonempty = end > start
    if data.size == 0 or not nonempty.any():
        return np.zeros(len(arr), bool)
    last = data.size - 1
    first = data[np.minimum(start, last)]
    final = data[np.clip(end - 1, 0, last)]
    return nonempty & ((first <= 32) | (first >= 128) | (final <= 32) | (final >= 128))


def vocab(col: pa.Array | pa.ChunkedArray, values: tuple[str, ...]) -> tuple[pa.Array | pa.ChunkedArray, np.ndarray]:
    """(values encoded as dictionary<int8> over ``values``, ok) of a closed vocabulary column.

    Trimmed and lower-cased only when needed; a null or a value outside the vocabulary is not ok
    (and null). A dictionary column is looked up by its dictionary, not row by row.
    """
    allowed = pa.array(values, pa.string())

    def codes(strings: pa.Array) -> np.ndarray:
        c = to_numpy_int(pc.fill_null(pc.index_in(strings, allowed), -1))
        if (c < 0).any():
            c = to_numpy_int(pc.fill_null(pc.index_in(pc.utf8_lower(pc.utf8_trim_whitespace(strings)), allowed), -1))
        return c

    out, oks = [], [np.zeros(0, bool)]
    for arr in _chunks(col):
        if _is_dict(arr):
            c = _per_row(arr, codes(as_string(arr.dictionary)), -1)
        else:
            c = codes(as_string(arr))
        ok = c >= 0
        out.append(pa.DictionaryArray.from_arrays(pa.array(c.astype(np.int8), mask=~ok), allowed))
        oks.append(ok)
    typ = pa.dictionary(pa.int8(), pa.string())
    encoded = pa.chunked_array(out, typ) if isinstance(col, pa.ChunkedArray) else (out[0] if out else pa.array([], typ))
    return encoded, np.concatenate(oks)


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

_FULL_RE = (
    r"^\s*(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<hm>\d{2}:\d{2})(?P<sec>:\d{2})?(?P<frac>[.,]\d{1,9})?"
    r"\s*(?P<tz>Z|z|UTC|[+-]\d{2}(?::?\d{2})?)?\s*$"
)
_UTC_ZONES = {"UTC", "Etc/UTC", "+00:00", "Z", "GMT"}
_DAYS_IN_MONTH = np.array([31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])


def _iso_fast(arr: pa.Array) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Parse ``YYYY-MM-DD[T ]HH:MM:SS[Z|+HHMM|+HH:MM]`` straight from the string buffers.

    Returns (UTC micros, hour as written, offset given and non-zero, ok). Vectorised over the
    bytes at fixed positions; anything else is not ok and goes to the slower regex path.
    """
    n = len(arr)
    offs, data = _string_buffers(arr)
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
    # days from civil (H. Hinnant), proleptic Gregorian
    y = year - (month <= 2)
    era = np.floor_divide(y, 400)
    yoe = y - era * 400
    doy = (153 * (month + np.where(month > 2, -3, 9)) + 2) // 5 + day - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    days = (era * 146097 + doe - 719468).astype(np.int64)
    seconds = days * 86400 + hour * 3600 + minute * 60 + second - offset_min * 60
    utc_us = np.where(ok, seconds * 1_000_000, 0)
    return utc_us, np.where(ok, hour, 0).astype(np.int8), ok & (offset_min != 0), ok


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
    UTC (CONTRACT.md §1) and, like explicit UTC, get the hour in ``local_tz``.
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
    parts = [_iso_fast(c) for c in _chunks(s)]
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
        sub = _contiguous(s.filter(pa.array(~ok & present)))  # filter: per chunk, unlike take
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


def _contiguous(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    if isinstance(arr, pa.ChunkedArray):
        return arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr


def to_numpy_int(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr.to_numpy(zero_copy_only=False).astype(np.int64)


# --- contact ids ----------------------------------------------------------------------------------------

_PHONE_RE = r"^(\+|00)?\(?[0-9][0-9 ().\-/]{5,}$"
_E164_RE = r"^\+[1-9][0-9]{7,14}$"


def _segment_sums(flags: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Sum of ``flags[start:start+length]`` per value (a sentinel keeps trailing empties in range)."""
    ext = np.append(flags.view(np.uint8), np.uint8(0))
    sums = np.add.reduceat(ext, start, dtype=np.int32)
    return np.where(length > 0, sums, 0)


def _id_flags(col: pa.Array | pa.ChunkedArray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(already E.164, contains '@', needs trimming) per value, from the raw bytes of each chunk."""
    parts = []
    for arr in _chunks(col):
        n = len(arr)
        if n == 0:
            continue
        offs, data = _string_buffers(arr)
        base = offs[0]
        data = data[base : offs[-1]]
        start, end = offs[:-1] - base, offs[1:] - base
        length = end - start
        if data.size == 0:
            parts.append((np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)))
            continue
        last = data.size - 1
        # per-value counts of non-digit bytes and of '@' by segment sums over the bytes
        nondigit = _segment_sums((data - 48) > 9, start, length)
        at = _segment_sums(data == 64, start, length)
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


def _digits_only(arr: pa.Array) -> pa.Array:
    """The ASCII digits of each value of a null-free string array, from the raw bytes (no regex)."""
    n = len(arr)
    offs, data = _string_buffers(arr)
    data = data[offs[0] : offs[-1]]
    start, length = offs[:-1] - offs[0], offs[1:] - offs[:-1]
    is_digit = (data - 48) <= 9  # uint8 wraps below '0'
    out_offs = np.zeros(n + 1, np.int32)
    if data.size:
        np.cumsum(_segment_sums(is_digit, start, length), out=out_offs[1:])
    return pa.StringArray.from_buffers(n, pa.py_buffer(out_offs), pa.py_buffer(data[is_digit].tobytes()))


def _national_to_e164(sub: pa.Array, country_code: str) -> tuple[pa.Array, np.ndarray]:
    """(E.164 candidates, ok) for phone-looking values (see normalise_contact_ids for the rules)."""
    digits = _digits_only(sub)
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
        sub = _contiguous(s.filter(pa.array(email)))  # filter: per chunk, unlike take
        ascii_only = sub.buffers()[2] is None or _string_buffers(sub)[1].max(initial=0) < 128
        lowered = pc.ascii_lower(sub) if ascii_only else pc.utf8_lower(sub)
        diff = to_mask(pc.not_equal(sub, lowered))
        if diff.any():
            changed[rows[diff]] = True
            new_values.append((rows[diff], lowered.filter(pa.array(diff))))
    maybe = rest & ~email
    if maybe.any():
        rows = np.flatnonzero(maybe)
        sub = _contiguous(s.filter(pa.array(maybe)))
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
