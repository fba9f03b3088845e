"""The one place SQL text is built from values: quoting and the Parquet-read relation.

Every identifier or literal that reaches DuckDB as text (a column name read from a landing file,
a path, a date, an id) goes through ``quote_ident`` or ``quote_literal``, which double the quote
character, so no value can close its quotes and become SQL.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from datetime import date


def quote_literal(value: object) -> str:
    """``value`` as a SQL string literal: ``'...'`` with every ``'`` doubled."""
    return "'" + str(value).replace("'", "''") + "'"


def quote_ident(name: object) -> str:
    """``name`` as a SQL identifier: ``"..."`` with every ``"`` doubled."""
    return '"' + str(name).replace('"', '""') + '"'


def date_literal(d: date) -> str:
    """``DATE 'YYYY-MM-DD'``."""
    return f"DATE '{d.isoformat()}'"


def read_parquet(files: Iterable[os.PathLike | str] | os.PathLike | str, **options: str) -> str:
    """A FROM-able ``read_parquet(...)`` over one file or a list of files (local paths or object-store
    URIs, which a connection from ``features.lake.duckdb_connect`` reads through the store).

    Options are DuckDB's named parameters, passed as SQL text (``hive_partitioning="false"``).
    """
    if isinstance(files, (str, os.PathLike)):
        target = quote_literal(files)
    else:
        target = "[" + ", ".join(quote_literal(f) for f in files) + "]"
    extra = "".join(f", {k}={v}" for k, v in options.items())
    return f"read_parquet({target}{extra})"
