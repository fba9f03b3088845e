"""The best hour and its score: the habit profile picks the bucket, the model the hour within it."""

from __future__ import annotations

import dataclasses
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from contactrank.features.context import HourInputs, bucket_index
from contactrank.features.daily_aggregates import BUCKETS
from contactrank.ml.hours import HourProfile, choose_hours, fill_hours, from_neighbours, hour_scores
from contactrank.settings import Settings

HOURS = np.arange(8, 22)
NAMES = list(BUCKETS)


def best_hours(raw, raws, blocks, profile):
    """Fill ``raws`` with the outputs as scoring does, then each candidate's best hour column."""
    fill_hours(raw, raws, blocks)
    return choose_hours(raws, profile)


class _Identity:
    """A predictor without a calibrator: the raw output is the probability."""

    def calibrate(self, raw):
        return np.clip(np.asarray(raw, dtype=np.float64), 0.0, 1.0)

    def published(self, p):
        return p


def inputs(
    profile: list[dict[str, float]],
    tried: list[dict[str, int]],
    shape: list[dict] | None = None,
    reached: list[dict[str, int]] | None = None,
) -> HourInputs:
    """Hour inputs of one candidate per entry: bucket rates of the profile, the person's attempts,
    when given the habit shape (1 where not given, None: a bucket the shape does not know) and
    the person's reaches (none where not given)."""
    n, b = len(profile), len(NAMES)
    zeros = np.zeros((n, b))
    rate = np.array([[p.get(k, 0.1) for k in NAMES] for p in profile])
    attempts = np.array([[t.get(k, 0) for k in NAMES] for t in tried], dtype=float)
    reaches = zeros if reached is None else np.array([[r.get(k, 0) for k in NAMES] for r in reached], float)
    shapes = None
    if shape is not None:
        shapes = np.array(
            [[np.nan if s.get(k, 1.0) is None else s.get(k, 1.0) for k in NAMES] for s in shape]
        )
    return HourInputs(zeros + 0.2, np.full(n, 0.2), attempts, reaches, zeros, zeros, rate, shapes)


def blocks_of(n: int) -> list:
    """Every hour allowed for every candidate: the stack is hour by hour, candidates in order."""
    rows = np.arange(n)
    return [(j, int(h), rows, j * n) for j, h in enumerate(HOURS)]


def stack(curves: np.ndarray) -> np.ndarray:
    """(candidates x hours) outputs in the stacked order of ``blocks_of``."""
    return curves.T.reshape(-1)


def test_the_profile_picks_the_bucket_and_the_hour_is_its_middle():
    # the model peaks at 19h for both and leans to 10h in the mornings; the first person's
    # profile says mornings: the middle of 8-11 (the earlier of 9 and 10), not the model's 10h
    curve = 0.2 + 0.1 * np.exp(-((HOURS - 19.0) ** 2) / 4) + 0.01 * np.exp(-((HOURS - 10.0) ** 2))
    curves = np.vstack([curve, curve])
    hi = inputs([{"morning": 0.4}, {}], [{"morning": 3}, {}])
    profile = HourProfile(hi, HOURS)
    raws = np.full(curves.shape, -np.inf)
    best = best_hours(stack(curves), raws, blocks_of(2), profile)
    hours = HOURS[best]
    assert hours[0] == 9
    # a flat profile says nothing: the model's (smoothed) peak
    assert hours[1] == HOURS[np.argmax(raws[1])] == 19


def test_the_middle_is_taken_over_the_buckets_allowed_hours():
    hi = inputs([{"evening": 0.5}], [{"evening": 2}])
    profile = HourProfile(hi, HOURS)
    raws = np.full((1, HOURS.size), -np.inf)
    allowed = HOURS <= 20  # e.g. sms until 20h: the evening is 18-20, its middle 19h
    rows = np.arange(1)
    blocks = [(j, int(h), rows, k) for k, j in enumerate(np.flatnonzero(allowed)) for h in [HOURS[j]]]
    best = best_hours(np.full(allowed.sum(), 0.2), raws, blocks, profile)
    assert HOURS[best[0]] == 19


