"""Personal hour curves: how each person's reach varies over the day, read from every try of theirs
under a response curve and shrunk toward habit types learned from everyone.

A try's log-odds of a reach is the person's level, plus its channel's and a same-day retry's
offsets (everyone's), plus the person's hour habit: a bump of some amplitude and width around
some peak hour, centred so that it averages zero over the daytime hours. Nobody's level, peak,
width or amplitude is estimated alone: each person has a posterior over a grid of them (the
components), under a prior learned by EM from everyone's tries (``fit_curve_prior``); where a
string attribute of the person says something about the habit (the young in the evening), the
prior follows its values, as the habit profiles' does (``features.hour_profiles``).

Why a curve and not the buckets' counts: a person has a handful of tries, at scattered hours, on
several addresses and channels. Counted into four buckets they say little, and a bucket's middle
is rarely the person's best hour. Read under one smooth curve, every try says something about
the neighbouring hours too, a miss as well as an answer, and the chosen hour can lie anywhere.
The level is a nuisance here: the model says how reachable an address is; the curve says when.

Why a grid and EM rather than a fitted model per person: a person's few tries do not identify a
peak, a width and an amplitude, so a point estimate lands on noise; the posterior mean over the
grid averages over what the tries leave open, and the prior learned from everyone supplies the
rest. Both are cheap: the tries reduce to counts per channel, local hour and retry, so the
likelihood of every person under every component is one product of their counts in the bins
anyone was tried in.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sparse
from scipy.optimize import minimize_scalar
from threadpoolctl import threadpool_limits

from contactrank.features.hour_profiles import log_prior
from contactrank.features.schema import CHANNELS

HOURS = 24
DAYTIME = np.arange(8, 22)  # the hours over which a bump is centred: its average there is zero
# The grid: peaks on the half hour and levels half a log-odds apart chose the same hours as this
# one, at three and a half times the cost (docs/benchmarks.md)
PEAKS = np.arange(6.0, 23.01, 1.0)  # a habit peaking just outside the day still rises toward its edge
AMPLITUDES = np.array([0.2, 0.7, 1.2, 1.7, 2.2])  # log-odds from the peak to far away
WIDTHS = np.array([1.5, 2.25, 3.0])  # hours (standard deviation of the bump)
LEVELS = np.linspace(-4.5, 1.5, 7)  # log-odds around everyone's
# EM rounds: a third as many (with half the persons) lost the judged capture gained on the world
# whose habits do not follow attributes, as did half the persons at every round (docs/benchmarks.md)
_ROUNDS = 300
_PRIOR_ROUNDS = 50
_RETRY_ROUNDS = (30, 100)  # rounds before which the retry offset is fitted again
PRIOR_PSEUDO_PERSONS = 50.0  # as the habit profiles' prior by attribute value
# Bins of a try: channel (the known ones, then any other) x local hour x first try of the day or not.
_CHANNELS = len(CHANNELS) + 1
BINS = _CHANNELS * HOURS * 2
_EM_BLOCK = 256  # persons per block of the EM's likelihoods (a few MB: it stays in the cache)
_BLOCK = 2048  # persons per block of a day's posteriors


def bumps() -> np.ndarray:
    """(components of the habit x 24) the habit's log-odds at each hour, one row per (peak,
    amplitude, width), each row averaging zero over ``DAYTIME``."""
    peak, amp, width = (a.ravel() for a in np.meshgrid(PEAKS, AMPLITUDES, WIDTHS, indexing="ij"))
    hours = np.arange(HOURS)
    curve = amp[:, None] * np.exp(-((hours[None] - peak[:, None]) ** 2) / (2 * width[:, None] ** 2))
    return curve - curve[:, DAYTIME].mean(axis=1, keepdims=True)


def try_bins(channel: np.ndarray, hour: np.ndarray, retry: np.ndarray) -> np.ndarray:
    """The bin of each try: ``channel`` (a code in ``CHANNELS``, -1 for any other), local ``hour``
    (0-23) and ``retry`` (not the address's first try of its day)."""
    ch = np.where(channel < 0, _CHANNELS - 1, channel)
    return (ch * HOURS + hour) * 2 + retry.astype(np.int64)


@dataclass
class CurveFit:
    """Everyone's offsets and the prior over the components (levels x habits)."""

    base: float  # everyone's log-odds of a reach
    channel_offset: np.ndarray  # per channel of ``try_bins``
    retry_offset: float
    level_weight: np.ndarray  # LEVELS
    habit_weight: np.ndarray  # habits (rows of ``bumps``)
    habit_by_value: list[np.ndarray]  # per attribute: (values x habits) weights

    def bin_logits(self) -> np.ndarray:
        """(BINS x levels x habits) the log-odds of a try in each bin under each component."""
        b = np.arange(BINS)
        ch, hour, retry = b // (2 * HOURS), (b // 2) % HOURS, b % 2
        offset = self.base + self.channel_offset[ch] + self.retry_offset * retry
        return offset[:, None, None] + LEVELS[None, :, None] + bumps().T[hour][:, None, :]


def offsets(tries: np.ndarray, reaches: np.ndarray) -> tuple[float, np.ndarray, float]:
    """Everyone's log-odds, each channel's offset from it and a retry's, from the counts per bin
    (``tries``, ``reaches``: BINS); a channel nobody was tried on has none."""

    def logit(k: float, n: float) -> float:
        q = (k + 0.5) / (n + 1.0)
        return float(np.log(q / (1 - q)))

    by_bin = (tries.reshape(_CHANNELS, HOURS, 2), reaches.reshape(_CHANNELS, HOURS, 2))
    base = logit(reaches.sum(), tries.sum())
    channel = np.array([logit(by_bin[1][c].sum(), by_bin[0][c].sum()) - base for c in range(_CHANNELS)])
    channel[by_bin[0].sum(axis=(1, 2)) == 0] = 0.0
    retry = logit(by_bin[1][..., 1].sum(), by_bin[0][..., 1].sum()) - logit(
        by_bin[1][..., 0].sum(), by_bin[0][..., 0].sum()
    )
    return base, channel, retry if by_bin[0][..., 1].sum() and by_bin[0][..., 0].sum() else 0.0


def _log_probs(fit: CurveFit, bins: np.ndarray) -> np.ndarray:
    """(2 x bins, components) the log-probability of a reach, then of a miss, of a try in each of
    ``bins`` under each component."""
    logits = fit.bin_logits().reshape(BINS, -1)[bins]
    return np.vstack([-np.logaddexp(0.0, -logits), -np.logaddexp(0.0, logits)]).astype(np.float32)


def _outcomes(tries: sparse.csr_matrix, reaches: sparse.csr_matrix, bins: np.ndarray) -> np.ndarray:
    """(persons x 2 x bins) each person's reaches, then misses, in ``bins``: dense, so that the
    likelihoods are one product over the bins anyone was tried in, which the BLAS runs on every
    core, several times faster than the sparse product over every bin. Built a block of persons
    at a time: it holds about a kilobyte a person."""
    return np.hstack([reaches[:, bins].toarray(), (tries - reaches)[:, bins].toarray()]).astype(np.float32)


def likelihood_blocks(
    fit: CurveFit, tries: sparse.csr_matrix, reaches: sparse.csr_matrix, block: int
) -> Iterator[tuple[slice, np.ndarray]]:
    """Per block of ``block`` persons (``tries``, ``reaches``: persons x BINS): its slice and
    (persons x levels x habits) each person's likelihood of their tries under each component,
    scaled to a maximum of 1 (the posterior does not see the scale). Every block is written into
    the same buffer: a fresh (persons x components) array each time is memory the kernel zeroes
    page by page, which cost as much as the products."""
    bins = np.flatnonzero(np.asarray(tries.sum(axis=0)).ravel() > 0)  # anyone was tried in
    log_probs = _log_probs(fit, bins)
    n = tries.shape[0]
    buffer = np.empty((min(n, block), log_probs.shape[1]), dtype=np.float32)
    for lo in range(0, n, block):
        rows = slice(lo, min(n, lo + block))
        outcomes = _outcomes(tries[rows], reaches[rows], bins)
        ll = np.matmul(outcomes, log_probs, out=buffer[: rows.stop - lo])
        yield rows, _likelihoods(ll.reshape(len(ll), len(LEVELS), -1))


def _likelihoods(ll: np.ndarray) -> np.ndarray:
    """exp(ll) scaled per person to a maximum of 1 (the posterior does not see the scale), in
    place of ``ll``."""
    ll -= ll.max(axis=(1, 2), keepdims=True)
    return np.exp(ll, out=ll)


def fit_curve_prior(
    tries: sparse.csr_matrix, reaches: sparse.csr_matrix, codes: np.ndarray, sizes: list[int]
) -> CurveFit:
    """Everyone's offsets, then by EM the level and habit weights, then per attribute (``codes``:
    persons x attributes, the index of each person's value, -1 for none; ``sizes``: the values of
    each) the habit weights of each value, each attribute alone (``hour_profiles._weights_by_value``
    says why), shrunk toward everyone's by PRIOR_PSEUDO_PERSONS. From a flat start: deterministic."""
    n_habits = len(PEAKS) * len(AMPLITUDES) * len(WIDTHS)
    base, channel, retry = offsets(
        np.asarray(tries.sum(axis=0)).ravel(), np.asarray(reaches.sum(axis=0)).ravel()
    )
    fit = CurveFit(base, channel, retry, np.full(len(LEVELS), 1 / len(LEVELS)),
                   np.full(n_habits, 1 / n_habits), [])  # fmt: skip
    if tries.shape[0] == 0 or tries.sum() == 0:
        fit.habit_by_value = [np.tile(fit.habit_weight, (size, 1)) for size in sizes]
        return fit
    like = _levels_first(fit, tries, reaches)
    # A round's products are over one block of persons: BLAS threads only wait on each other
    # there, and on a busy machine the wait cost several times the products (docs/benchmarks.md).
    with threadpool_limits(limits=1, user_api="blas"):
        for round_ in range(_ROUNDS):
            if round_ in _RETRY_ROUNDS:
                fit.retry_offset = _retry_offset(fit, like, tries, reaches)
                like = _levels_first(fit, tries, reaches)
            _em_round(fit, like)
        by_habit = _by_habit(fit, like)
        fit.habit_by_value = [_weights_of_values(by_habit, codes[:, a], size, fit.habit_weight)
                              for a, size in enumerate(sizes)]  # fmt: skip
    return fit


def _levels_first(fit: CurveFit, tries: sparse.csr_matrix, reaches: sparse.csr_matrix) -> list[np.ndarray]:
    """The likelihoods (``likelihood_blocks``) in blocks of ``_EM_BLOCK`` persons, each levels
    first (levels x persons x habits): summing the levels out and weighing them are products over
    contiguous rows, and a round's passes over a block read it from the cache."""
    blocks = likelihood_blocks(fit, tries, reaches, _EM_BLOCK)
    return [np.ascontiguousarray(like.transpose(1, 0, 2)) for _, like in blocks]


def _em_round(fit: CurveFit, like: list[np.ndarray]) -> None:
    """One EM step on the blocks ``like`` (``_levels_first``): both weights from the old ones."""
    level, habit = fit.level_weight.astype(np.float32), fit.habit_weight.astype(np.float32)
    level_sum, habit_sum = np.zeros(len(level)), np.zeros(len(habit))
    for block in like:
        by_level = (block.reshape(-1, len(habit)) @ habit).reshape(len(level), -1)
        inverse = 1.0 / (level @ by_level)
        level_sum += by_level @ inverse
        habit_sum += inverse @ (level @ block.reshape(len(level), -1)).reshape(-1, len(habit))
    fit.level_weight = fit.level_weight * level_sum
    fit.level_weight /= fit.level_weight.sum()
    fit.habit_weight = fit.habit_weight * habit_sum
    fit.habit_weight /= fit.habit_weight.sum()


def _by_habit(fit: CurveFit, like: list[np.ndarray]) -> np.ndarray:
    """(persons x habits) the likelihoods ``like`` (``_levels_first``) with the levels summed out."""
    level = fit.level_weight.astype(np.float32)
    return np.vstack([(level @ block.reshape(len(level), -1)).reshape(block.shape[1:]) for block in like])


def _retry_offset(
    fit: CurveFit, like: list[np.ndarray], tries: sparse.csr_matrix, reaches: sparse.csr_matrix
) -> float:
    """The retry offset that maximises the expected log-likelihood of the retries under the
    persons' posteriors (a generalised M-step; ``like``: levels first).

    Why not everyone's ratio (``offsets``): a dialer tries again after a miss, so the retried
    are the persons who answer less; their ratio holds that too. Under each person's own level
    the offset is the retry's alone."""
    retry_bins = np.arange(BINS) % 2 == 1
    t, r = tries[:, retry_bins].astype(np.float32), reaches[:, retry_bins].astype(np.float32)
    retried = np.asarray(t.sum(axis=1)).ravel() > 0
    level, habit = fit.level_weight.astype(np.float32), fit.habit_weight.astype(np.float32)
    # the expected reaches and misses in each retry bin under each component, summed over the
    # persons once: the loss is then a sum over bins x components, whatever the offset
    answered = np.zeros((t.shape[1], len(level) * len(habit)))
    missed = np.zeros_like(answered)
    lo = 0
    for block in like:
        hi = lo + block.shape[1]
        keep = lo + np.flatnonzero(retried[lo:hi])
        if len(keep):
            post = block[:, keep - lo, :] * level[:, None, None]
            post *= habit[None, None, :]
            post = (post / post.sum(axis=(0, 2), keepdims=True)).transpose(1, 0, 2).reshape(len(keep), -1)
            answered += r[keep].T @ post
            missed += (t[keep] - r[keep]).T @ post
        lo = hi
    logits = fit.bin_logits().reshape(BINS, -1)[retry_bins] - fit.retry_offset

    def loss(offset: float) -> float:
        x = logits + offset
        return float((answered * np.logaddexp(0.0, -x) + missed * np.logaddexp(0.0, x)).sum())

    return float(minimize_scalar(loss, bounds=(-2.0, 1.0), method="bounded", options={"xatol": 0.02}).x)


def _weights_of_values(by_habit: np.ndarray, code: np.ndarray, size: int, weight: np.ndarray) -> np.ndarray:
    """(values x habits) the habit weights of each value of one attribute: EM with the
    likelihoods ``by_habit`` (persons x habits, the levels summed out) fixed."""
    known = code >= 0
    order = np.argsort(code[known], kind="stable")
    like = by_habit[known][order]  # each value's persons together
    persons = np.bincount(code[known], minlength=size)
    starts = np.r_[0, np.cumsum(persons)]
    out = np.tile(weight, (size, 1)).astype(np.float32)
    for _ in range(_PRIOR_ROUNDS):
        # a value's summed posteriors are its weights times its persons' likelihoods over their
        # totals: two passes over the likelihoods, no (persons x habits) posterior built
        sums = np.zeros((size, len(weight)))
        for value in range(size):
            rows = like[starts[value] : starts[value + 1]]
            if len(rows):
                sums[value] = out[value] * ((1.0 / (rows @ out[value])) @ rows)
        out = (sums + PRIOR_PSEUDO_PERSONS * weight) / (persons + PRIOR_PSEUDO_PERSONS)[:, None]
        out = out.astype(np.float32)
    return out.astype(np.float64)


def habit_priors(fit: CurveFit, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(combinations x habits) the prior over the habits of each distinct row of ``codes``, and
    each person's combination: everyone's weights, moved by each attribute value they hold (naive
    Bayes, ``hour_profiles.log_prior``; a weight EM emptied is floored, so that its log stays
    finite). Persons share a handful of combinations, so each prior is computed once."""
    combinations, combination = np.unique(codes, axis=0, return_inverse=True)
    by_value = [np.maximum(weights, 1e-300) for weights in fit.habit_by_value]
    logs = log_prior(combinations, np.log(np.maximum(fit.habit_weight, 1e-300)), by_value)
    prior = np.exp(logs - logs.max(axis=1, keepdims=True))
    return prior / prior.sum(axis=1, keepdims=True), combination.reshape(-1)


def expected_curves(
    fit: CurveFit, tries: sparse.csr_matrix, reaches: sparse.csr_matrix, codes: np.ndarray
) -> np.ndarray:
    """(persons x 24) each person's expected reach at each local hour on an average channel, first
    try of the day, under their posterior over the components."""
    # in single precision, as the likelihoods: a weight floored at its smallest normal number
    tiny = np.finfo(np.float32).tiny
    level = np.maximum(fit.level_weight, tiny).astype(np.float32)[None, :, None]
    logits = fit.base + LEVELS[:, None, None] + bumps()[None]  # levels x habits x 24
    p = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32).reshape(-1, HOURS)
    prior, combination = habit_priors(fit, codes)
    prior = np.maximum(prior, tiny).astype(np.float32)
    curves = np.empty((tries.shape[0], HOURS), dtype=np.float32)
    for rows, like in likelihood_blocks(fit, tries, reaches, _BLOCK):
        like *= level
        like *= prior[combination[rows], None, :]
        post = like.reshape(len(like), -1)
        curves[rows] = (post @ p) / post.sum(axis=1, keepdims=True)
    return curves
