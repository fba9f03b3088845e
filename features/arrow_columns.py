"""Vectorised helpers over Arrow columns (plain or dictionary-encoded, one chunk or many).

The validators and parsers of ingest build on these: masks as numpy bool arrays, the raw bytes of
string arrays, and the text checks that a dictionary column answers per dictionary entry (so a
check costs the size of the dictionary, not of the column).
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def to_mask(mask: np.ndarray | pa.Array | pa.ChunkedArray) -> np.ndarray:
    """A numpy bool array from a (possibly null-bearing) arrow boolean array; null counts as False."""
    if isinstance(mask, np.ndarray):
        return mask.astype(bool, copy=False)
    if isinstance(mask, pa.ChunkedArray):
        mask = mask.combine_chunks() if mask.num_chunks != 1 else mask.chunk(0)
    return pc.fill_null(mask, False).to_numpy(zero_copy_only=False)


def is_dictionary(col: pa.Array | pa.ChunkedArray) -> bool:
    """Dictionary-encoded (checked per dictionary entry rather than per row)."""
    return pa.types.is_dictionary(col.type)


def _per_row(arr: pa.DictionaryArray, per_value: np.ndarray, null) -> np.ndarray:
    """The value of each row of a dictionary array, from one value per dictionary entry
    (``null`` for a null index)."""
    return np.append(per_value, null)[to_numpy_int(pc.fill_null(arr.indices, len(arr.dictionary)))]


def _row_mask(col: pa.Array | pa.ChunkedArray, value_mask, null: bool) -> np.ndarray:
    """Per-row mask of a dictionary column from ``value_mask(dictionary) -> numpy mask`` (per
    chunk, so a check costs the size of the dictionary); a null index gives ``null``."""
    parts = [np.zeros(0, bool)]
    for arr in chunks(col):
        parts.append(_per_row(arr, value_mask(as_string(arr.dictionary)), null))
    return np.concatenate(parts)


def map_values(col: pa.Array | pa.ChunkedArray, fn) -> pa.Array | pa.ChunkedArray:
    """``fn`` (an element-wise string function) over the values; for a dictionary column, over its
    dictionary only. A dictionary that comes out with nulls or repeats is encoded afresh."""
    if not is_dictionary(col):
        return fn(as_string(col))
    out = []
    for arr in chunks(col):
        values = fn(as_string(arr.dictionary))
        if values.null_count or len(pc.unique(values)) != len(values):  # " a" and "a", or "" -> null
            out.append(
                pc.dictionary_encode(values.take(arr.indices)).cast(pa.dictionary(pa.int32(), pa.string()))
            )
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


def chunks(col: pa.Array | pa.ChunkedArray) -> list[pa.Array]:
    """The arrays of a column, so byte-level code can work on one buffer at a time."""
    return list(col.chunks) if isinstance(col, pa.ChunkedArray) else [col]


def string_buffers(arr: pa.Array) -> tuple[np.ndarray, np.ndarray]:
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
    if is_dictionary(col):
        return _row_mask(col, blank, True)
    if not pa.types.is_string(col.type):
        empty = pc.or_kleene(pc.is_null(col), pc.equal(pc.binary_length(col), 0))
        return to_mask(pc.or_kleene(empty, pc.utf8_is_space(col)))
    parts = [np.zeros(0, bool)]
    for arr in chunks(col):
        offs, _ = string_buffers(arr)
        out = offs[1:] == offs[:-1]
        if arr.null_count:
            out |= ~to_mask(pc.is_valid(arr))
        if edge_bytes(arr).any():  # a whitespace-only value starts with a space-like byte
            out |= to_mask(pc.utf8_is_space(arr))
        parts.append(out)
    return np.concatenate(parts)


def trim_blank(col: pa.Array | pa.ChunkedArray) -> tuple[pa.Array | pa.ChunkedArray, np.ndarray]:
    """(``trim(col)``, ``blank(col)``) in one scan of the bytes (the common case: nothing to trim)."""
    if is_dictionary(col) or not pa.types.is_string(col.type):
        return trim(col), blank(col)
    if any(edge_bytes(c).any() for c in chunks(col) if len(c)):
        out = pc.utf8_trim_whitespace(col)
        return out, blank(out)
    parts = [np.zeros(0, bool)]
    for arr in chunks(col):
        offs, _ = string_buffers(arr)
        empty = offs[1:] == offs[:-1]
        parts.append(empty | ~to_mask(pc.is_valid(arr)) if arr.null_count else empty)
    return col, np.concatenate(parts)


def string_checks(col: pa.Array | pa.ChunkedArray, max_len: int) -> tuple[np.ndarray, np.ndarray]:
    """(has a NUL byte, longer than max_len characters), scanning raw buffers first for speed."""
    if is_dictionary(col):
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
    if any(not string_buffers(c)[1].all() for c in chunks(col) if len(c)):
        nul = to_mask(pc.match_substring(col, "\x00"))
    if (pc.max(pc.binary_length(col)).as_py() or 0) > max_len:
        long = to_mask(pc.greater(pc.utf8_length(col), max_len))
    return nul, long


def trim(col: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """Strip surrounding whitespace; skipped when no value starts or ends with a space-like byte."""
    if is_dictionary(col):
        return map_values(col, trim)
    if not pa.types.is_string(col.type) or not any(edge_bytes(c).any() for c in chunks(col) if len(c)):
        return col
    return pc.utf8_trim_whitespace(col)


def edge_bytes(arr: pa.Array) -> np.ndarray:
    """Values whose first or last byte is ASCII whitespace/control or non-ASCII (maybe a Unicode space)."""
    offs, data = string_buffers(arr)
    start, end = offs[:-1], offs[1:]
    nonempty = end > start
    if data.size == 0 or not nonempty.any():
        return np.zeros(len(arr), bool)
    last = data.size - 1
    first = data[np.minimum(start, last)]
    final = data[np.clip(end - 1, 0, last)]
    return nonempty & ((first <= 32) | (first >= 128) | (final <= 32) | (final >= 128))


def vocab(
    col: pa.Array | pa.ChunkedArray, values: tuple[str, ...]
) -> tuple[pa.Array | pa.ChunkedArray, np.ndarray]:
    """(values encoded as dictionary<int8> over ``values``, ok) of a closed vocabulary column.

    Trimmed and lower-cased only when needed; a null or a value outside the vocabulary is not ok
    (and null). A dictionary column is looked up by its dictionary, not row by row.
    """
    allowed = pa.array(values, pa.string())

    def codes(strings: pa.Array) -> np.ndarray:
        c = to_numpy_int(pc.fill_null(pc.index_in(strings, allowed), -1))
        if (c < 0).any():
            c = to_numpy_int(
                pc.fill_null(pc.index_in(pc.utf8_lower(pc.utf8_trim_whitespace(strings)), allowed), -1)
            )
        return c

    out, oks = [], [np.zeros(0, bool)]
    for arr in chunks(col):
        if is_dictionary(arr):
            c = _per_row(arr, codes(as_string(arr.dictionary)), -1)
        else:
            c = codes(as_string(arr))
        ok = c >= 0
        out.append(pa.DictionaryArray.from_arrays(pa.array(c.astype(np.int8), mask=~ok), allowed))
        oks.append(ok)
    typ = pa.dictionary(pa.int8(), pa.string())
    encoded = (
        pa.chunked_array(out, typ)
        if isinstance(col, pa.ChunkedArray)
        else (out[0] if out else pa.array([], typ))
    )
    return encoded, np.concatenate(oks)


def segment_sums(flags: np.ndarray, start: np.ndarray, length: np.ndarray) -> np.ndarray:
    """Sum of ``flags[start:start+length]`` per value (a sentinel keeps trailing empties in range)."""
    ext = np.append(flags.view(np.uint8), np.uint8(0))
    sums = np.add.reduceat(ext, start, dtype=np.int32)
    return np.where(length > 0, sums, 0)


def ascii_digits(arr: pa.Array) -> pa.Array:
    """The ASCII digits of each value of a null-free string array, from the raw bytes (no regex)."""
    n = len(arr)
    offs, data = string_buffers(arr)
    data = data[offs[0] : offs[-1]]
    start, length = offs[:-1] - offs[0], offs[1:] - offs[:-1]
    is_digit = (data - 48) <= 9  # uint8 wraps below '0'
    out_offs = np.zeros(n + 1, np.int32)
    if data.size:
        np.cumsum(segment_sums(is_digit, start, length), out=out_offs[1:])
    return pa.StringArray.from_buffers(n, pa.py_buffer(out_offs), pa.py_buffer(data[is_digit].tobytes()))


def contiguous(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One array (copies only when there is more than one chunk)."""
    if isinstance(arr, pa.ChunkedArray):
        return arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr


def to_numpy_int(arr: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An int64 numpy array of an integer column without nulls."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    return arr.to_numpy(zero_copy_only=False).astype(np.int64)