def test_a_neighbour_rated_nearly_as_high_moves_the_hour_toward_it():
    # mornings best for all three; the first also nearly as good at midday: a morning person
    # with a late peak or a midday one with an early peak, whom 10h serves better than 9h; the
    # second leans nowhere; the third's best is midday with the afternoon close: 14h, not 13h
    hi = inputs(
        [{"morning": 0.40, "midday": 0.38}, {"morning": 0.40, "midday": 0.30},
         {"morning": 0.20, "midday": 0.40, "afternoon": 0.39}],
        [{"morning": 3, "midday": 2}, {"morning": 3, "midday": 2}, {"midday": 2, "afternoon": 2}],
    )  # fmt: skip
    profile = HourProfile(hi, HOURS, lean_share=0.9)
    raws = np.full((3, HOURS.size), -np.inf)
    best = best_hours(stack(np.full((3, HOURS.size), 0.2)), raws, blocks_of(3), profile)
    assert list(HOURS[best]) == [10, 9, 14]


def test_the_lean_reads_only_allowed_neighbours():
    # the evening is best and the night would not count: sms until 20h leaves 18-20, and the
    # afternoon, rated close, moves the hour to 18h
    hi = inputs([{"evening": 0.5, "afternoon": 0.48}], [{"evening": 2, "afternoon": 2}])
    profile = HourProfile(hi, HOURS, lean_share=0.9)
    raws = np.full((1, HOURS.size), -np.inf)
    allowed = HOURS <= 20
    rows = np.arange(1)
    blocks = [(j, int(h), rows, k) for k, j in enumerate(np.flatnonzero(allowed)) for h in [HOURS[j]]]
    best = best_hours(np.full(allowed.sum(), 0.2), raws, blocks, profile)
    assert HOURS[best[0]] == 18


def test_without_a_profile_the_model_alone_picks_and_scores():
    curve = 0.1 + 0.01 * (HOURS == 15)
    raws = np.full((1, HOURS.size), -np.inf)
    best = best_hours(stack(curve[None, :]), raws, blocks_of(1), None)
    assert HOURS[best[0]] in (14, 15, 16)  # smoothing spreads the peak; the earliest maximum wins
    assert hour_scores(_Identity(), raws, best, None)[0] == pytest.approx(raws[0, best[0]])


def test_the_score_is_the_average_hour_times_the_profiles_lift():
    curve = np.linspace(0.1, 0.3, HOURS.size)
    hi = inputs([{"morning": 0.4, "evening": 0.05}], [{"morning": 2, "evening": 4}])
    profile = HourProfile(hi, HOURS)
    raws = np.full((1, HOURS.size), -np.inf)
    best = best_hours(stack(curve[None, :]), raws, blocks_of(1), profile)
    rate = profile.rate[0]
    expected = raws[0].mean() * rate[best[0]] / rate.mean()
    assert hour_scores(_Identity(), raws, best, profile)[0] == pytest.approx(expected)


def test_an_untried_bucket_is_never_scored_above_the_persons_average():
    curve = np.full(HOURS.size, 0.2)
    # the profile rates the evening highest, but the person was never tried there
    hi = inputs([{"evening": 0.5, "morning": 0.1}], [{"morning": 5}])
    profile = HourProfile(hi, HOURS)
    raws = np.full((1, HOURS.size), -np.inf)
    best = best_hours(stack(curve[None, :]), raws, blocks_of(1), profile)
    assert bucket_index(HOURS[best].astype(float))[0] == NAMES.index("evening")
    assert hour_scores(_Identity(), raws, best, profile)[0] == pytest.approx(0.2)
    # tried there, the lift counts
    tried = HourProfile(inputs([{"evening": 0.5, "morning": 0.1}], [{"evening": 1}]), HOURS)
    assert hour_scores(_Identity(), raws, best, tried)[0] > 0.2


def test_hours_not_allowed_are_never_chosen_even_when_the_profile_prefers_them():
    curve = np.full(HOURS.size, 0.2)
    hi = inputs([{"evening": 0.6}], [{"evening": 3}])
    profile = HourProfile(hi, HOURS)
    raws = np.full((1, HOURS.size), -np.inf)
    allowed = HOURS <= 16  # e.g. a channel's hours end before the evening
    rows = np.arange(1)
    blocks = [
        (j, int(h), rows, k) for k, (j, h) in enumerate((j, h) for j, h in enumerate(HOURS) if allowed[j])
    ]
    best = best_hours(curve[allowed], raws, blocks, profile)
    assert HOURS[best[0]] <= 16
    assert np.isfinite(hour_scores(_Identity(), raws, best, profile)[0])


