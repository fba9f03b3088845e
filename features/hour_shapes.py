"""Hour-habit shapes: a mixture of levels x shapes fitted to every person's bucket counts, and each
person's expected shape (the relative reach rate of each bucket, whatever their level).

The habit profiles of ``hour_profiles`` are free per-bucket rates; persons differ in how often they
answer at all far more than in when, so free profiles spend themselves on the level, and a
person's best bucket under them follows the crowd. Here every component's rate in a bucket is a
level times a shape, and each shape is learned from the persons of every level: a rarely
reached person's one evening answer is read against the evening shape everyone else shows.

The shapes only say *when*: the hour choice (``ml.hours``) reads them, the model does not (its
features are the profiles'). A bucket in which nobody was tried has no shape (NaN): nothing in
the history says how anyone answers there.
"""

from __future__ import annotations

import numpy as np

from contactrank.features.daily_aggregates import BUCKETS

LEVELS = (0.4, 1.0, 2.0)  # starting multiples of the population's rate
# Starting leans of the shapes: none, towards the first buckets of the day, towards the evening.
_EARLY = np.array([1.0 if r is not None and r[1] <= 14 else 0.0 for r in BUCKETS.values()])
_LATE = np.array([1.0 if r is not None and r[0] >= 18 else 0.0 for r in BUCKETS.values()])
_SHAPE_START = (np.ones(len(BUCKETS)), 1 + 0.5 * _EARLY - 0.3 * _LATE, 1 + 0.5 * _LATE - 0.3 * _EARLY)
SHAPES = len(_SHAPE_START)
_ROUNDS = 150
_FACTOR_ROUNDS = 2  # alternating updates of the levels and the shapes per EM round


def binomial_loglik(att: np.ndarray, reach: np.ndarray, rate: np.ndarray) -> np.ndarray:
    """(rows x components) log-likelihood of each row's bucket counts under each component's rates."""
    return reach @ np.log(rate).T + (att - reach) @ np.log1p(-rate).T


def population_rates(att: np.ndarray, reach: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Everyone's reach rate per bucket (rows weighted by ``n``), with one pseudo-attempt at the
    all-bucket rate: a bucket nobody was tried in gets that rate."""
    everywhere = (n @ reach).sum() / max((n @ att).sum(), 1.0)
    return np.clip((n @ reach + everywhere) / (n @ att + 1.0), 1e-3, 0.95)


class LevelsShapes:
    """A fitted mixture: component k has rate ``level[level_of[k]] * shape[shape_of[k]]``."""

    def __init__(self, level: np.ndarray, shape: np.ndarray, log_weight: np.ndarray, tried: np.ndarray):
        self.level, self.shape, self.log_weight, self.tried = level, shape, log_weight, tried
        self.level_of = np.repeat(np.arange(len(level)), len(shape))
        self.shape_of = np.tile(np.arange(len(shape)), len(level))

    @property
    def rate(self) -> np.ndarray:
        """(components x buckets) reach rates."""
        return np.clip(self.level[self.level_of][:, None] * self.shape[self.shape_of], 1e-4, 0.95)

    def loglik(self, att: np.ndarray, reach: np.ndarray) -> np.ndarray:
        """(rows x components) binomial log-likelihood of each count vector."""
        return binomial_loglik(att, reach, self.rate)

    def expected_shape(self, att: np.ndarray, reach: np.ndarray, log_prior: np.ndarray) -> np.ndarray:
        """(rows x buckets) each row's shape under its posterior over the components (``log_prior``:
        one row for all, or one per count vector), each row's mean over the tried buckets 1;
        NaN in a bucket nobody was tried in."""
        if not self.tried.any():  # no attempt anywhere: no shape
            return np.full(att.shape, np.nan)
        ll = self.loglik(att, reach) + log_prior
        post = np.exp(ll - ll.max(axis=1, keepdims=True)) if len(ll) else ll
        post /= post.sum(axis=1, keepdims=True)
        by_shape = np.column_stack([post[:, self.shape_of == s].sum(axis=1) for s in range(len(self.shape))])
        expected = by_shape @ self.shape
        expected /= expected[:, self.tried].mean(axis=1, keepdims=True)
        return np.where(self.tried, expected, np.nan)


def fit_levels_shapes(att: np.ndarray, reach: np.ndarray, n: np.ndarray) -> LevelsShapes:
    """EM over the distinct count vectors ``att``, ``reach`` (rows x buckets) with multiplicity ``n``.

    Each round: the posteriors over the components, then the levels and the shapes in turn by
    their Poisson-style updates (expected reaches over expected exposure), each shape's bucket with
    one pseudo-attempt at the population's rate, so a bucket few were tried in stays near it.
    From a fixed start, so the fit is deterministic.
    """
    overall = population_rates(att, reach, n)
    level = np.array(LEVELS)
    shape = np.array(_SHAPE_START) * overall
    fit = LevelsShapes(level, shape, np.full(len(level) * SHAPES, -np.log(len(level) * SHAPES)), n @ att > 0)
    if n.sum() == 0:
        return fit
    lev, shp = fit.level_of, fit.shape_of
    for _ in range(_ROUNDS):
        ll = fit.loglik(att, reach) + fit.log_weight
        post = np.exp(ll - ll.max(axis=1, keepdims=True))
        post *= (n / post.sum(axis=1))[:, None]
        weight = post.sum(axis=0) / n.sum()
        reached, tried = post.T @ reach, post.T @ att  # components x buckets
        for _ in range(_FACTOR_ROUNDS):
            exposure = fit.level[lev][:, None] * tried
            shape = np.array(
                [(reached[shp == s].sum(axis=0) + overall) / (exposure[shp == s].sum(axis=0) + 1.0)
                 for s in range(SHAPES)]
            )  # fmt: skip
            level = np.array(
                [reached[lev == k].sum() / max((shape[shp[lev == k]] * tried[lev == k]).sum(), 1e-12)
                 for k in range(len(level))]
            )  # fmt: skip
            fit.level, fit.shape = level, shape
        fit.log_weight = np.log(np.maximum(weight, 1e-12))
    return fit
