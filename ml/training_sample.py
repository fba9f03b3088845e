"""Which labelled rows of the training days a run keeps: the label column, and a seeded sample of
whole persons when a reader has a row budget (training's ``train_max_rows``, the file map's
validation rows, the drift guard's reference).

Whole persons, by a seeded hash of ``person_id``: the same persons every run and on every day, so
a person's history is kept or left whole.
"""

from __future__ import annotations

import logging
from datetime import date

import numpy as np
import pandas as pd

from contactrank.features.schema import LABEL_COLUMNS
from contactrank.ml.training_cache import training_table
from contactrank.settings import Settings

log = logging.getLogger(__name__)


def label_column(settings: Settings) -> str:
    return LABEL_COLUMNS[settings.label]


def person_sample(person: pd.Series, share: float, seed: int) -> np.ndarray:
    """Rows of the persons whose seeded hash falls in the first ``share`` of the hash range."""
    hashes = pd.util.hash_array(person.astype(str).to_numpy(dtype=object), hash_key=f"{seed:016d}"[:16])
    return hashes < np.uint64(min(share, 1.0) * float(np.iinfo(np.uint64).max))


def sample_share(
    settings: Settings,
    days: list[date],
    max_rows: int | None,
    known: dict[date, tuple[int, int]] | None = None,
) -> tuple[float, list[int]]:
    """The share of persons to keep (1.0: all) for at most about ``max_rows`` labelled rows of
    ``days``, and each day's labelled rows.

    ``known``: (labelled rows, positives) already counted per day (``Window.counts``), not read again.
    """
    label = label_column(settings)
    counts = []
    for x in days:
        if known is not None and x in known:
            counts.append(known[x][0])
            continue
        table = training_table(settings, x, columns=[label])
        counts.append(table.num_rows - table.column(label).null_count)
    share = 1.0 if max_rows is None or sum(counts) <= max_rows else max_rows / sum(counts)
    return share, counts


def sampled_counts(
    settings: Settings,
    days: list[date],
    max_rows: int | None,
    known: dict[date, tuple[int, int]] | None = None,
) -> tuple[float, list[int]]:
    """The share of persons to keep (1.0: all) and the labelled rows it keeps on each day
    (``known`` as in :func:`sample_share`)."""
    share, counts = sample_share(settings, days, max_rows, known)
    if share < 1.0:
        label = label_column(settings)
        counts = []
        for x in days:
            rows = training_table(settings, x, columns=[label, "person_id"]).to_pandas()
            counts.append(
                int(person_sample(rows[rows[label].notna()]["person_id"], share, settings.seed).sum())
            )
        log.info("training rows sampled over %d days: a %.3f share of persons, %d rows (train_max_rows %d)",
                 len(days), share, sum(counts), max_rows)  # fmt: skip
    return share, counts