def test_the_shape_picks_the_bucket_and_the_larger_lift_scores_it():
    # the profile rates the morning highest (a level read in the buckets the person was tried
    # in most), the shape says evening: the evening's middle, scored by the larger of the two
    # lifts there (the shape's: 1.4 over its mean across the allowed hours)
    curve = np.linspace(0.1, 0.3, HOURS.size)
    hi = inputs(
        [{"morning": 0.3, "evening": 0.2}], [{"morning": 3, "evening": 1}], [{"morning": 0.8, "evening": 1.4}]
    )
    raws = np.full((1, HOURS.size), -np.inf)
    by_shape = HourProfile(hi, HOURS, by_shape=True)
    best = best_hours(stack(curve[None, :]), raws, blocks_of(1), by_shape)
    assert HOURS[best[0]] == 19
    rate, shape = by_shape.rate[0], by_shape.shape[0]
    assert shape[best[0]] / shape.mean() > rate[best[0]] / rate.mean()
    assert hour_scores(_Identity(), raws, best, by_shape)[0] == pytest.approx(
        raws[0].mean() * shape[best[0]] / shape.mean()
    )
    # never tried there: the profile's lift is capped at 1, the shape's (the person's own habit,
    # read from their answers elsewhere and their group's) is not
    untried = inputs([{"morning": 0.3}], [{"morning": 3}], [{"morning": 0.8, "evening": 1.4}])
    assert hour_scores(_Identity(), raws, best, HourProfile(untried, HOURS))[0] < raws[0].mean()
    by_habit = hour_scores(_Identity(), raws, best, HourProfile(untried, HOURS, by_shape=True))[0]
    assert by_habit == pytest.approx(raws[0].mean() * shape[best[0]] / shape.mean())
    # the profile alone picks the morning
    raws = np.full((1, HOURS.size), -np.inf)
    assert HOURS[best_hours(stack(curve[None, :]), raws, blocks_of(1), HourProfile(hi, HOURS))[0]] == 9


def test_where_the_profile_prefers_a_bucket_nobody_was_tried_in_the_profile_picks():
    # nobody was tried in the evening (the shape has nothing there). The first person's profile
    # prefers it: the evening. The second's prefers the morning: the shape picks among the
    # buckets it knows (midday), never the evening, however its profile rates it.
    curve = np.full(HOURS.size, 0.2)
    hi = inputs(
        [{"evening": 0.5, "morning": 0.2}, {"morning": 0.3, "evening": 0.25}],
        [{"morning": 4}, {"morning": 4}],
        [{"evening": None, "midday": 1.3}, {"evening": None, "midday": 1.3}],
    )
    raws = np.full((2, HOURS.size), -np.inf)
    best = best_hours(
        stack(np.vstack([curve, curve])), raws, blocks_of(2), HourProfile(hi, HOURS, by_shape=True)
    )
    assert [NAMES[b] for b in bucket_index(HOURS[best].astype(float))] == ["evening", "midday"]
    # rows without a shape (features built before it) are the profile's
    raws = np.full((2, HOURS.size), -np.inf)
    bare = inputs([{"evening": 0.5}, {"morning": 0.3}], [{}, {}])
    best = best_hours(
        stack(np.vstack([curve, curve])), raws, blocks_of(2), HourProfile(bare, HOURS, by_shape=True)
    )
    assert list(HOURS[best]) == [19, 9]


