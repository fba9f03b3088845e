"""The scoring model as one object: LightGBM booster + fixed categories + optional calibrator.

``ContactModel`` is what training produces, what MLflow stores (wrapped in ``ContactPyfunc``) and
what scoring loads back through the ``champion`` alias. It owns the feature contract: the
ordered feature names, the categories of every categorical feature (frozen at training time so
scoring encodes them identically), the calibrator that turns raw scores into probabilities, and
the file calibrator that maps the score a file publishes (``ml.file_calibration``).

MLflow stores it as files, not as a pickled object: the booster in LightGBM's text format and the
contract (features, categories, calibrators, meta) as JSON, loaded by a few lines of model code
(MLflow's "models from code"). Loading a version then runs no unpickling of arbitrary objects.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import lightgbm as lgb
import mlflow.pyfunc
import numpy as np
import pandas as pd

from contactrank.features.schema import FEATURE_PREFIX

# Features no longer built that a model trained before still has: it is given what scoring gave
# it then (0: the day's first try), not a missing value it never saw at that place.
RETIRED_AT_ZERO = frozenset({"f_tries_before_address", "f_tries_before_person"})


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


def probability(p: np.ndarray) -> np.ndarray:
    """``p`` as float64, finite (NaN and -inf as 0, +inf as 1) and clipped to [0, 1]."""
    p = np.asarray(p, dtype=np.float64)
    return np.clip(np.nan_to_num(p, nan=0.0, posinf=1.0, neginf=0.0), 0.0, 1.0)


@dataclass
class ContactModel:
    booster: lgb.Booster
    features: list[str]
    categories: dict[str, list[str]]
    calibrator: Calibrator | None = None
    label: str = "reach"
    meta: dict[str, Any] = field(default_factory=dict)
    # maps the score scoring publishes (hour-averaged probability x the habit's lift) to a
    # probability; ``predict_proba`` of one row at its own hour does not use it
    file_calibrator: Calibrator | None = None

    def prepare(self, df: pd.DataFrame) -> pd.DataFrame:
        """The model's input matrix: ordered features, fixed categories, missing → NaN, ±inf → NaN."""
        out = {}
        n = len(df)
        for c in self.features:
            if c in self.categories:
                values = df[c].astype("string") if c in df.columns else pd.Series([pd.NA] * n, dtype="string")
                out[c] = pd.Categorical(values, categories=self.categories[c])
            else:
                missing = 0.0 if c in RETIRED_AT_ZERO else np.nan
                col = pd.to_numeric(df[c], errors="coerce") if c in df.columns else np.full(n, missing)
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

    def calibrate(self, raw: np.ndarray) -> np.ndarray:
        """The calibrator applied to raw outputs (:meth:`raw_score`), as a :func:`probability`."""
        return probability(self.calibrator.predict(raw) if self.calibrator is not None else raw)

    def predict_proba(self, df: pd.DataFrame, num_threads: int = 0) -> np.ndarray:
        """Calibrated probability of success, always finite and within [0, 1]."""
        return self.calibrate(self.raw_score(df, num_threads=num_threads))

    def contributions(self, df: pd.DataFrame, num_threads: int = 0) -> pd.DataFrame:
        """Per-row SHAP contributions (LightGBM ``pred_contrib``), one column per feature + bias."""
        contrib = self.booster.predict(self.matrix(df), pred_contrib=True, num_threads=num_threads)
        return pd.DataFrame(np.asarray(contrib), columns=[*self.features, "bias"], index=df.index)


# The model code MLflow stores with each version and runs to load it: the object comes from the
# artifacts in ``load_context``, so nothing of the model is pickled.
MODEL_CODE = '''"""contactrank model (MLflow models from code): the booster and contract are artifacts."""
from mlflow.models import set_model

from contactrank.ml.model import ContactPyfunc

set_model(ContactPyfunc())
'''
BOOSTER_FILE = "booster.txt"
CONTRACT_FILE = "contract.json"
# calibrators are dataclasses of the package; their module is recorded so the contract can name
# them without this module importing the one that defines them (it imports this one)
_CALIBRATOR_PACKAGE = "contactrank."


def _to_json(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return {"array": value.astype("float64").tolist()}
    if isinstance(value, np.generic):
        return value.item()
    return value


def _from_json(value: Any) -> Any:
    if isinstance(value, dict) and set(value) == {"array"}:
        return np.asarray(value["array"], dtype="float64")
    return value


def calibrator_to_dict(calibrator: Calibrator | None) -> dict[str, Any] | None:
    """The calibrator as JSON-able data: its class and its fields (dataclass calibrators only)."""
    if calibrator is None:
        return None
    cls = type(calibrator)
    if not dataclasses.is_dataclass(calibrator) or not cls.__module__.startswith(_CALIBRATOR_PACKAGE):
        raise TypeError(f"cannot store calibrator {cls.__module__}.{cls.__qualname__} as data")
    fields = {f.name: _to_json(getattr(calibrator, f.name)) for f in dataclasses.fields(calibrator)}
    return {"module": cls.__module__, "class": cls.__qualname__, "fields": fields}


def calibrator_from_dict(blob: dict[str, Any] | None) -> Calibrator | None:
    """The calibrator that :func:`calibrator_to_dict` described."""
    if blob is None:
        return None
    if not str(blob["module"]).startswith(_CALIBRATOR_PACKAGE):
        raise ValueError(f"calibrator module {blob['module']!r} is not part of contactrank")
    cls = getattr(importlib.import_module(blob["module"]), blob["class"])
    return cls(**{k: _from_json(v) for k, v in blob["fields"].items()})


def save_model_files(model: ContactModel, folder: Path) -> dict[str, str]:
    """Write the booster and the contract into ``folder``; return them as MLflow artifacts."""
    folder.mkdir(parents=True, exist_ok=True)
    booster = folder / BOOSTER_FILE
    model.booster.save_model(str(booster))  # the best iteration when early stopping found one
    contract = {
        "features": model.features,
        "categories": model.categories,
        "label": model.label,
        "meta": model.meta,
        "calibrator": calibrator_to_dict(model.calibrator),
        "file_calibrator": calibrator_to_dict(model.file_calibrator),
    }
    path = folder / CONTRACT_FILE
    path.write_text(json.dumps(contract, indent=1, default=_to_json))
    return {"booster": str(booster), "contract": str(path)}


def load_model_files(booster: Path, contract: Path) -> ContactModel:
    """The ContactModel that :func:`save_model_files` wrote."""
    blob = json.loads(Path(contract).read_text())
    return ContactModel(
        booster=lgb.Booster(model_file=str(booster)),
        features=list(blob["features"]),
        categories={k: list(v) for k, v in blob["categories"].items()},
        calibrator=calibrator_from_dict(blob.get("calibrator")),
        label=blob.get("label", "reach"),
        meta=dict(blob.get("meta") or {}),
        file_calibrator=calibrator_from_dict(blob.get("file_calibrator")),
    )


class ContactPyfunc(mlflow.pyfunc.PythonModel):
    """MLflow pyfunc flavour: ``predict`` returns the calibrated probability of each row."""

    def __init__(self, model: ContactModel | None = None):
        self.model = model

    def load_context(self, context) -> None:
        artifacts = getattr(context, "artifacts", None) or {}
        # versions logged before the model was stored as files carry the object itself
        if "booster" in artifacts and "contract" in artifacts:
            self.model = load_model_files(Path(artifacts["booster"]), Path(artifacts["contract"]))

    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> np.ndarray:  # noqa: ARG002
        return self.model.predict_proba(model_input)
