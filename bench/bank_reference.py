"""The reference the bank replay is held to: a LightGBM retrained monthly on all earlier calls.

    .venv/bin/python bench/bank_reference.py [--data bank-full.csv]

Each month of 2009-01..2010-11 is predicted by a model fitted on every call before that month
(the call's own columns without ``duration``, which is known only after the call; strings as
categories; four LightGBM variants in ``VARIANTS``), and by a
logistic regression fitted the same way; the AUC is pooled over the period's calls. The dates
are the importer's (``contactrank import bank-marketing``). Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from bank_marketing import DEFAULT_DATA, PERIOD, auc, fit_logreg, logreg_proba  # noqa: E402

from contactrank.features.importers.bank_marketing import read_calls  # noqa: E402

# (name, LightGBM parameters, columns left out): the reference and a few variants of it, so that
# its figure is not one lucky or unlucky configuration
SLOW = {"n_estimators": 200, "learning_rate": 0.05}
VARIANTS = (
    ("200 trees, lr 0.05", SLOW, ()),
    ("LightGBM defaults (100 trees, lr 0.1)", {}, ()),
    (
        "500 trees, lr 0.02, 50 rows a leaf",
        {"n_estimators": 500, "learning_rate": 0.02, "min_child_samples": 50},
        (),
    ),
    ("200 trees, lr 0.05, without day and month", SLOW, ("day", "month")),
)


def dated_calls(path: Path) -> pd.DataFrame:
    """The calls with their columns typed, the importer's date of each, and the label."""
    raw = pd.read_csv(path, sep=";")
    raw["call_date"] = read_calls(path)[2]
    raw["label_conversion"] = raw.pop("y").eq("yes").astype(int)
    return raw.drop(columns=["duration"])


def monthly(calls: pd.DataFrame, left_out: tuple[str, ...], fit_predict) -> pd.DataFrame:
    """Each month of PERIOD scored by ``fit_predict(train, test, features)`` fitted on every earlier call."""
    features = [c for c in calls.columns if c not in ("call_date", "label_conversion", *left_out)]
    month = pd.to_datetime(calls["call_date"]).dt.to_period("M")
    out = []
    for m in pd.period_range(PERIOD[0], PERIOD[1], freq="M"):
        train, test = calls[month < m], calls[month == m]
        if not test.empty:
            out.append(test[["label_conversion"]].assign(score=fit_predict(train, test, features)))
    return pd.concat(out)


def with_categories(calls: pd.DataFrame) -> pd.DataFrame:
    """The string columns as categories over every call: LightGBM's categorical input."""
    frame = calls.copy()
    for c in frame.columns:
        if c != "call_date" and not pd.api.types.is_numeric_dtype(frame[c]):
            frame[c] = frame[c].astype("category")
    return frame


def lgbm(params: dict):
    def fit_predict(train: pd.DataFrame, test: pd.DataFrame, features: list[str]):
        import lightgbm as lgb

        model = lgb.LGBMClassifier(random_state=0, verbose=-1, n_jobs=2, **params)
        model.fit(train[features], train["label_conversion"])
        return model.predict_proba(test[features])[:, 1]

    return fit_predict


def logreg(train: pd.DataFrame, test: pd.DataFrame, features: list[str]):
    return logreg_proba(fit_logreg(train, features), test)


def _auc(scored: pd.DataFrame) -> float:
    return round(auc(scored["label_conversion"].to_numpy(), scored["score"].to_numpy()), 4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ns = ap.parse_args()
    calls = dated_calls(Path(ns.data))
    result: dict = {"period": [d.isoformat() for d in PERIOD]}
    categorical = with_categories(calls)
    for name, params, left_out in VARIANTS:
        scored = monthly(categorical, left_out, lgbm(params))
        result[f"auc_lgbm: {name}"] = _auc(scored)
    for left_out in sorted({v[2] for v in VARIANTS}):
        result[f"auc_logreg: {'without ' + ' and '.join(left_out) if left_out else 'all columns'}"] = _auc(
            monthly(calls, left_out, logreg)
        )
    result.update(
        rows=len(scored),
        positives=int(scored["label_conversion"].sum()),
        first=str(min(calls.loc[scored.index, "call_date"])),
        last=str(max(calls.loc[scored.index, "call_date"])),
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
