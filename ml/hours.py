"""The best hour of each candidate and the score at it, from the model's outputs at every allowed hour.

Four choices (``settings.hour_choice``):

- ``shape`` (default): the person's habit shape (``hour_shape_<bucket>``, the relative reach
  rate of each bucket under the posterior over the levels x shapes of ``features.hour_shapes``)
  and habit profile (below), each as a ratio to its mean over the allowed hours, pooled on the
  log scale (``pooled``, ``settings.hour_shape_weight``), pick the bucket; the hour is the
  middle of that bucket's allowed hours (the earlier of two). Where the habit profile's best
  bucket is one nobody was tried in (the shape has nothing there), or the row has no shape,
  the profile picks, as below. The score is as below (with ``hour_shape_weight`` 1, the shape
  alone, the larger of the profile's lift and the shape's: ``HourProfile.lift``).
- ``curve``: the person's hour curve (``hour_curve_<hour>``, ``features.hour_curves``: the expected
  reach at each local hour under the posterior over a grid of response curves, read from every
  try) picks the allowed hour where it is highest, in the person's own clock; a person without
  one keeps the ``shape`` choice. Scored as ``shape``: the curve moves the hour, not the
  calibrated number, so the training's file map is the same.
- ``profile``: the person's habit profile (``f_p_hour_profile_<bucket>``, the expected reach rate
  of each hour bucket under the posterior over the habit profiles fitted to everyone's bucket
  counts; docs/features.md) picks the bucket; the hour is the middle of that bucket's allowed
  hours. A preference alike at every allowed hour leaves the choice to the model. The score is
  the model's probability at the person's average allowed hour times the profile's lift of the
  chosen bucket, a lift above 1 only where the person has been tried.
- ``model``: the hour with the highest smoothed model output, scored by the model alone.

Why the profile decides: judged against the truth of simulated worlds, the argmax of the model's
curve over hours realised less of the hour gain than one fixed hour for everyone. A person has a
handful of attempts and one or two answers in their history; a tree reads them through noisy
per-bucket rates, and its curve's maximum lands on that noise. The profile posterior weighs the
same counts against a few shapes learned from everyone, which is the estimate the trees lack.
Why the shape with the profile: persons differ in how often they answer far more than in when,
and the free profiles spend themselves on that level; where habits follow attributes (the young
in the evening) the profile's best bucket followed the crowd. The shapes are learned across
levels, so the person's few answers and their group's habit say when; but they are few and
smooth, so alone they pick between two types' peaks (``pooled`` says more). Where nobody was tried in
a bucket the shapes know nothing, while the profile still prefers that bucket for a person who
rarely answers in the tried ones: that extrapolation is kept.
Why the middle: the profile knows buckets, not hours, and within a bucket the model's curve was
worse than no preference on every judged world. It leans to a bucket's first hours, because the
history it learns from comes from a dialer that tries again later the same day only after a
failure, so later hours carry the tired, already-missed retries.
Why the lean (``settings.hour_lean_share``): a profile that rates a neighbouring bucket nearly as
high as the best says the person's habit sits near the border of the two, or that the posterior is
split between a type of each; an hour next to the border serves either better than the middle of
one. On the judged worlds it moved the hour where a world has adjacent habit types (morning and
midday) and cost a little where the types sit at the buckets' middles.
The model's own output at the profile's hour underrates it for the same reasons, so the score
takes the hour from the profile too: the model says how reachable the address is, the profile
how much better the chosen hour is than the person's average. An untried bucket is never scored
above the average: the profile's lift there is the population's guess, not the person's.
Why a bucket nobody was tried in is read from the nearest tried one (``from_neighbours``,
``settings.hour_unseen_from_neighbours``): the profiles give it the population's rate for
everyone, so it was the pick of everyone who answers less than the average, whatever their
habit. Read so, it is the person's own ratio to everyone, and its lift is not capped.
Why the repeat ratio (``settings.hour_repeat_strength``): the same retries lower the later
buckets' rates in the counts the profiles and shapes are fitted on, so a person with little
history was given the morning, the bucket with the fewest retries. Each bucket's rating is divided
by its repeat ratio (the reach rate of all its tries over that of first tries of the day,
``features.feature_rows.repeat_ratio_sql``) to a power before the bucket is picked. The ratio
also holds who was tried again (a person already missed once that day), which the person's level
already explains; half of it on the log scale did best on the judged worlds, the whole of it cost
the office-hours and time-zone worlds. The lean reads the ratings as they were: over the
ratios a later neighbour is rated closer, the hour leaned later more often, and where a world's
morning type answers at the bucket's start that cost capture. The score keeps the profile's lift:
the ratio moves the choice between buckets, not how much better the chosen one is than the
person's average.
Training fits one more map on the product (``ml.file_calibration``), applied last: the two factors
were fitted on other questions, and their product stayed under the truth.
docs/benchmarks.md has the figures.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from contactrank.features.context import HourInputs, bucket_index
from contactrank.features.daily_aggregates import BUCKETS
from contactrank.features.schema import CHANNELS
from contactrank.ml.predictor import Predictor
from contactrank.settings import Settings

# One block of candidate rows per allowed hour: (hour column, hour, candidate rows, offset in the stack).
HourBlock = tuple[int, int, np.ndarray, int]
# Positions in ``BUCKETS`` of the buckets with an hour range, in the day's order (not ``night``).
_DAYTIME = [i for i, hours in enumerate(BUCKETS.values()) if hours is not None]
HOUR_SMOOTHING = 1  # allowed neighbours on each side averaged into an hour's output (smooth_hours)


def allowed_hours(
    settings: Settings, channels: pd.Series, shift: np.ndarray | None = None
) -> tuple[list[int], np.ndarray]:
    """All hours some row may take, in the recorded clock, and a (rows x hours) mask of each row's:
    the hours allowed for its channel in the person's own clock, ``shift`` hours ahead of the
    recorded one (``timezones.clock_shifts``; none: the same clock)."""
    names = sorted(set(CHANNELS) | set(channels.dropna().unique()))
    own_clock = np.zeros((len(names) + 1, 24), dtype=bool)  # last row: a missing channel
    for i, c in enumerate([*names, None]):
        window = settings.allowed_hours(c)
        if any(not 0 <= h <= 23 for h in window):
            raise ValueError(f"allowed hours of channel {c!r} must lie in 0-23: {window[0]}-{window[-1]}")
        own_clock[i, window] = True
    shift = np.zeros(len(channels), dtype=np.int64) if shift is None else np.asarray(shift, dtype=np.int64)
    ch = channels.to_numpy(dtype=object)
    row_channel = pd.Index(names).get_indexer(ch)
    row_channel[pd.isna(ch)] = len(names)
    shifts = np.unique(shift) if len(shift) else np.zeros(1, dtype=np.int64)
    any_own = np.flatnonzero(own_clock.any(axis=0))
    all_hours = sorted({int(h) for k in shifts for h in (any_own - k) % 24})
    mask = np.zeros((len(ch), len(all_hours)), dtype=bool)
    for j, h in enumerate(all_hours):
        mask[:, j] = own_clock[row_channel, (h + shift) % 24]
    return all_hours, mask


def smooth_hours(raws: np.ndarray) -> np.ndarray:
    """Each allowed hour's output averaged with its allowed neighbours (``HOUR_SMOOTHING`` columns
    on each side); -inf stays where the hour is not allowed.

    True hour habits are smooth (a peak a few hours wide) while a tree's output jumps from one
    hour to the next by what its splits on ``f_hour`` learned from a few thousand attempts each:
    the argmax of the raw curve picks those jumps, and the score at it is the most optimistic
    one. Averaging neighbours keeps the habit and halves the jumps.
    """
    allowed = np.isfinite(raws)
    values = np.where(allowed, raws, 0.0)
    num, den = values.copy(), allowed.astype(np.float64)
    for k in range(1, HOUR_SMOOTHING + 1):
        num[:, k:] += values[:, :-k]
        den[:, k:] += allowed[:, :-k]
        num[:, :-k] += values[:, k:]
        den[:, :-k] += allowed[:, k:]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(allowed, num / np.maximum(den, 1.0), -np.inf)


class HourProfile:
    """The person's habit profile read at each allowed hour of the candidates (candidates x hours)."""

    def __init__(
        self,
        inputs: HourInputs,
        hour_of: np.ndarray,
        by_shape: bool = False,
        lean_share: float = np.inf,
        untried_after: int = 0,
        unseen_from_neighbours: bool = False,
        shape_weight: float = 1.0,
        repeat_strength: float = 0.0,
        shift: np.ndarray | None = None,
    ):
        buckets = bucket_index(hour_of.astype("float64"))
        self.lean_share = lean_share  # settings.hour_lean_share; infinite: always the middle
        self.rate = np.nan_to_num(inputs.profile[:, buckets], nan=0.0)
        # settings.hour_unseen_from_neighbours: the rates with the buckets nobody was tried in
        # read from their neighbours (``from_neighbours``), and where they were; None: none read
        self.extrapolated, self.unseen = None, None
        if unseen_from_neighbours:
            rates, unseen = from_neighbours(inputs)
            if unseen.any():
                self.extrapolated = np.nan_to_num(rates[:, buckets], nan=0.0)
                self.unseen = unseen[:, buckets]
        self.tried = inputs.person_attempts[:, buckets] > 0
        # settings.hour_untried_after: buckets tried this often without a reach (None: never moves)
        self.failed = None
        if untried_after > 0:
            self.failed = (inputs.person_attempts[:, buckets] >= untried_after) & (
                inputs.person_reaches[:, buckets] == 0
            )
        self.shape = inputs.shape[:, buckets] if by_shape and inputs.shape is not None else None
        self.shape_weight = shape_weight  # settings.hour_shape_weight
        # settings.hour_repeat_strength: what each hour's rating is divided by
        self.repeat = None
        if repeat_strength > 0 and inputs.repeat is not None:
            self.repeat = _known_ratios(inputs.repeat)[:, buckets] ** repeat_strength
        # settings.hour_choice "curve": each person's curve at each column's hour in their own clock
        # (``shift`` hours ahead of the recorded one); None: the bucket choice for everyone
        self.curve = None
        if inputs.curve is not None:
            own = (hour_of[None, :] + (0 if shift is None else shift[:, None])) % 24
            self.curve = np.take_along_axis(inputs.curve, own.astype(np.int64), axis=1)

    @classmethod
    def of(
        cls,
        settings: Settings,
        inputs: HourInputs | None,
        hour_of: np.ndarray,
        shift: np.ndarray | None = None,
    ) -> HourProfile | None:
        """The profile when the settings choose hours by it (or by the shape or the curve) and the
        candidates carry it; ``shift``: each row's own clock ahead of the recorded one."""
        if settings.hour_choice not in ("shape", "curve", "profile") or inputs is None:
            return None
        if settings.hour_choice != "curve":
            inputs = replace(inputs, curve=None)
        return cls(
            inputs,
            hour_of,
            by_shape=settings.hour_choice in ("shape", "curve"),
            lean_share=settings.hour_lean_share,
            untried_after=settings.hour_untried_after,
            unseen_from_neighbours=settings.hour_unseen_from_neighbours,
            shape_weight=settings.hour_shape_weight,
            repeat_strength=settings.hour_repeat_strength,
            shift=shift,
        )

    def preference(self, allowed: np.ndarray) -> np.ndarray:
        """(candidates x hours) what picks the bucket: the shape pooled with the profile
        (``pooled``), where there is a shape and the profile's best allowed bucket is one the
        shape knows (someone was tried in it); the profile elsewhere. A bucket the shape does not
        know is never its pick. The profile's rates are the extrapolated ones where there are."""
        rate = self.rate if self.extrapolated is None else self.extrapolated
        if self.shape is None:
            return rate
        profile_top = np.where(allowed, rate, -np.inf).argmax(axis=1)
        known = np.isfinite(self.shape)
        by_shape = known[np.arange(len(known)), profile_top]
        shape = pooled(rate, self.shape, allowed & known, self.shape_weight)
        return np.where(by_shape[:, None], np.where(known, shape, -np.inf), rate)

    def lift(self, raws: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """The profile's rate at column ``cols`` of each row over its mean across the row's allowed
        hours, at most 1 where the person has no attempt in that hour's bucket; with the shape
        alone picking (``shape_weight`` 1), the shape's (its rate there over its mean across the
        allowed hours it knows) where that is larger.

        Why the profile's where the two are pooled: the training's file map is fitted on the
        scores of tried hours; with the larger lift there it scaled every score down, the picks in
        a bucket nobody was tried in too (office hours' ECE rose on every model seed judged), while
        with the profile's the scores kept their calibration (docs/benchmarks.md).
        Why the larger with the shape alone: the shape picks a bucket because it rates it; the
        profile's ratio there reads the level as much as the hour, and falls below 1 at a bucket
        the person was tried in less, which scored the better hour under the person's average. Why
        the shape's is not capped: the profile's rate in a bucket the person was never tried in is
        the population's guess, while the shape's is the person's own habit read from their
        answers elsewhere and their group's. Either ratio alone under-promised the chosen hour on
        the judged worlds, and so did the shape's capped (docs/benchmarks.md).
        At a bucket nobody was tried in, with the extrapolated rates: their ratio, not capped (the
        extrapolation is the person's own ratio to everyone in the nearest tried bucket; it
        over-promised at one judged scale and a cap under-promised at another: nobody's evening
        level is in such a history, docs/benchmarks.md). Elsewhere the lift stays
        the profile's as it is: with the extrapolated rates in every ratio the scores of picks in
        tried buckets moved away from the truth.
        """
        rows = np.arange(len(raws))
        allowed = np.isfinite(raws)
        lift = _ratio_to_mean(self.rate, allowed, cols)
        lift = np.where(self.tried[rows, cols], lift, np.minimum(lift, 1.0))
        if self.extrapolated is not None:
            lift = np.where(self.unseen[rows, cols], _ratio_to_mean(self.extrapolated, allowed, cols), lift)
        with np.errstate(invalid="ignore", divide="ignore"):
            if self.shape is None or self.shape_weight < 1:
                return lift
            shape_mean = _row_mean(self.shape, allowed & np.isfinite(self.shape))
            return np.fmax(lift, self.shape[rows, cols] / shape_mean)  # NaN (unknown): the profile's


def _known_ratios(ratio: np.ndarray) -> np.ndarray:
    """(rows x buckets) the repeat ratios, a bucket without one (nobody was tried there, or nobody
    answered a first try) at the geometric mean of the row's others (1 with none). Why: a bucket
    nobody was tried in is rated from the others (the population's rate over every bucket, or its
    neighbours), so it carries their retries; left at 1, it lost to every tried bucket."""
    known = np.isfinite(ratio) & (ratio > 0)
    logs = np.where(known, np.log(np.where(known, ratio, 1.0)), 0.0)
    mean = np.exp(logs.sum(axis=1) / np.maximum(known.sum(axis=1), 1))
    return np.where(known, ratio, mean[:, None])


def pooled(rate: np.ndarray, shape: np.ndarray, over: np.ndarray, weight: float) -> np.ndarray:
    """(candidates x hours) the profile's ``rate`` and the ``shape``, each over its mean across the
    row's hours ``over``, pooled on the log scale: ratio_rate ** (1 - weight) * ratio_shape ** weight.

    Why both: they are two estimates of how a person's reach varies over the day, wrong in
    different ways. The profiles spend themselves on the level, so their best bucket follows the
    crowd where habits differ. The shapes separate the level, but they are smooth and few, and
    the posterior mean of a person torn between two of them can peak between their peaks, in a
    bucket that is nobody's best, or lean a toss-up the wrong way. Pooled, a bucket wins where
    both rate it well. At weight 1 it is the shape alone (over a constant per row: the same
    choice). Why the default: since the habit counts read the person's own lines, it raises the
    judged capture where habits differ and keeps the closed loop's share of the achievable lift
    within a seed's noise of the profile's (docs/benchmarks.md, "The pooled hour choice as the
    default").
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        rate_ratio = rate / _row_mean(rate, over)[:, None]
        shape_ratio = shape / _row_mean(shape, over)[:, None]
        return rate_ratio ** (1.0 - weight) * shape_ratio**weight


def _row_mean(values: np.ndarray, over: np.ndarray) -> np.ndarray:
    """Each row's mean of ``values`` across its columns ``over`` (0 with none)."""
    return np.where(over, values, 0.0).sum(axis=1) / np.maximum(over.sum(axis=1), 1)


def _ratio_to_mean(rate: np.ndarray, allowed: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Each row's ``rate`` at column ``cols`` over its mean across the row's allowed hours (1 where
    that mean is 0)."""
    mean = _row_mean(rate, allowed)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.nan_to_num(rate[np.arange(len(rate)), cols] / mean, nan=1.0, posinf=1.0)


def from_neighbours(inputs: HourInputs) -> tuple[np.ndarray, np.ndarray]:
    """(candidates x buckets) the profile's rates, with each daytime bucket nobody was tried in
    (no population rate) scaled by the person's ratio of profile to population rate in the
    nearest daytime bucket that was tried (the geometric mean of the two where two are as near);
    and where a rate was so scaled.

    Why: a bucket nobody was tried in gets the population's all-bucket rate in every profile,
    so every person who answers less than the average elsewhere prefers it, whatever their
    habit, and several such buckets tie. Habits are smooth over the day: a person who answers
    better than everyone in the afternoon is likelier than one who answers worse there to answer
    in the evening too. On the judged world whose incumbent called in office hours only, the
    evening picks of persons who answered worse than everyone in the afternoon were the ones
    lost; on the one whose incumbent called in the evenings only, every daytime bucket tied.
    ``night`` (every other hour) is left as it is: it is next to everything and to nothing.
    """
    out = inputs.profile.copy()
    scaled = np.zeros(out.shape, dtype=bool)
    population = inputs.population_by_bucket
    if np.isfinite(population[:, _DAYTIME]).all():  # the usual history: every bucket was tried
        return out, scaled
    with np.errstate(invalid="ignore", divide="ignore"):
        logs = np.log(inputs.profile[:, _DAYTIME] / population[:, _DAYTIME])
    known = np.isfinite(logs)  # tried buckets with a usable ratio
    for pos, b in enumerate(_DAYTIME):
        unseen = ~np.isfinite(population[:, b])
        if not unseen.any():
            continue
        distance = np.where(known, np.abs(np.arange(len(_DAYTIME)) - pos), np.inf)
        nearest = known & (distance == distance.min(axis=1, keepdims=True))
        mean_log = np.where(nearest, logs, 0.0).sum(axis=1) / np.maximum(nearest.sum(axis=1), 1)
        scaled[:, b] = unseen & nearest.any(axis=1)
        out[:, b] = np.where(scaled[:, b], inputs.profile[:, b] * np.exp(mean_log), inputs.profile[:, b])
    return out, scaled


def fill_hours(raw: np.ndarray, raws: np.ndarray, blocks: list[HourBlock]) -> None:
    """Fill ``raws`` (candidates x hours) with ``raw`` (the outputs in block order) smoothed over the
    hours (``smooth_hours``)."""
    for j, _, rows, offset in blocks:
        raws[rows, j] = raw[offset : offset + len(rows)]
    raws[:] = smooth_hours(raws)


def choose_hours(raws: np.ndarray, profile: HourProfile | None) -> np.ndarray:
    """Each candidate's best hour column of the filled ``raws``.

    By raw output, not calibrated probability: calibration is monotone, so the argmax is the same,
    but isotonic steps would turn many hours into ties. With a profile, the middle of the allowed
    bucket it rates highest (``_middle_of_best_bucket``).
    """
    choice = raws
    if profile is not None:
        choice = _middle_of_best_bucket(raws, profile)
        if profile.curve is not None:  # the curve's best allowed hour, where the person has one
            has_curve = np.isfinite(profile.curve).all(axis=1)
            by_curve = np.where(np.isfinite(raws), profile.curve, -np.inf)
            choice = np.where(has_curve[:, None], by_curve, choice)
    return choice.argmax(axis=1)  # first maximum: the earliest hour wins a tie


def _middle_of_best_bucket(raws: np.ndarray, profile: HourProfile) -> np.ndarray:
    """A preference over the columns: the allowed hours of the bucket the profile rates highest,
    the one nearest the middle of them first; -inf elsewhere. Where the better of the neighbouring
    allowed buckets is rated at least ``profile.lean_share`` of it, the hour next to the middle on
    that neighbour's side instead. With ``profile.repeat`` the ratings over it pick the bucket,
    and the ratings as they were decide the lean.
    A profile that rates every allowed hour alike says nothing (no hour in the data): the model's
    output decides there."""
    allowed = np.isfinite(raws)
    n_cols = raws.shape[1]
    preference = np.where(allowed, profile.preference(allowed), -np.inf)
    rate = _away_from_failing(preference, allowed, profile)
    top = _best_bucket(rate, allowed)
    if profile.repeat is not None:  # not where the profile says nothing: the model decides there
        says = ~(top == allowed).all(axis=1)
        corrected = np.where(says[:, None], preference / profile.repeat, preference)
        top = _best_bucket(_away_from_failing(corrected, allowed, profile), allowed)
    # the lean reads the ratings as they were: the repeat ratio moves the choice of bucket only
    best = np.where(top, rate, -np.inf).max(axis=1)
    cols = np.arange(n_cols)[None, :]
    first, last = np.where(top, cols, n_cols).min(axis=1), np.where(top, cols, -1).max(axis=1)
    rows = np.arange(len(raws))
    before = np.where(first > 0, rate[rows, np.maximum(first - 1, 0)], -np.inf)
    after = np.where(last < n_cols - 1, rate[rows, np.minimum(last + 1, n_cols - 1)], -np.inf)
    with np.errstate(invalid="ignore"):  # an infinite share times a zero rate: NaN, which never leans
        leans = np.maximum(before, after) >= profile.lean_share * best
    side = np.where(before > after, -1.0, 1.0) * leans
    # 0.75 past the middle: the nearer middle hour of an even bucket, the next hour of an odd one
    target = (first + last) / 2.0 + 0.75 * side
    flat = (top == allowed).all(axis=1, keepdims=True)
    return np.where(flat, raws, np.where(top, -np.abs(cols - target[:, None]), -np.inf))


def _away_from_failing(rate: np.ndarray, allowed: np.ndarray, profile: HourProfile) -> np.ndarray:
    """``rate`` with only the allowed buckets the person was never tried in left, for a person
    whose best bucket failed ``profile.failed`` (tried often, never reached there) while such a
    bucket exists; unchanged for everyone else.

    Why: the profiles differ in level more than in shape, so failures in the chosen bucket lower
    the person's rates everywhere and the same bucket stays the best; a dialer that follows the
    file then learns nothing about the other hours. An untried bucket carries its uncertainty:
    the person's habit may sit there."""
    if profile.failed is None:
        return rate
    untried = allowed & ~profile.tried
    move = (_best_bucket(rate, allowed) & profile.failed).any(axis=1) & untried.any(axis=1)
    return np.where(move[:, None] & ~untried, -np.inf, rate)


def _best_bucket(rate: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """(candidates x hours) the allowed hours whose ``rate`` is the row's highest: its best bucket."""
    return allowed & (rate >= rate.max(axis=1, keepdims=True) - 1e-9)


def raw_at(raws: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Each candidate's output at its hour column ``cols`` (0 at a column that is not allowed)."""
    at = raws[np.arange(len(raws)), cols]
    return np.where(np.isfinite(at), at, 0.0)


def raw_level(raws: np.ndarray) -> np.ndarray:
    """Each candidate's output averaged over its allowed hours (0 with none): the score's level."""
    allowed = np.isfinite(raws)
    return _row_mean(raws, allowed)


def hour_scores(
    predictor: Predictor, raws: np.ndarray, cols: np.ndarray, profile: HourProfile | None
) -> np.ndarray:
    """The probability of each candidate at its hour column ``cols`` (see the module docstring),
    through the model's file calibration (``ml.file_calibration``) when it has one."""
    if profile is None:
        return predictor.published(predictor.calibrate(raw_at(raws, cols)))
    return predictor.published(predictor.calibrate(raw_level(raws)) * profile.lift(raws, cols))