def test_the_shape_pooled_with_the_profile_picks_a_bucket_both_rate_well():
    # the profile (tried everywhere) rates the morning highest, the shape (a posterior torn
    # between a midday and an evening type) the afternoon between them; pooled at equal weights
    # the evening, which both rate well. Each alone picks its own.
    curve = np.full(HOURS.size, 0.2)
    person = inputs(
        [{"morning": 0.30, "midday": 0.20, "afternoon": 0.18, "evening": 0.28}],
        [{"morning": 2, "midday": 2, "afternoon": 2, "evening": 2}],
        [{"morning": 0.8, "midday": 1.0, "afternoon": 1.3, "evening": 1.2}],
    )

    def hour(weight: float) -> int:
        raws = np.full((1, HOURS.size), -np.inf)
        profile = HourProfile(person, HOURS, by_shape=True, shape_weight=weight)
        return int(HOURS[best_hours(stack(curve[None, :]), raws, blocks_of(1), profile)[0]])

    assert hour(0.5) == 19
    assert hour(1.0) == 16  # the shape alone: the afternoon's middle
    assert hour(0.0) == 9  # the profile's ratios alone: the morning's
    # the pooled pick is scored by the profile's lift, the shape's alone by the larger of the two
    raws = np.full((1, HOURS.size), -np.inf)
    both = HourProfile(person, HOURS, by_shape=True, shape_weight=0.5)
    best = best_hours(stack(curve[None, :]), raws, blocks_of(1), both)
    rate, shape = both.rate[0], both.shape[0]
    assert hour_scores(_Identity(), raws, best, both)[0] == pytest.approx(0.2 * rate[best[0]] / rate.mean())
    alone = HourProfile(person, HOURS, by_shape=True, shape_weight=1.0)
    # at 19h the profile's ratio is the larger; at the afternoon pick, the shape's
    for col in (best[0], int(np.flatnonzero(HOURS == 16)[0])):
        cols = np.array([col])
        larger = max(shape[col] / shape.mean(), rate[col] / rate.mean())
        assert hour_scores(_Identity(), raws, cols, alone)[0] == pytest.approx(0.2 * larger)
        assert hour_scores(_Identity(), raws, cols, both)[0] == pytest.approx(0.2 * rate[col] / rate.mean())
    # the settings carry the weight, and it must lie in 0..1
    assert HourProfile.of(Settings(hour_choice="shape"), person, HOURS).shape_weight == 0.5
    with pytest.raises(ValueError, match="hour_shape_weight"):
        Settings(hour_shape_weight=1.5)


def test_the_setting_chooses():
    hi = inputs([{}], [{}])
    shaped = inputs([{}], [{}], [{}])
    assert HourProfile.of(Settings(), shaped, HOURS).shape is not None  # the default: pooled
    assert HourProfile.of(Settings(hour_choice="profile"), shaped, HOURS).shape is None
    assert HourProfile.of(Settings(hour_choice="shape"), hi, HOURS).shape is None  # rows without a shape
    assert HourProfile.of(Settings(hour_choice="shape"), shaped, HOURS).shape is not None
    assert HourProfile.of(Settings(hour_choice="model"), hi, HOURS) is None
    assert HourProfile.of(SimpleNamespace(hour_choice="profile"), None, HOURS) is None  # no inputs


def test_the_lean_share_comes_from_the_settings_and_must_be_positive():
    hi = inputs([{"morning": 0.4, "midday": 0.38}], [{"morning": 3, "midday": 2}], reached=[{"morning": 1}])
    assert HourProfile.of(Settings(), hi, HOURS).lean_share == Settings().hour_lean_share
    off = HourProfile.of(Settings(hour_lean_share=1.5), hi, HOURS)
    raws = np.full((1, HOURS.size), -np.inf)
    assert HOURS[best_hours(stack(np.full((1, HOURS.size), 0.2)), raws, blocks_of(1), off)[0]] == 9
    with pytest.raises(ValueError, match="hour_lean_share"):
        Settings(hour_lean_share=0)


