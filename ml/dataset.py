"""The training data of one run: which days, which rows, encoded how.

Split (by business date, never by row): the newest labelled day of the window is the test day,
the ``valid_days`` labelled days before it validate, every older labelled day trains.

Determinism: rows are sorted by (date, person_id, attempt_id) and categories are frozen sorted,
so the same partitions give the same matrices (and, with LightGBM's determinism switches, the
same model bytes).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from contactrank.errors import ContactrankError, NotReady
from contactrank.features.lake import (
    DATA_FILE,
    file_sha256,
    partition_dates,
    partition_dir,
    partition_files_of,
)
from contactrank.features.schema import FEATURE_PREFIX
from contactrank.ml.model import encode
from contactrank.ml.training_cache import training_schema, training_table
from contactrank.ml.training_sample import label_column, person_sample, sampled_counts
from contactrank.settings import Settings

log = logging.getLogger(__name__)

KIND = "training"
# Days are encoded together up to this many rows: encoding has a cost per column per call that
# outweighs the rows of a thin day, and this bound keeps the extra copy small beside the matrix.
ENCODE_BATCH_ROWS = 100_000
SORT_KEYS = ("date", "person_id", "attempt_id")  # the order of a day's rows (sort_rows)


def read_day(settings: Settings, d: date, columns: list[str] | None = None) -> pd.DataFrame:
    """One training partition as a frame (every column unless ``columns``)."""
    table = training_table(settings, d, columns=columns)
    if table is None and columns is None:
        return pd.DataFrame()  # as the feature store's reader gives a missing day
    if table is None:
        raise NotReady(f"training partition {partition_dir(settings, KIND, d)} does not exist")
    return table.to_pandas()


def labelled_days(
    settings: Settings,
    days: list[date],
    label: str,
    *,
    share: float = 1.0,
    columns: list[str] | None = None,
) -> Iterator[tuple[date, pd.DataFrame]]:
    """(day, ``labelled(read_day(day))``) for each of ``days``, in order.

    ``share`` < 1 keeps only the persons :func:`person_sample` keeps, ``columns`` only those of
    them a day has, besides ``SORT_KEYS`` and ``label``; both apply to the Arrow table, before the
    rows are converted and sorted, which is where reading a day spends its time. A stable sort of
    the kept rows orders them as the kept rows of the whole day's sort.

    Consecutive increasing days of one schema are converted and sorted together up to
    ``ENCODE_BATCH_ROWS`` rows (both cost per call more than a thin day's rows do): sorting by
    date first keeps each day's rows together and in the order the day alone gives.
    """
    if columns is not None:
        columns = list(dict.fromkeys([*SORT_KEYS, label, *columns]))
    pending: list[tuple[date, pa.Table]] = []
    rows = 0
    for x in days:
        table = _day_table(settings, x, share, columns)
        fits = (
            table is not None
            and pending
            and "date" in table.schema.names
            and x > pending[-1][0]
            and rows + table.num_rows <= ENCODE_BATCH_ROWS
            and table.schema.equals(pending[0][1].schema, check_metadata=True)
        )
        if pending and not fits:
            yield from _split_days(pending, label)
            pending, rows = [], 0
        if table is None:
            yield x, labelled(read_day(settings, x), label)
            continue
        pending.append((x, table))
        rows += table.num_rows
    if pending:  # no days at all (a gate with no evidence days): nothing to split
        yield from _split_days(pending, label)


def _day_table(settings: Settings, d: date, share: float, columns: list[str] | None) -> pa.Table | None:
    """The training partition of ``d`` cut to ``columns`` and to the persons ``share`` keeps."""
    if columns is not None:
        names = set(partition_schema(settings, d).names)
        columns = [c for c in columns if c in names]
    table = training_table(settings, d, columns=columns)
    if table is not None and share < 1.0:
        keep = person_sample(table.column("person_id").to_pandas(), share, settings.seed)
        table = table.filter(pa.array(keep))
    return table


def _split_days(pending: list[tuple[date, pa.Table]], label: str) -> Iterator[tuple[date, pd.DataFrame]]:
    if len(pending) == 1:
        x, table = pending[0]
        yield x, labelled(table.to_pandas(), label)
        return
    df = labelled(pa.concat_tables([t for _, t in pending]).to_pandas(), label)
    start = 0
    for x, table in pending:
        k = table.num_rows - table.column(label).null_count
        yield x, df.iloc[start : start + k].reset_index(drop=True)
        start += k


def sort_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in ``SORT_KEYS`` order: person-day groups become contiguous."""
    keys = [c for c in SORT_KEYS if c in df.columns]
    return df.sort_values(keys, kind="mergesort").reset_index(drop=True) if keys else df


def labelled(df: pd.DataFrame, label: str) -> pd.DataFrame:
    """The rows that carry a label, in :func:`sort_rows` order."""
    return sort_rows(df[df[label].notna()])


def partition_schema(settings: Settings, d: date) -> pa.Schema:
    kept = training_schema(settings, d)  # a run asks for hundreds of days' schemas
    if kept is not None:
        return kept
    files = partition_files_of(settings, KIND, d)  # a sharded day: every shard has the same columns
    return pq.read_schema(files[0] if files else partition_dir(settings, KIND, d) / DATA_FILE)


@dataclass
class Window:
    """The days of one training run and what identifies their data.

    ``test_days`` (newest last, ``test_day`` the newest) are held out of training: the test
    metrics and the gate's evidence. ``counts`` holds (labelled rows, positives) of every day used.
    """

    test_day: date
    train_days: list[date]
    valid_days: list[date]
    labelled_days: int
    fingerprints: dict[str, str]
    fingerprint: str
    features: list[str] = field(default_factory=list)
    categorical: list[str] = field(default_factory=list)
    test_days: list[date] = field(default_factory=list)
    counts: dict[date, tuple[int, int]] = field(default_factory=dict)
    weights: dict[date, float] | None = None  # recency weight of each training day (None: all 1)


def day_counts(settings: Settings, x: date) -> tuple[int, int]:
    """(labelled rows, positives) of one day's partition (reads only the label column)."""
    label = label_column(settings)
    table = training_table(settings, x, columns=[label])
    if table is None or not table.num_rows:
        return 0, 0
    col = table.column(label)
    rows = table.num_rows - col.null_count
    return rows, int(pc.sum(col).as_py() or 0) if rows else 0


def _is_categorical(dtype: pa.DataType) -> bool:
    return pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_dictionary(dtype)


def _enough(rows: int, pos: int, min_rows: int, min_each: int) -> bool:
    return rows >= min_rows and min(pos, rows - pos) >= min_each


def _split(settings: Settings, d: date, older: list[date], count) -> tuple[list, list, list]:
    """(test, valid, train) days, each newest first, taken from ``older`` (labelled, newest first).

    Test: grows back from D until it holds ``gate_min_rows`` rows and ``gate_min_positives`` of
    each class, within ``gate_window_days``. Validation: at least ``valid_days`` days, more until
    ``valid_min_positives`` of each class. Training: every day of the nominal window, then older
    days until ``train_min_rows`` rows. Each stage leaves at least two days to the next ones.
    """
    test, valid, train = [], [], []
    rows = pos = 0
    it = 0
    # the test always holds D; it grows back only while it leaves days to validate and train on
    while it < len(older) and (not test or len(older) - it > 4):
        x = older[it]
        if test and ((d - x).days >= settings.gate_window_days or _enough(
            rows, pos, settings.gate_min_rows, settings.gate_min_positives
        )):  # fmt: skip
            break
        test.append(x)
        r, p = count(x)
        rows, pos = rows + r, pos + p
        it += 1
    rows = pos = 0
    while it < len(older) - 1 and (not valid or len(older) - it > 2):  # one day stays for training
        if len(valid) >= settings.valid_days and _enough(rows, pos, 0, settings.valid_min_positives):
            break
        r, p = count(older[it])
        valid.append(older[it])
        rows, pos = rows + r, pos + p
        it += 1
    start = d - timedelta(days=settings.train_window_days - 1)
    rows = 0
    for x in older[it:]:
        if x < start and rows >= settings.train_min_rows:
            break
        train.append(x)
        rows += count(x)[0]
    return test, valid, train


def recency_weights(settings: Settings, train: list[date], test_start: date) -> dict[date, float] | None:
    """Each training day's weight, halving every ``train_halflife_days`` of age (None: no weights)."""
    if settings.train_halflife_days <= 0:
        return None
    return {x: 0.5 ** ((test_start - x).days / settings.train_halflife_days) for x in train}


def plan_window(settings: Settings, d: date) -> Window | str:
    """The split for date ``d``, or the reason there is nothing to train on yet.

    Days are read newest first and only as far back as the split needs (the label column of
    each), so a long thin history does not cost a read of every partition on every run.
    """
    days = sorted((x for x in partition_dates(settings, KIND) if x <= d), reverse=True)
    if not days or days[0] != d:
        raise NotReady(
            f"training partition {partition_dir(settings, KIND, d)} does not exist (run features first)"
        )
    counts: dict[date, tuple[int, int]] = {}

    def count(x: date) -> tuple[int, int]:
        if x not in counts:
            counts[x] = day_counts(settings, x)
        return counts[x]

    if count(d)[0] == 0:
        return f"test day {d} has no labelled attempts"
    start = d - timedelta(days=settings.train_window_days - 1)
    # labelled days, newest first; older than the nominal window only while rows are short
    older, rows = [], 0
    for x in days:
        # room for the test and validation days besides the training rows
        if x < start and rows >= 2 * settings.train_min_rows + settings.gate_min_rows:
            break
        if count(x)[0]:
            older.append(x)
            rows += count(x)[0]
    need = max(settings.min_train_days, settings.valid_days + 2)
    if len(older) < need:
        return f"{len(older)} labelled day(s) in the window, need {need}"
    test, valid, train = _split(settings, d, older, count)
    used = sorted(test + valid + train)
    fingerprints = {
        x.isoformat(): "+".join(file_sha256(f) for f in partition_files_of(settings, KIND, x)) for x in used
    }
    fingerprint = hashlib.sha256(json.dumps(fingerprints, sort_keys=True).encode()).hexdigest()
    schema = partition_schema(settings, d)
    features = [n for n in schema.names if n.startswith(FEATURE_PREFIX)]
    categorical = [n for n in features if _is_categorical(schema.field(n).type)]
    if not features:
        raise ContactrankError(f"training partition of {d} has no f_* feature columns")
    return Window(
        test_day=d,
        train_days=train[::-1],
        valid_days=valid[::-1],
        labelled_days=len(used),
        fingerprints=fingerprints,
        fingerprint=fingerprint,
        features=features,
        categorical=categorical,
        test_days=test[::-1],
        counts={x: counts[x] for x in used},
        weights=recency_weights(settings, train[::-1], min(test)),
    )


def freeze_categories(settings: Settings, days: list[date], categorical: list[str]) -> dict[str, list[str]]:
    """Sorted categories of each categorical feature over ``days`` (reads only those columns)."""
    seen: dict[str, set[str]] = {c: set() for c in categorical}
    for x in days:
        schema = partition_schema(settings, x)
        present = [c for c in categorical if c in schema.names]
        if not present:
            continue
        table = training_table(settings, x, columns=present)
        for c in present:
            seen[c].update(str(v) for v in table.column(c).unique().to_pylist() if v is not None)
    return {c: sorted(v) for c, v in seen.items()}


@dataclass
class Matrix:
    """Encoded rows of some days: features, label, person-day groups, channels."""

    X: np.ndarray
    y: np.ndarray
    group_sizes: np.ndarray  # contiguous person-day groups (for lambdarank)
    groups: np.ndarray  # person-day key per row
    channels: np.ndarray
    folds: np.ndarray  # 0/1 by a hash of the person (calibration cross-fit)
    weights: np.ndarray | None = None  # recency weight per row (None: every row weighs 1)


def build_matrix(
    settings: Settings,
    days: list[date],
    features: list[str],
    categories: dict[str, list[str]],
    extras: bool = True,
    max_rows: int | None = None,
    day_weights: dict[date, float] | None = None,
    known_counts: dict[date, tuple[int, int]] | None = None,
) -> Matrix:
    """Encode the labelled rows of ``days`` into one float32 matrix, reading one day at a time.

    ``extras=False`` skips the per-row group keys, channels and folds (not needed to fit; they
    cost more memory than the matrix on millions of rows). With more than ``max_rows`` rows,
    the same share of persons is kept on every day (whole person-days, chosen by a seeded hash
    of person_id: the same persons every run). ``known_counts`` as in :func:`sampled_counts`.
    """
    label = label_column(settings)
    share, counts = sampled_counts(settings, days, max_rows, known_counts)
    n = int(sum(counts))
    X = np.empty((n, len(features)), dtype=np.float32, order="F")
    y = np.empty(n, dtype=np.float32)
    m = n if extras else 0
    groups = np.empty(m, dtype=object)
    channels = np.empty(m, dtype=object)
    folds = np.empty(m, dtype=np.int8)
    weights = np.empty(n, dtype=np.float32) if day_weights else None
    sizes: list[np.ndarray] = []
    row = 0
    pending: list[pd.DataFrame] = []  # days read but not encoded yet, all of one set of dtypes
    pending_from = 0

    def flush() -> None:
        if pending:
            batch = pending[0] if len(pending) == 1 else pd.concat(pending, ignore_index=True)
            encode(batch, features, categories, out=X, row=pending_from)
            pending.clear()

    for x, df in labelled_days(settings, days, label, share=share):
        k = len(df)
        # a day whose columns have other dtypes is encoded apart, so every value converts as alone
        full = pending and sum(map(len, pending)) + k > ENCODE_BATCH_ROWS
        if full or (pending and not df.dtypes.equals(pending[0].dtypes)):
            flush()
        if not pending:
            pending_from = row
        pending.append(df)
        y[row : row + k] = df[label].astype("float32").to_numpy()
        if weights is not None:
            weights[row : row + k] = day_weights.get(x, 1.0)
        person = df["person_id"].astype(str).to_numpy() if "person_id" in df else np.arange(k).astype(str)
        if extras:
            groups[row : row + k] = np.char.add(person.astype(str), "|" + x.isoformat())
            channels[row : row + k] = df["channel"].astype(str).to_numpy() if "channel" in df else "all"
            folds[row : row + k] = (pd.util.hash_array(person.astype(object)) % 2).astype(np.int8)
        # rows are sorted by person within the day: consecutive runs are the person-day groups
        codes, _ = pd.factorize(person, sort=False)
        starts = np.flatnonzero(np.diff(codes, prepend=-1) != 0)
        sizes.append(np.diff(np.append(starts, k)))
        row += k
        del df
    flush()
    sizes_all = np.concatenate(sizes) if sizes else np.zeros(0, int)
    return Matrix(X, y, sizes_all, groups, channels, folds, weights)


def make_datasets(
    params: dict[str, Any], train: Matrix, valid: Matrix, features: list[str], categorical: list[str]
) -> tuple[lgb.Dataset, lgb.Dataset]:
    """LightGBM datasets of the train and validation days (built once; reusable across trials)."""
    lambdarank = params.get("objective") == "lambdarank"
    dtrain = lgb.Dataset(
        train.X,
        label=train.y,
        weight=train.weights,
        group=train.group_sizes if lambdarank else None,
        feature_name=features,
        categorical_feature=categorical,
        free_raw_data=True,
        params=params,
    )
    dvalid = lgb.Dataset(
        valid.X,
        label=valid.y,
        group=valid.group_sizes if lambdarank else None,
        reference=dtrain,
        free_raw_data=True,
    )
    return dtrain, dvalid
