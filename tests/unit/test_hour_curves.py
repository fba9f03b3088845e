"""Personal hour curves (features.hour_curves): each person's reach over the day from their tries."""

import numpy as np
import scipy.sparse as sparse

from contactrank.features import hour_curves as hc


def simulated_tries(peaks: np.ndarray, tries_each: int, seed: int = 0, retry_effect: float = 0.0):
    """Persons with a habit peaking at ``peaks`` (log-odds bump of 2, width 2 h), tried at uniformly
    random hours 8-21 on voice, every second try a retry (``retry_effect`` on the log-odds)."""
    rng = np.random.default_rng(seed)
    n = len(peaks)
    person = np.repeat(np.arange(n), tries_each)
    hour = rng.integers(8, 22, person.size)
    retry = np.arange(person.size) % 2
    level = rng.normal(-1.2, 0.4, n)[person]
    logit = level + 2.0 * np.exp(-((hour - peaks[person]) ** 2) / 8.0) - 1.0 + retry_effect * retry
    reached = rng.random(person.size) < 1 / (1 + np.exp(-logit))
    bins = hc.try_bins(np.zeros(person.size, np.int64), hour, retry)
    tries = sparse.csr_matrix((np.ones(person.size), (person, bins)), shape=(n, hc.BINS))
    reaches = sparse.csr_matrix((reached.astype(float), (person, bins)), shape=(n, hc.BINS))
    return tries, reaches


def test_each_person_s_curve_peaks_near_their_own_habit_not_the_crowd_s():
    peaks = np.r_[np.full(300, 10.0), np.full(300, 19.0)]
    tries, reaches = simulated_tries(peaks, 25)
    fit = hc.fit_curve_prior(tries, reaches, np.zeros((600, 0), np.int64), [])
    best = hc.expected_curves(fit, tries, reaches, np.zeros((600, 0), np.int64))[:, 8:22].argmax(axis=1) + 8
    assert np.mean(np.abs(best[:300] - 10) <= 2) > 0.7
    assert np.mean(np.abs(best[300:] - 19) <= 2) > 0.7


def test_an_attribute_that_says_the_habit_moves_the_prior_of_persons_without_tries():
    peaks = np.r_[np.full(300, 10.0), np.full(300, 19.0)]
    tries, reaches = simulated_tries(peaks, 20, seed=1)
    codes = np.r_[np.zeros(300), np.ones(300)].astype(np.int64)[:, None]
    fit = hc.fit_curve_prior(tries, reaches, codes, [2])
    nobody = sparse.csr_matrix((2, hc.BINS))
    curves = hc.expected_curves(fit, nobody, nobody, np.array([[0], [1]]))
    assert curves[0, 8:22].argmax() + 8 <= 13
    assert curves[1, 8:22].argmax() + 8 >= 17


def test_the_retry_offset_is_the_retry_s_own_not_that_of_the_persons_retried():
    """Tries are retries half the time whoever the person is, so everyone's ratio and the fitted offset
    agree; the fit recovers a planted retry effect."""
    tries, reaches = simulated_tries(np.full(500, 14.0), 20, seed=2, retry_effect=-0.6)
    fit = hc.fit_curve_prior(tries, reaches, np.zeros((500, 0), np.int64), [])
    assert -0.9 < fit.retry_offset < -0.3


def test_without_any_try_every_person_gets_the_same_flat_prior():
    nobody = sparse.csr_matrix((3, hc.BINS))
    fit = hc.fit_curve_prior(nobody, nobody, np.zeros((3, 0), np.int64), [])
    curves = hc.expected_curves(fit, nobody, nobody, np.zeros((3, 0), np.int64))
    assert curves.shape == (3, 24)
    np.testing.assert_allclose(curves, np.tile(curves[0], (3, 1)))


def test_bins_are_distinct_per_channel_hour_and_retry():
    ch, hour, retry = (a.ravel() for a in np.meshgrid(np.arange(-1, 4), np.arange(24), [0, 1], indexing="ij"))
    bins = hc.try_bins(ch, hour, retry)
    assert len(np.unique(bins)) == len(bins) == hc.BINS
    assert bins.min() == 0 and bins.max() == hc.BINS - 1


def test_bumps_average_zero_over_the_day():
    np.testing.assert_allclose(hc.bumps()[:, hc.DAYTIME].mean(axis=1), 0.0, atol=1e-12)


def test_the_fit_and_the_curves_do_not_depend_on_the_blocks_of_persons(monkeypatch):
    """The likelihoods are read in blocks of persons (one buffer, cache-sized blocks for the EM):
    blocks of a few persons give the same prior and curves as one block of everyone."""
    peaks = np.r_[np.full(40, 10.0), np.full(40, 19.0)]
    tries, reaches = simulated_tries(peaks, 12, seed=3)
    codes = np.r_[np.zeros(40), np.ones(40)].astype(np.int64)[:, None]
    monkeypatch.setattr(hc, "_EM_BLOCK", 1000)
    monkeypatch.setattr(hc, "_BLOCK", 1000)
    whole = hc.fit_curve_prior(tries, reaches, codes, [2])
    curves = hc.expected_curves(whole, tries, reaches, codes)
    monkeypatch.setattr(hc, "_EM_BLOCK", 7)
    monkeypatch.setattr(hc, "_BLOCK", 9)
    blocked = hc.fit_curve_prior(tries, reaches, codes, [2])
    np.testing.assert_allclose(blocked.habit_weight, whole.habit_weight, rtol=1e-3, atol=1e-9)
    np.testing.assert_allclose(blocked.level_weight, whole.level_weight, rtol=1e-3, atol=1e-9)
    np.testing.assert_allclose(blocked.habit_by_value[0], whole.habit_by_value[0], rtol=1e-3, atol=1e-9)
    np.testing.assert_allclose(hc.expected_curves(whole, tries, reaches, codes), curves, rtol=1e-5)


def test_each_persons_habit_prior_is_their_attribute_values_naive_bayes():
    """The prior is computed once per combination of values; each person gets the one the values
    they hold give, a person without a value everyone's weights."""
    rng = np.random.default_rng(4)
    habits = len(hc.bumps())
    by_value = [rng.dirichlet(np.ones(habits), 3), rng.dirichlet(np.ones(habits), 2)]
    weight = rng.dirichlet(np.ones(habits))
    fit = hc.CurveFit(0.0, np.zeros(6), 0.0, np.full(len(hc.LEVELS), 1 / len(hc.LEVELS)), weight, by_value)
    codes = np.array([[0, 1], [2, -1], [0, 1], [-1, -1]])
    combinations, combination = hc.habit_priors(fit, codes)
    prior = combinations[combination]
    assert len(combinations) == 3  # one prior per distinct combination of values
    expected = np.log(weight) + np.log(by_value[0][0] / weight) + np.log(by_value[1][1] / weight)
    np.testing.assert_allclose(prior[0], np.exp(expected) / np.exp(expected).sum())
    np.testing.assert_array_equal(prior[0], prior[2])
    np.testing.assert_allclose(prior[3], weight)
    np.testing.assert_allclose(prior.sum(axis=1), 1.0)