def test_a_bucket_that_keeps_failing_gives_way_to_one_never_tried():
    # both persons' profiles still rate the morning best; the first was tried there three times
    # and never reached, never in the evening: the evening (the best-rated untried bucket); the
    # second answered once in the morning and stays; the third failed in the morning but was
    # tried in every allowed bucket, so nothing is untried and the morning stays
    tried = [{"morning": 3, "midday": 1, "afternoon": 1}, {"morning": 3, "midday": 1, "afternoon": 1},
             {"morning": 3, "midday": 1, "afternoon": 1, "evening": 1}]  # fmt: skip
    rates = {"morning": 0.30, "midday": 0.10, "afternoon": 0.10, "evening": 0.20}
    hi = inputs([rates] * 3, tried, reached=[{}, {"morning": 1}, {}])
    profile = HourProfile(hi, HOURS, untried_after=3)
    raws = np.full((3, HOURS.size), -np.inf)
    best = best_hours(stack(np.full((3, HOURS.size), 0.2)), raws, blocks_of(3), profile)
    assert list(HOURS[best]) == [19, 9, 9]
    assert hour_scores(_Identity(), raws, best, profile)[0] == pytest.approx(0.2)  # untried: lift at most 1
    never = HourProfile(hi, HOURS)  # untried_after 0: the profile's bucket whatever the failures
    raws = np.full((3, HOURS.size), -np.inf)
    assert list(HOURS[best_hours(stack(np.full((3, HOURS.size), 0.2)), raws, blocks_of(3), never)]) == [9] * 3
    assert HourProfile.of(Settings(), hi, HOURS).failed is None  # the default: an option, off
    assert HourProfile.of(Settings(hour_untried_after=3), hi, HOURS).failed is not None
    with pytest.raises(ValueError, match="hour_untried_after"):
        Settings(hour_untried_after=-1)


def test_an_infinite_lean_share_never_leans_and_warns_of_nothing():
    # the second person's rates are 0 everywhere (flat: the model decides): inf x 0 is NaN there,
    # and must neither raise numpy's invalid-value warning nor lean
    zero = dict.fromkeys(NAMES, 0.0)
    hi = inputs([{**zero, "midday": 0.3, "afternoon": 0.29}, zero], [{"midday": 2}, {}])
    profile = HourProfile(hi, HOURS, lean_share=np.inf)
    raws = np.full((2, HOURS.size), -np.inf)
    curve = 0.2 + 0.01 * (HOURS == 15)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        best = best_hours(stack(np.vstack([curve, curve])), raws, blocks_of(2), profile)
    assert HOURS[best[0]] == 13  # no lean toward the afternoon
    assert HOURS[best[1]] in (14, 15, 16)  # the model's (smoothed) peak


def _nobody_in_the_evening(hi: HourInputs) -> HourInputs:
    """``hi`` with no population rate in the evening and at night (nobody was tried there) and
    0.1 in the afternoon."""
    population = hi.population_by_bucket.copy()
    population[:, NAMES.index("afternoon")] = 0.1
    population[:, [NAMES.index("evening"), NAMES.index("night")]] = np.nan
    return dataclasses.replace(hi, population_by_bucket=population)


def test_a_bucket_nobody_was_tried_in_is_read_from_the_neighbouring_bucket():
    # nobody was tried in the evening, so both profiles carry the population's rate (0.2) there,
    # above both persons' mornings (0.15), their best elsewhere. The first answers better than
    # everyone in the afternoon (0.14 against 0.1): the evening, read as 0.2 x 1.4. The second
    # answers worse there (0.05): the evening reads 0.1, and the morning is theirs.
    curve = np.full(HOURS.size, 0.2)
    rates = [{"morning": 0.15, "midday": 0.12, "afternoon": a, "evening": 0.2} for a in (0.14, 0.05)]
    tried = [{"morning": 3, "midday": 2, "afternoon": 2}] * 2
    hi = _nobody_in_the_evening(inputs(rates, tried))

    def picks(profile):
        raws = np.full((2, HOURS.size), -np.inf)
        return raws, best_hours(stack(np.vstack([curve, curve])), raws, blocks_of(2), profile)

    _, before = picks(HourProfile(hi, HOURS))
    assert list(HOURS[before]) == [19, 19]
    profile = HourProfile(hi, HOURS, unseen_from_neighbours=True)
    raws, best = picks(profile)
    assert list(HOURS[best]) == [19, 9]
    # the evening's lift is the extrapolated rates' ratio, above 1 (not capped as a bucket the
    # person was never tried in): 0.28 over their mean over the allowed hours
    mean = (4 * 0.15 + 3 * 0.12 + 3 * 0.14 + 4 * 0.28) / HOURS.size
    scores = hour_scores(_Identity(), raws, best, profile)
    assert 0.28 / mean > 1.0
    assert scores[0] == pytest.approx(0.2 * 0.28 / mean)
    # a pick in a bucket someone was tried in keeps the lift it had
    assert scores[1] == pytest.approx(hour_scores(_Identity(), raws, best, HourProfile(hi, HOURS))[1])
    # the setting turns it on, and a world where every bucket was tried is left as it was
    assert HourProfile.of(Settings(), hi, HOURS).extrapolated is not None
    assert HourProfile.of(Settings(hour_unseen_from_neighbours=False), hi, HOURS).extrapolated is None
    assert HourProfile.of(Settings(), inputs(rates, tried), HOURS).extrapolated is None


