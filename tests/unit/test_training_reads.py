"""Training reads: thin days read, converted and encoded together give what one day at a time gives;
a kept partition is read again once rewritten."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pyarrow as pa
from helpers.synth_training import write_days

from contactrank.features.lake import write_partition
from contactrank.ml import dataset, training_cache, training_sample
from contactrank.ml.dataset import build_matrix, freeze_categories, labelled, labelled_days, plan_window

D = date(2026, 3, 10)
FIELDS = ("X", "y", "group_sizes", "groups", "channels", "folds", "weights")


def _same(a, b) -> None:
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        if x is None or y is None:
            assert x is None and y is None, f
            continue
        assert x.dtype == y.dtype and x.shape == y.shape, f
        assert np.array_equal(x, y, equal_nan=x.dtype.kind == "f"), f


def _matrices(settings, w, cats):
    return (
        build_matrix(settings, w.train_days, w.features, cats, day_weights=w.weights, known_counts=w.counts),
        build_matrix(settings, w.train_days, w.features, cats, max_rows=len(w.train_days) * 60),
        build_matrix(settings, w.valid_days, w.features, cats),
    )


def test_days_encoded_together_give_the_matrices_of_one_day_at_a_time(settings, monkeypatch):
    write_days(settings, D, days=12, rows=150, truth=False)
    w = plan_window(settings, D)
    cats = freeze_categories(settings, w.train_days + w.valid_days, w.categorical)
    together = _matrices(settings, w, cats)
    monkeypatch.setattr(dataset, "ENCODE_BATCH_ROWS", 0)  # every day alone, as before
    training_cache.clear()
    alone = _matrices(settings, w, cats)
    for a, b in zip(together, alone, strict=True):
        _same(a, b)
    assert len(together[0].y) == sum(w.counts[x][0] for x in w.train_days)


def test_labelled_days_equal_each_day_read_alone(settings):
    write_days(settings, D, days=6, rows=80, truth=False)
    days = sorted(dataset.partition_dates(settings, "training"))
    label = dataset.label_column(settings)
    got = list(labelled_days(settings, days, label))
    assert [x for x, _ in got] == days
    for x, df in got:
        pd.testing.assert_frame_equal(df, labelled(dataset.read_day(settings, x), label))


def test_a_person_share_and_columns_cut_what_the_whole_day_gives(settings):
    # the cut is made before the rows are converted and sorted: it must keep the same rows in
    # the same order as cutting the whole day's sorted frame
    write_days(settings, D, days=6, rows=80, truth=False)
    days = sorted(dataset.partition_dates(settings, "training"))
    label = dataset.label_column(settings)
    feature = next(c for c in dataset.read_day(settings, days[0]).columns if c.startswith("f_"))
    columns = [*dataset.SORT_KEYS, label, feature, "f_not_in_the_lake"]
    got = list(labelled_days(settings, days, label, share=0.4, columns=columns))
    assert [x for x, _ in got] == days
    for x, df in got:
        whole = labelled(dataset.read_day(settings, x), label)
        kept = whole[training_sample.person_sample(whole["person_id"], 0.4, settings.seed)]
        assert 0 < len(kept) < len(whole)
        want = kept[[*dataset.SORT_KEYS, label, feature]].reset_index(drop=True)
        pd.testing.assert_frame_equal(df, want)


def test_no_days_give_no_frames(settings):
    # the gate asks for the evidence days after both models' fits: there may be none
    assert list(labelled_days(settings, [], dataset.label_column(settings))) == []


def test_a_rewritten_partition_is_read_again(settings):
    write_partition(settings, "training", D, pa.table({"label_reach": [1, 0, None], "x": [1.0, 2.0, 3.0]}))
    assert dataset.day_counts(settings, D) == (2, 1)
    rewritten = pa.table({"label_reach": [1, 1, 1, 0], "x": [1.0, 2.0, 3.0, 4.0]})
    write_partition(settings, "training", D, rewritten)
    assert dataset.day_counts(settings, D) == (4, 3)
    assert training_cache.training_table(settings, D, columns=["x"]).column("x").to_pylist() == [1, 2, 3, 4]
    assert training_cache.training_table(settings, date(2026, 3, 11)) is None
