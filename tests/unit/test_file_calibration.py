"""The file calibration: a map fitted on the score a file publishes, at each first try's own hour."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from helpers.synth_training import write_days

from contactrank.ml import evaluate as ev
from contactrank.ml.dataset import labelled_days
from contactrank.ml.evaluate import PlattCalibrator
from contactrank.ml.file_calibration import first_tries, fit_file_calibrator, tried_hour_scores
from contactrank.ml.hours import hour_scores
from contactrank.ml.model import ContactModel
from contactrank.ml.predictor import Predictor
from contactrank.ml.registry import load_version
from contactrank.ml.train import train
from contactrank.ml.training_sample import label_column
from contactrank.settings import Settings

D = date(2026, 11, 20)


def test_first_tries_are_each_persons_attempts_at_their_earliest_hour_of_the_day() -> None:
    day = pd.DataFrame(
        {
            "person_id": ["a", "a", "a", "b", "c", "c"],
            "f_hour": [14.0, 9.0, 9.0, 20.0, 11.0, 18.0],
        }
    )
    assert first_tries(day).tolist() == [False, True, True, True, True, False]


def test_the_published_score_goes_through_the_file_calibrator(settings: Settings) -> None:
    raws = np.array([[0.1, 0.2, 0.3]])
    cols = np.array([2])
    plain = ContactModel(booster=None, features=[], categories={})
    lifted = ContactModel(booster=None, features=[], categories={}, file_calibrator=PlattCalibrator(1.0, 1.0))
    before = hour_scores(Predictor(settings, plain, 0), raws, cols, None)[0]
    after = hour_scores(Predictor(settings, lifted, 0), raws, cols, None)[0]
    assert before == pytest.approx(0.3)
    assert after == pytest.approx(1 / (1 + np.exp(-(np.log(0.3 / 0.7) + 1.0))))


@pytest.fixture
def trained(settings: Settings) -> tuple[Settings, ContactModel, list[date]]:
    """A model trained on synthetic days, and its validation days."""
    s = settings.replace(file_calibration="none")
    write_days(s, D, 10)
    out = train(s, D)
    model = load_version(s, out["version"])
    days = [D - timedelta(days=k) for k in range(1, 1 + s.valid_days)]
    return s, model, days


def test_a_published_score_under_the_outcomes_is_raised_to_them(trained) -> None:
    s, model, days = trained
    assert model.file_calibrator is None  # "none" trains without one
    # the model's own calibrator, shifted down by one on the logit: the file's number under-promises
    lowered = PlattCalibrator(1.0, -1.0) if model.calibrator is None else _lowered(model)
    model.calibrator = lowered
    label = label_column(s)
    scores, ys = [], []
    for x, df in labelled_days(s, days, label):
        df = df[first_tries(df)].reset_index(drop=True)
        score, ok = tried_hour_scores(s, model, df, x)
        scores.append(score[ok])
        ys.append(df[label].to_numpy()[ok])
    score, y = np.concatenate(scores), np.concatenate(ys)
    assert score.mean() < 0.8 * y.mean()

    calibrator, report = fit_file_calibrator(s, model, days)
    assert report["method"] == "platt" and report["rows"] == len(y)
    mapped = calibrator.predict(score)
    # the prior keeps part of the shortfall, the rows take most of it away
    assert score.mean() < mapped.mean() < y.mean()
    assert y.mean() - mapped.mean() < (y.mean() - score.mean()) / 2
    assert ev.ece(y, mapped) < ev.ece(y, score) / 2
    assert np.all(np.diff(mapped[np.argsort(score)]) >= 0)  # monotone: no person's order changes

    model.file_calibrator = calibrator
    with pytest.raises(ValueError, match="already has a file calibrator"):
        fit_file_calibrator(s, model, days)


def test_the_prior_pulls_a_fit_on_few_rows_toward_leaving_the_score_as_it_is() -> None:
    rng = np.random.default_rng(3)
    score = rng.uniform(0.05, 0.5, 20_000)
    y = (rng.random(score.size) < np.clip(1.3 * score, 0, 1)).astype(int)  # the score under-promises
    free = PlattCalibrator.fit(score, y)
    pulled = PlattCalibrator.fit(score, y, prior_rows=300.0)
    held = PlattCalibrator.fit(score, y, prior_rows=1e9)
    assert free.b > pulled.b > 0 and abs(held.a - 1) < 1e-3 and abs(held.b) < 1e-3

    # the shift of the mean probability it keeps: most with many rows, a small part with few
    def kept(rows: int) -> float:
        mine, alone = (
            PlattCalibrator.fit(score[:rows], y[:rows], prior_rows=300.0),
            PlattCalibrator.fit(score[:rows], y[:rows]),
        )
        return (mine.predict(score).mean() - score.mean()) / (alone.predict(score).mean() - score.mean())

    assert kept(20_000) > 0.9 and kept(300) < 0.5


def _lowered(model: ContactModel):
    """The model's calibrator followed by a shift of -1 on the logit."""
    inner = model.calibrator

    class Lowered:
        def predict(self, raw):
            p = np.clip(inner.predict(raw), 1e-6, 1 - 1e-6)
            return 1 / (1 + np.exp(-(np.log(p / (1 - p)) - 1.0)))

    return Lowered()


def test_training_fits_the_file_calibration_on_the_validation_days_first_tries(settings: Settings) -> None:
    write_days(settings, D, 10)
    out = train(settings, D)
    report = out["calibration"]["file"]
    assert report["method"] in {"platt", "none"} and report["rows"] > 1000
    assert "file_calibration_s" in out["timings"]
    model = load_version(settings, out["version"])
    assert model.meta["file_calibration"] == report["method"]
    assert (model.file_calibrator is None) == (report["method"] == "none")