def test_a_bucket_between_two_tried_ones_takes_the_geometric_mean_of_their_ratios():
    # nobody was tried at midday or at night. The person is twice everyone's rate in the morning
    # and half of it in the afternoon: the midday stays at the population's guess (x 1). Night
    # is never read from neighbours.
    hi = inputs([{"morning": 0.4, "midday": 0.15, "afternoon": 0.1, "evening": 0.3, "night": 0.15}], [{}])
    population = hi.population_by_bucket.copy()
    population[:, [NAMES.index("midday"), NAMES.index("night")]] = np.nan
    rates, scaled = from_neighbours(dataclasses.replace(hi, population_by_bucket=population))
    assert rates[0, NAMES.index("midday")] == pytest.approx(0.15)
    assert list(NAMES[i] for i in np.flatnonzero(scaled[0])) == ["midday"]
    # a neighbour nobody was tried in either says nothing: with the afternoon unseen too, the
    # midday reads the morning alone and the afternoon the evening alone (0.3 against 0.2)
    population[:, NAMES.index("afternoon")] = np.nan
    rates, scaled = from_neighbours(dataclasses.replace(hi, population_by_bucket=population))
    assert rates[0, NAMES.index("midday")] == pytest.approx(0.15 * 2.0)
    assert rates[0, NAMES.index("afternoon")] == pytest.approx(0.1 * 1.5)


def test_buckets_far_from_any_tried_one_read_the_nearest_tried_bucket():
    # an incumbent that dialled evenings only: the person answers at half everyone's evening
    # rate, so every daytime bucket reads half the population's guess, the farthest too
    hi = inputs([{"morning": 0.2, "midday": 0.2, "afternoon": 0.2, "evening": 0.1}], [{"evening": 4}])
    population = hi.population_by_bucket.copy()
    population[:, [NAMES.index(b) for b in ("morning", "midday", "afternoon", "night")]] = np.nan
    rates, scaled = from_neighbours(dataclasses.replace(hi, population_by_bucket=population))
    assert rates[0, :3] == pytest.approx([0.1, 0.1, 0.1])
    assert list(NAMES[i] for i in np.flatnonzero(scaled[0])) == ["morning", "midday", "afternoon"]


