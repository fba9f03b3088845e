"""moto, with its ranged GETs reading only the range: how S3 and MinIO serve them.

Stock moto answers a ranged GET by copying the whole object out of its buffer, scanning it with a
regular expression, then slicing it: a 64 KiB read of a 448 MiB object costs it about 250 ms of
CPU against 3 ms for a small object (bench/daily_load.py --s3 measures a lake of objects of up to
470 MB). A real store's cost of a range does not grow with the object. The benchmark's server uses
this patch (``--s3-ranges``) to measure the backend's own cost against a store that behaves so;
moto is otherwise unchanged (every other request, and a GET without a range, as before).
"""

from __future__ import annotations

import contextvars

_ranged = contextvars.ContextVar("ranged", default=False)


class _ObjectBytes:
    """The bytes of a stored object, read from its buffer only where sliced."""

    def __init__(self, key) -> None:
        self._key = key

    def __len__(self) -> int:
        return self._key.size

    def __bool__(self) -> bool:
        return self._key.size > 0

    def __getitem__(self, where: slice) -> bytes:
        start, stop, _ = where.indices(self._key.size)
        with self._key.lock:
            self._key._value_buffer.seek(start)
            return self._key._value_buffer.read(max(0, stop - start))


def patch() -> None:
    """Make this process's moto serve a single byte range from the range."""
    from moto.s3.models import FakeKey
    from moto.s3.responses import S3Response

    stock_value, stock_get = FakeKey.value, S3Response.get_object

    def value(self):
        return _ObjectBytes(self) if _ranged.get() else stock_value.fget(self)

    def get_object(self):
        spec = self.headers.get("range") or ""
        single = spec.startswith("bytes=") and "," not in spec and not spec.startswith("bytes=-")
        token = _ranged.set(single)
        try:
            return stock_get(self)
        finally:
            _ranged.reset(token)

    FakeKey.value = property(value, stock_value.fset)
    S3Response.get_object = get_object
