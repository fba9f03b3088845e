"""The scoring model as one object: LightGBM booster + fixed categories + optional calibrator.

``ContactModel`` is what training produces, what MLflow stores (wrapped in ``ContactPyfunc``) and
what scoring loads back through the ``champion`` alias. It owns the feature contract: the
ordered feature names, the categories of every categorical feature (frozen at training time so
scoring encodes them identically), and the calibrator that turns raw scores into probabilities.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import lightgbm as lgb
import mlflow.pyfunc
import numpy as np
import pandas as pd

from contactrank.features.schema import FEATURE_PREFIX


class Calibrator(Protocol):
    def predict(self, x: np.ndarray) -> np.ndarray: ...


def feature_columns(df: pd.DataFrame) -> list[str]:
    """The model features of a frame: every column named ``f_*``, in frame order."""
    return [c for c in df.columns if c.startswith(FEATURE_PREFIX)]


def categorical_columns(df: pd.DataFrame, features: list[str]) -> list[str]:
    """Features that are strings, booleans-as-strings or already categorical."""
    out = []
    for c in features:
        dtype = df[c].dtype
        if (
            isinstance(dtype, pd.CategoricalDtype)
            or pd.api.types.is_string_dtype(dtype)
            or pd.api.types.is_object_dtype(dtype)
        ):
            out.append(c)
    return out


def freeze_categories(df: pd.DataFrame, categorical: list[str]) -> dict[str, list[str]]:
    """The sorted category list of each categorical feature, as seen in the training data."""
    return {c: sorted(str(v) for v in pd.unique(df[c].dropna().astype(str))) for c in categorical}


def encode(
    df: pd.DataFrame,
    features: list[str],
    categories: dict[str, list[str]],
    out: np.ndarray | None = None,
    row: int = 0,
) -> np.ndarray:
    """Encode ``df`` into a float32 matrix (column-major), or into ``out[row:row+len(df)]``.

    Numeric features become float32 with ±inf → NaN; categorical features become the index of
    their value in the frozen category list (NaN when missing or unseen). Training builds its
    LightGBM dataset with this function and scoring predicts through it, so both see the same
    bytes; filling a preallocated ``out`` day by day keeps training memory to one matrix.
    """
    n = len(df)
    if out is None:
        out = np.empty((n, len(features)), dtype=np.float32, order="F")
        row = 0
    for j, c in enumerate(features):
        if c in categories:
            if c in df.columns:
                codes = pd.Categorical(df[c].astype("string"), categories=categories[c]).codes
                col = np.where(codes >= 0, codes, np.nan).astype(np.float32)
            else:
                col = np.full(n, np.nan, dtype=np.float32)
        elif c in df.columns:
            col = (
                pd.to_numeric(df[c], errors="coerce")
                .to_numpy(dtype="float64", na_value=np.nan)
                .astype(np.float32)
            )
            col[~np.isfinite(col)] = np.nan
        else:
            col = np.full(n, np.nan, dtype=np.float32)
        out[row : row + n, j] = col
    return out


@dataclass
class ContactModel:
    booster: lgb.Booster
    features: list[str]
    categories: dict[str, list[str]]
    calibrator: Calibrator | None = None
    label: str = "reach"
    meta: dict[str, Any] = field(default_factory=dict)

    def prepare(self, df: pd.DataFrame) -> pd.DataFrame:
        """The model's input matrix: ordered features, fixed categories, missing → NaN, ±inf → NaN."""
        out = {}
        n = len(df)
        for c in self.features:
            if c in self.categories:
                values = df[c].astype("string") if c in df.columns else pd.Series([pd.NA] * n, dtype="string")
                out[c] = pd.Categorical(values, categories=self.categories[c])
            else:
                col = pd.to_numeric(df[c], errors="coerce") if c in df.columns else np.full(n, np.nan)
                arr = np.array(col, dtype="float64")  # a copy: pandas 3 hands out read-only views
                arr[~np.isfinite(arr)] = np.nan
                out[c] = arr
        return pd.DataFrame(out, index=df.index)

    def matrix(self, df: pd.DataFrame) -> np.ndarray:
        """The booster's input as training saw it: float32, categories as codes (NaN = missing/unknown)."""
        return encode(df, self.features, self.categories)

    def raw_score(self, df: pd.DataFrame, num_threads: int = 0) -> np.ndarray:
        """Uncalibrated model output (probability for ``binary``, a score for ``lambdarank``)."""
        if len(df) == 0:
            return np.zeros(0, dtype="float64")
        return np.asarray(self.booster.predict(self.matrix(df), num_threads=num_threads), dtype="float64")

    def predict_proba(self, df: pd.DataFrame, num_threads: int = 0) -> np.ndarray:
        """Calibrated probability of success, always finite and within [0, 1]."""
        raw = self.raw_score(df, num_threads=num_threads)
        p = self.calibrator.predict(raw) if self.calibrator is not None else raw
        p = np.asarray(p, dtype="float64")
        return np.clip(np.nan_to_num(p, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)

    def contributions(self, df: pd.DataFrame, num_threads: int = 0) -> pd.DataFrame:
        """Per-row SHAP contributions (LightGBM ``pred_contrib``), one column per feature + bias."""
        contrib = self.booster.predict(self.matrix(df), pred_contrib=True, num_threads=num_threads)
        return pd.DataFrame(np.asarray(contrib), columns=[*self.features, "bias"], index=df.index)


class ContactPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc flavour: ``predict`` returns the calibrated probability of each row."""

    def __init__(self, model: ContactModel):
        self.model = model

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:  # noqa: ARG002
        return self.model.predict_proba(model_input)