def test_the_repeat_ratio_moves_the_bucket_a_retry_made_look_worse():
    # the profile rates the morning a little above the evening; the evening's reach rate was
    # lowered by retries (its rate over all tries is 0.8 of first tries'), the morning's hardly
    repeat = np.array([[0.98, 0.95, 0.92, 0.8, 1.0]])
    person = dataclasses.replace(
        inputs(
            [{"morning": 0.30, "midday": 0.2, "afternoon": 0.2, "evening": 0.285}],
            [{"morning": 3, "midday": 2, "afternoon": 2, "evening": 3}],
        ),
        repeat=repeat,
    )

    def hour(strength: float, who=person) -> int:
        raws = np.full((1, HOURS.size), -np.inf)
        curve = 0.2 + 0.01 * np.exp(-((HOURS[None, :] - 15.0) ** 2) / 4)  # the model's own pick: 15h
        profile = HourProfile(who, HOURS, lean_share=np.inf, repeat_strength=strength)
        return int(HOURS[best_hours(stack(curve), raws, blocks_of(1), profile)[0]])

    assert hour(0.0) == 9  # no correction: the morning
    assert hour(0.5) == 19  # 0.285 / 0.8 ** 0.5 > 0.30 / 0.98 ** 0.5
    # a bucket without a ratio (nobody tried there) takes the geometric mean of the others'
    unknown = dataclasses.replace(person, repeat=np.array([[0.98, 0.95, 0.92, np.nan, 0.0]]))
    evening = int(np.flatnonzero(HOURS == 19)[0])
    filled = HourProfile(unknown, HOURS, repeat_strength=1.0).repeat[0]
    assert filled[evening] == pytest.approx((0.98 * 0.95 * 0.92) ** (1 / 3))
    assert hour(0.5, unknown) == 9
    # a profile that says nothing leaves the hour to the model, whatever the ratios
    flat = dataclasses.replace(inputs([{}], [{}]), repeat=repeat)
    assert hour(0.5, flat) == 15
    # the lean reads the ratings as they were: the midday at 0.89 of the morning does not move the
    # hour off the morning's middle, though over the ratios it would be rated above 0.9 of it
    near = dataclasses.replace(person, profile=np.array([[0.30, 0.267, 0.2, 0.2, 0.1]]))
    raws = np.full((1, HOURS.size), -np.inf)
    leaning = HourProfile(near, HOURS, lean_share=0.9, repeat_strength=0.5)
    assert 0.267 / 0.95**0.5 >= 0.9 * 0.30 / 0.98**0.5
    assert HOURS[best_hours(stack(np.full((1, HOURS.size), 0.2)), raws, blocks_of(1), leaning)[0]] == 9
    # the score keeps the profile's lift
    raws = np.full((1, HOURS.size), -np.inf)
    fill_hours(stack(np.full((1, HOURS.size), 0.2)), raws, blocks_of(1))
    corrected = HourProfile(person, HOURS, repeat_strength=0.5)
    cols = np.array([int(np.flatnonzero(HOURS == 19)[0])])
    rate = corrected.rate[0]
    assert hour_scores(_Identity(), raws, cols, corrected)[0] == pytest.approx(
        0.2 * rate[cols[0]] / rate.mean()
    )
    # the settings carry the strength, and it must lie in 0..1
    assert HourProfile.of(Settings(), person, HOURS).repeat[0, 0] == pytest.approx(0.98**0.5)
    assert HourProfile.of(Settings(hour_repeat_strength=0), person, HOURS).repeat is None
    with pytest.raises(ValueError, match="hour_repeat_strength"):
        Settings(hour_repeat_strength=1.5)


def test_the_curve_picks_the_persons_best_allowed_hour_in_their_own_clock():
    """``hour_choice`` "curve": the hour where the person's curve is highest among the allowed ones,
    read in the person's own clock; a person without a curve keeps the bucket choice."""
    flat = 0.2 + 0.1 * np.exp(-((HOURS - 19.0) ** 2) / 4)  # the model peaks at 19h for everyone
    own = 0.1 + 0.2 * np.exp(-((np.arange(24) - 14.0) ** 2) / 8)  # the person's curve peaks at 14h
    hi = dataclasses.replace(
        inputs([{"evening": 0.5}] * 3, [{"evening": 2}] * 3),
        curve=np.vstack([own, own, np.full(24, np.nan)]),
    )
    settings = Settings(hour_choice="curve")
    shift = np.array([0, 2, 0])  # the second person's clock is 2 h ahead of the recorded one
    profile = HourProfile.of(settings, hi, HOURS, shift)
    raws = np.full((3, HOURS.size), -np.inf)
    hours = HOURS[best_hours(stack(np.vstack([flat] * 3)), raws, blocks_of(3), profile)]
    assert list(hours) == [14, 12, 19]  # 12h recorded is 14h for the second; the third: the evening
    assert HourProfile.of(Settings(hour_choice="shape"), hi, HOURS).curve is None  # the others ignore it
    # only the allowed hours compete: with 14h not allowed, the next best
    raws = np.full((1, HOURS.size), -np.inf)
    allowed = HOURS != 14
    rows = np.arange(1)
    columns = np.flatnonzero(allowed)
    blocks = [(int(j), int(HOURS[j]), rows, k) for k, j in enumerate(columns)]
    one = HourProfile.of(settings, hi.take(np.array([0])), HOURS)
    best = best_hours(np.asarray(flat[allowed]), raws, blocks, one)
    assert HOURS[best[0]] in (13, 15)
