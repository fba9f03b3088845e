"""Training on a Dask cluster with LightGBM's own distributed mode (``train_engine = "dask"``).

Same rows, features, encoding, parameters, early stopping and calibration as the local fit
(``ml.train``); only where the training rows live changes. The result is an ordinary
``lgb.Booster`` (``DaskLGBMClassifier.to_local()``), so the registry, lleaves scoring and the
reason codes use it unchanged.

What runs where:

- **Workers** read the training partitions (Parquet, one business day each) themselves: one
  Dask partition per day and per person bucket (whole persons of a day, so a large day splits
  without cutting a person), the same labelled rows, the same seeded person sample
  (``train_max_rows``) and the same encoding (``ml.model.encode`` with the frozen categories)
  as ``ml.dataset.build_matrix``. LightGBM trains data-parallel (``tree_learner=data``): each
  worker bins its rows and the workers exchange histograms, so no process holds the whole sample.
- **Early stopping**: ``lightgbm.dask`` would give each worker a different slice of the
  validation days, its own metric and its own moment to stop (and a stopped worker leaves the
  others waiting on the network). Instead every worker reads the whole validation days
  (:class:`ValidationOnWorkers`): the trees are the same on every worker, so the metric is the
  same and LightGBM's own ``early_stopping`` stops them all at the same iteration.
- **The driver** (the process calling ``train``) still holds: the frozen categories, the per-day
  row counts of the sample (two columns of each training day, one day at a time), the
  validation days (calibration, threshold), the test days and the drift reference (at most
  ``DRIFT_REFERENCE_ROWS`` rows), and the fitted model. Its memory grows with the validation and
  test days, not with the training window.

The cluster is ``dask_scheduler`` (a running scheduler whose workers can read the lake and
import contactrank) or, when empty, a ``LocalCluster`` of ``dask_workers`` processes started for
this fit and closed after it. Binary objective only (settings refuse lambdarank with dask).
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from contactrank.errors import ContactrankError
from contactrank.ml.dataset import (
    Window,
    build_matrix,
    labelled_days,
)
from contactrank.ml.model import encode
from contactrank.ml.training_sample import label_column, sampled_counts
from contactrank.settings import Settings

log = logging.getLogger(__name__)

VALID_NAME = "valid"  # the name ``ml.train.fit`` gives the validation days (early stopping reads it)
# Rows of one Dask partition at most: a larger day is split into person buckets, so one task's
# frame and matrix stay a few hundred MB whatever the daily volume.
PART_ROWS = 1_000_000
# LightGBM sets these from the cluster; passing them too only draws a warning
_CLUSTER_PARAMS = ("num_threads", "num_machines")


@dataclass
class ClusterFit:
    """A booster fitted on the cluster and what the run records about it."""

    booster: lgb.Booster
    rows: int
    positives: float
    workers: int
    load_s: float  # sizing the sample, starting (or reaching) the cluster, the workers reading the days
    fit_s: float


def load_part(
    settings: Settings,
    day: date,
    bucket: int,
    buckets: int,
    features: list[str],
    categories: dict[str, list[str]],
    share: float,
    weight: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(X, y, weight) of one day's person bucket, exactly as ``build_matrix`` encodes it (on a worker)."""
    label = label_column(settings)
    (_, df), *_ = labelled_days(settings, [day], label, share=share)
    if buckets > 1:
        person = df["person_id"].astype(str).to_numpy(dtype=object)
        df = df[pd.util.hash_array(person) % np.uint64(buckets) == np.uint64(bucket)]
    df = df.reset_index(drop=True)
    X = np.ascontiguousarray(encode(df, features, categories))
    y = df[label].astype("float32").to_numpy()
    return X, y, np.full(len(df), weight, dtype=np.float32)


@dataclass(eq=False)  # LightGBM keeps callbacks in a set: hashed by identity
class ValidationOnWorkers:
    """A LightGBM callback that adds the validation days, read on the worker, before the first tree.

    Every worker then evaluates the same rows with the same trees, so LightGBM's early stopping
    reaches the same decision on each of them (see the module docstring)."""

    settings: Settings
    days: list[date]
    features: list[str]
    categories: dict[str, list[str]]
    before_iteration: bool = True
    order: int = 0

    def __call__(self, env: lgb.callback.CallbackEnv) -> None:
        if env.iteration != env.begin_iteration:
            return
        valid = build_matrix(self.settings, self.days, self.features, self.categories, extras=False)
        # as lgb.train does with its valid_sets: the training set's bins, feature names and categories
        data = lgb.Dataset(valid.X, label=valid.y, params=env.params, free_raw_data=True)
        env.model.add_valid(data.set_reference(env.model.train_set), VALID_NAME)


