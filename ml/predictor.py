"""Calibrated probabilities from a feature matrix, with stock LightGBM or a compiled model.

Scoring builds one float64 matrix per batch (:func:`model_matrix`) and predicts it through a
:class:`Predictor`; the compiled (lleaves) predictor is worth its one-off compilation only on
large runs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile

import numpy as np
import pandas as pd

from contactrank.ml.model import ContactModel, probability
from contactrank.settings import Settings

log = logging.getLogger(__name__)

# "auto": lleaves when installed and the run is large enough; "lightgbm" or "lleaves" to force one.
PREDICTOR = "auto"
COMPILED_MIN_ROWS = 5_000_000


def model_matrix(model: ContactModel, prepared: pd.DataFrame) -> np.ndarray:
    """The prepared frame as the float64 matrix LightGBM sees: categories as codes, missing as NaN."""
    x = np.empty((len(prepared), len(model.features)), dtype=np.float64)
    for j, c in enumerate(model.features):
        col = prepared[c]
        if isinstance(col.dtype, pd.CategoricalDtype):
            codes = col.cat.codes.to_numpy().astype(np.float64)
            codes[codes < 0] = np.nan
            x[:, j] = codes
        else:
            x[:, j] = col.to_numpy(dtype=np.float64)
    return x


def feature_values(model: ContactModel, name: str, values: pd.Series) -> np.ndarray:
    """One column as model input (category codes or floats), as ``prepare`` would encode it."""
    if name in model.categories:
        categorical = pd.Categorical(values.astype("string"), categories=model.categories[name])
        codes = categorical.codes.astype(np.float64)
        codes[codes < 0] = np.nan
        return codes
    arr = np.asarray(pd.to_numeric(values, errors="coerce"), dtype=np.float64)
    arr[~np.isfinite(arr)] = np.nan
    return arr


class Predictor:
    """Calibrated probabilities from a feature matrix, with stock LightGBM or a compiled model.

    The compiled (lleaves) predictor is used when it is installed and a run has at least
    ``COMPILED_MIN_ROWS`` model rows (its one-off compilation, cached per model under
    ``<home>/tmp/lleaves``, costs about as much as predicting that many rows with LightGBM).
    """

    def __init__(self, settings: Settings, model: ContactModel, rows: int, kind: str | None = None):
        self.model = model
        self.threads = int(settings.num_threads)
        self.compiled = None
        self.kind = "lightgbm"
        wanted = kind or PREDICTOR
        if wanted == "lleaves" or (wanted == "auto" and rows >= COMPILED_MIN_ROWS):
            try:
                self.compiled = compile_model(settings, model)
                self.kind = "lleaves"
            except ImportError:
                if wanted == "lleaves":
                    raise
                log.info("lleaves is not installed: scoring with stock LightGBM")

    def raw(self, x: np.ndarray) -> np.ndarray:
        """The booster's output (probability for ``binary``) before calibration."""
        if self.compiled is not None:
            return np.asarray(self.compiled.predict(x, n_jobs=self.threads), dtype=np.float64)
        return np.asarray(self.model.booster.predict(x, num_threads=self.threads), dtype=np.float64)

    def proba(self, x: np.ndarray) -> np.ndarray:
        """Calibrated probability, as ``ContactModel.predict_proba`` computes it."""
        return self.calibrate(self.raw(x))

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """The calibrator applied to raw outputs, finite and clipped to [0, 1]."""
        return self.model.calibrate(raw)

    def published(self, p: np.ndarray) -> np.ndarray:
        """The model's file calibrator (``ml.file_calibration``) applied to the score a file would
        publish, finite and clipped to [0, 1]; ``p`` itself for a model without one."""
        cal = self.model.file_calibrator
        return p if cal is None else probability(cal.predict(p))


def compile_model(settings: Settings, model: ContactModel):
    """The lleaves-compiled booster, from the per-model cache when it exists."""
    import lleaves  # optional and slow to import (LLVM): only large runs compile

    text = model.booster.model_to_string()
    key = hashlib.sha256(text.encode()).hexdigest()[:24]
    cache_dir = settings.home / "tmp" / "lleaves"
    cache_dir.mkdir(parents=True, exist_ok=True)
    cache = cache_dir / f"{key}.o"
    with tempfile.TemporaryDirectory(dir=cache_dir) as tmp:
        model_file = os.path.join(tmp, "model.txt")
        with open(model_file, "w") as fh:
            fh.write(text)
        compiled = lleaves.Model(model_file=model_file)
        if cache.is_file():
            compiled.compile(cache=str(cache))
        else:
            partial = os.path.join(tmp, "compiled.o")
            log.info("compiling the model with lleaves (%d trees)", compiled.num_trees())
            compiled.compile(cache=partial)
            os.replace(partial, cache)  # a concurrent run sees the whole binary or none
    return compiled
