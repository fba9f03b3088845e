"""A history ceiling that learns the world's hour-habit types from the history instead of being told them.

The ceiling of ``judge_ceiling`` is told the generator's form and every constant of it, the habit
types included: on ``default`` the three types' centres (9.5h, 13h, 19h) and their shares by age
band. A learner is not told them. This one keeps the rest of what the ceiling is told (the
number of types, every other term and prior) and fits the types by Monte-Carlo EM on the same
history (Wei and Tanner's MCEM; the E-step is the ceiling's own importance sample):

- E-step: each person's posterior over (type, peak, amplitude) under the current types;
- M-step: a type's share in each age band is the band's mean posterior share; its centre the
  posterior mean of its peaks (the peak is normal around the centre with a told spread of one
  hour); its amplitude range the uniform one with the posterior's mean and variance.

It starts from types that say nothing of the world: centres evenly spread over the day, every
amplitude in [0, ``MAX_AMP``], equal shares. Each step draws its importance sample afresh under
the current types, with the same seed, so the steps move the types and not the sample. (One
sample re-weighted to other types would be cheaper, but with a few weighty samples per person
its log-likelihood is biased against narrow types: it rated the world's own types below
generic ones.) From one start EM can stop at a local optimum, so the likeliest fit of several
starts is kept. The figure it gives is the capture of an estimator that knows the form and
learns the habits: what a learner of the habit types can reach from this history.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd
from judge_ceiling import HabitTypes, posterior_blocks  # the bench folder is not a package

from contactrank.features.simulated_world import AGE_BANDS

AGE_BANDS_COUNT = len(AGE_BANDS)
SHARE_FLOOR = 1e-3  # a type the history empties keeps a trace, so its centre stays defined
MAX_AMP = 2.5  # a learned amplitude range stays inside [0, 2.5]


def generic_habits(
    types: int, offset: float = 0.5, first_hour: float = 8.0, last_hour: float = 22.0
) -> HabitTypes:
    """``types`` habit types that say nothing of the world: centres evenly spread over the
    calling day (``offset`` of a spacing after its start), amplitudes uniform in [0, ``MAX_AMP``],
    equal shares in every age band."""
    step = (last_hour - first_hour) / types
    return HabitTypes(
        first_hour + step * (np.arange(types) + offset),
        np.zeros(types),
        np.full(types, MAX_AMP),
        np.full((AGE_BANDS_COUNT, types), 1.0 / types),
    )


def em_step(
    landing: Path, d: date, rows: pd.DataFrame, world: str | None, habits: HabitTypes, told: str = "attempts"
) -> tuple[HabitTypes, float]:
    """One Monte-Carlo EM step from ``habits``: the types it moves to, and the mean log-likelihood
    of a person's history under ``habits`` (both from the ceiling's importance sample drawn
    under ``habits``)."""
    types = habits.centres.size
    weight, peak_sum = np.zeros(types), np.zeros(types)
    amp_sum, amp_sq = np.zeros(types), np.zeros(types)
    band_share, band_count = np.zeros((AGE_BANDS_COUNT, types)), np.zeros(AGE_BANDS_COUNT)
    evidence, persons = 0.0, 0
    for b in posterior_blocks(landing, d, rows, world, told=told, habits=habits):
        lat, w = b.latent, b.weights
        for k in range(types):
            wk = w * (lat["type"] == k)
            share = wk.sum(axis=1)
            weight[k] += share.sum()
            peak_sum[k] += (wk * lat["peak"]).sum()
            amp_sum[k] += (wk * lat["amp"]).sum()
            amp_sq[k] += (wk * lat["amp"] ** 2).sum()
            band_share[:, k] += np.bincount(b.age, share, AGE_BANDS_COUNT)
        band_count += np.bincount(b.age, minlength=AGE_BANDS_COUNT)
        evidence += b.log_evidence.sum()
        persons += b.log_evidence.size
    held = np.maximum(weight, 1e-12)
    centres = np.where(weight > 0, peak_sum / held, habits.centres)
    amp_mean = amp_sum / held
    half = np.sqrt(3.0 * np.maximum(amp_sq / held - amp_mean**2, 0.0))
    shares = np.where(
        band_count[:, None] > 0, band_share / np.maximum(band_count, 1.0)[:, None], habits.shares
    )
    vector = np.concatenate([centres, amp_mean - half, amp_mean + half, shares.ravel()])
    return _as_habits(vector, types), evidence / max(persons, 1)


def _as_vector(h: HabitTypes) -> np.ndarray:
    return np.concatenate([h.centres, h.amp_low, h.amp_high, h.shares.ravel()])


def _as_habits(v: np.ndarray, types: int) -> HabitTypes:
    """The habit types of a parameter vector, put back inside their domain (an extrapolated step
    may leave it): amplitudes inside [0, ``MAX_AMP``], shares above the floor and summing to one."""
    low = np.clip(v[types : 2 * types], 0.0, MAX_AMP - 1e-3)
    high = np.clip(v[2 * types : 3 * types], low + 1e-3, MAX_AMP)
    shares = np.maximum(v[3 * types :].reshape(AGE_BANDS_COUNT, types), SHARE_FLOOR)
    return HabitTypes(v[:types].copy(), low, high, shares / shares.sum(axis=1, keepdims=True))


def learn_habits(
    landing: Path,
    d: date,
    rows: pd.DataFrame,
    world: str | None,
    types: int,
    cycles: int = 30,
    told: str = "attempts",
    progress: Callable[[str], None] | None = None,
    starts: int = 1,
) -> HabitTypes:
    """The habit types fitted on the history of the persons of ``rows`` by ``cycles`` cycles of
    EM accelerated by SQUAREM (Varadhan and Roland 2008: two EM steps, then a step along their
    difference, kept only when it does not lower the likelihood), from each of ``starts`` generic
    starts (``generic_habits`` with its centres shifted by a fraction of their spacing); the
    likeliest fit is kept. Plain EM moves a type's centre by a few hundredths of an hour per step
    here, as a person's few tries say little of their type, and from one start it stops at a local
    optimum."""
    say = progress or (lambda line: print(line, file=sys.stderr, flush=True))
    best, best_loglik = None, -np.inf
    for start in range(starts):
        offset = 0.5 if starts == 1 else (start + 0.5) / starts
        habits, loglik = _fit(landing, d, rows, world, generic_habits(types, offset), cycles, told, say)
        say(f"habit EM start {start + 1}/{starts} (offset {offset:.2f}): mean log-likelihood {loglik:.5f}")
        if loglik > best_loglik:
            best, best_loglik = habits, loglik
    assert best is not None
    return best


def _fit(
    landing, d, rows, world, habits: HabitTypes, cycles: int, told: str, say
) -> tuple[HabitTypes, float]:
    """SQUAREM cycles from ``habits``; the fit and the mean log-likelihood under it."""
    types = habits.centres.size
    for cycle in range(cycles):
        h1, _ = em_step(landing, d, rows, world, habits, told)
        h2, ll1 = em_step(landing, d, rows, world, h1, told)
        x0, x1, x2 = _as_vector(habits), _as_vector(h1), _as_vector(h2)
        r, v = x1 - x0, x2 - 2 * x1 + x0
        alpha = -np.sqrt((r @ r) / max(v @ v, 1e-300))
        jump = _as_habits(x0 - 2 * alpha * r + alpha**2 * v, types)
        h3, ll3 = em_step(landing, d, rows, world, jump, told)
        habits = h3 if ll3 >= ll1 else h2
        say(
            f"habit EM cycle {cycle + 1}/{cycles}: mean log-likelihood {max(ll1, ll3):.5f} "
            f"(step {-alpha:.1f}); {describe(habits)}"
        )
    return habits, em_step(landing, d, rows, world, habits, told)[1]


def describe(habits: HabitTypes) -> str:
    """One line: each type's centre, amplitude range and overall share."""
    overall = habits.shares.mean(axis=0)
    return "; ".join(
        f"{c:.1f}h amp {lo:.2f}-{hi:.2f} share {s:.2f}"
        for c, lo, hi, s in zip(habits.centres, habits.amp_low, habits.amp_high, overall, strict=True)
    )


def as_json(habits: HabitTypes) -> dict[str, list]:
    """The fitted types as lists, for a report (centres, amplitude ranges, shares by age band)."""
    return {
        "centres": habits.centres.round(3).tolist(),
        "amp_low": habits.amp_low.round(3).tolist(),
        "amp_high": habits.amp_high.round(3).tolist(),
        "shares_by_age_band": habits.shares.round(4).tolist(),
    }