@contextlib.contextmanager
def cluster_client(settings: Settings) -> Iterator[Any]:
    """A Dask client of ``dask_scheduler``, or of a LocalCluster started for the duration."""
    # distributed is the optional `dask` extra: loaded only when this engine is chosen
    from distributed import Client, LocalCluster

    if settings.dask_scheduler:
        with Client(settings.dask_scheduler) as client:
            yield client
        return
    threads = max(1, settings.num_threads // settings.dask_workers)
    with (
        LocalCluster(
            n_workers=settings.dask_workers,
            threads_per_worker=threads,
            processes=True,  # LightGBM's network state is per process: one worker per process
            dashboard_address=None,
            silence_logs=logging.WARNING,
        ) as cluster,
        Client(cluster) as client,
    ):
        yield client


def training_parts(
    settings: Settings, window: Window, categories: dict[str, list[str]]
) -> tuple[Any, Any, Any | None, int]:
    """Dask arrays (X, y, weights or None) of the sampled training days, and their row count.

    Built lazily from one task per day and person bucket; the driver reads only the label and
    person columns to size the sample."""
    # dask is the optional `dask` extra: loaded only when this engine is chosen
    import dask
    import dask.array as da

    share, counts = sampled_counts(settings, window.train_days, settings.train_max_rows)
    n_features = len(window.features)
    xs, ys, ws = [], [], []
    for day, rows in zip(window.train_days, counts, strict=True):
        buckets = max(1, math.ceil(rows / PART_ROWS))
        weight = (window.weights or {}).get(day, 1.0)
        for bucket in range(buckets if rows else 0):
            part = dask.delayed(load_part, pure=True, nout=3)(
                settings, day, bucket, buckets, window.features, categories, share, weight
            )
            n = rows if buckets == 1 else math.nan  # a bucket's size is known once it is read
            xs.append(da.from_delayed(part[0], shape=(n, n_features), dtype=np.float32))
            ys.append(da.from_delayed(part[1], shape=(n,), dtype=np.float32))
            ws.append(da.from_delayed(part[2], shape=(n,), dtype=np.float32))
    if not xs:
        return None, None, None, 0
    X = da.concatenate(xs, allow_unknown_chunksizes=True)
    y = da.concatenate(ys, allow_unknown_chunksizes=True)
    w = da.concatenate(ws, allow_unknown_chunksizes=True) if window.weights else None
    return X, y, w, int(sum(counts))


def fit_on_cluster(
    settings: Settings, params: dict[str, Any], window: Window, categories: dict[str, list[str]]
) -> ClusterFit | None:
    """Fit the booster with ``DaskLGBMClassifier`` on the cluster (None: no training rows)."""
    try:
        # lightgbm.dask needs the optional `dask` extra: loaded only when this engine is chosen
        from distributed import wait
        from lightgbm.dask import DaskLGBMClassifier
    except ImportError as exc:
        raise ContactrankError(
            f"train_engine 'dask' needs the dask extra (pip install 'contactrank[dask]'): {exc}"
        ) from None

    started = time.perf_counter()
    X, y, w, rows = training_parts(settings, window, categories)
    if not rows:
        return None
    sized = time.perf_counter()
    with cluster_client(settings) as client:
        workers = len(client.scheduler_info()["workers"])
        connected = time.perf_counter()
        # the rows stay on the workers through the fit; reading them first times the load apart
        X, y, *rest = client.persist([X, y, *([w] if w is not None else [])])
        wait([X, y, *rest])
        positives = float(y.sum().compute())
        load_s = time.perf_counter() - started
        log.info(
            "%d training rows on %d Dask workers: sample sized in %.1f s, cluster ready in %.1f s, "
            "rows read by the workers in %.1f s",
            rows, workers, sized - started, connected - sized, time.perf_counter() - connected,
        )  # fmt: skip
        fit_started = time.perf_counter()
        model = DaskLGBMClassifier(
            client=client,
            n_estimators=settings.num_boost_round,
            **{k: v for k, v in params.items() if k not in _CLUSTER_PARAMS},
        )
        validation = ValidationOnWorkers(settings, window.valid_days, window.features, categories)
        stopping = lgb.early_stopping(settings.early_stopping_rounds, first_metric_only=True, verbose=False)
        with warnings.catch_warnings():  # the estimator's n_jobs default: the workers' threads replace it
            warnings.filterwarnings("ignore", "Parameter n_jobs will be ignored", UserWarning)
            model.fit(
                X,
                y,
                sample_weight=rest[0] if rest else None,
                feature_name=window.features,
                categorical_feature=window.categorical,
                callbacks=[validation, stopping],
            )
        booster = model.to_local().booster_
        fit_s = time.perf_counter() - fit_started
    return ClusterFit(booster, rows, positives, workers, load_s, fit_s)
