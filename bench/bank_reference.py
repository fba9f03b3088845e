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
import tempfile
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from bank_marketing import DEFAULT_DATA, PERIOD, auc, fit_logreg, logreg_proba  # noqa: E402

from contactrank.features.importers.bank_marketing import import_bank_marketing  # noqa: E402

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
    """The raw calls with the importer's date of each (person ``bm000001`` is data row 1)."""
    raw = pd.read_csv(path, sep=";")
    with tempfile.TemporaryDirectory(prefix="contactrank-bench-bank-ref-") as tmp:
        import_bank_marketing(path, Path(tmp))
        files = sorted((Path(tmp) / "attempts").rglob("*.csv"))
        attempts = pd.concat([pd.read_csv(f, usecols=["person_id", "attempted_at"]) for f in files])
    row = attempts["person_id"].str[2:].astype(int) - 1
    called = pd.to_datetime(attempts["attempted_at"].str[:10]).dt.date  # the local date of the call
    raw.loc[row.to_numpy(), "call_date"] = called.to_numpy()
    raw["label_conversion"] = raw.pop("y").eq("yes").astype(int)
    return raw.drop(columns=["duration"])


def monthly(calls: pd.DataFrame, params: dict, left_out: tuple[str, ...]) -> pd.DataFrame:
    import lightgbm as lgb

    features = [c for c in calls.columns if c not in ("call_date", "label_conversion", *left_out)]
    frame = calls.copy()
    for c in features:
        if not pd.api.types.is_numeric_dtype(frame[c]):
            frame[c] = frame[c].astype("category")
    month = pd.to_datetime(frame["call_date"]).dt.to_period("M")
    out = []
    for m in pd.period_range(PERIOD[0], PERIOD[1], freq="M"):
        train, test = frame[month < m], frame[month == m]
        if test.empty:
            continue
        model = lgb.LGBMClassifier(random_state=0, verbose=-1, n_jobs=2, **params)
        model.fit(train[features], train["label_conversion"])
        lr = fit_logreg(calls[month < m], features)
        out.append(
            test[["call_date", "label_conversion"]].assign(
                lgbm=model.predict_proba(test[features])[:, 1],
                logreg=logreg_proba(lr, calls[month == m]),
            )
        )
    return pd.concat(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=str(DEFAULT_DATA))
    ns = ap.parse_args()
    calls = dated_calls(Path(ns.data))
    result: dict = {"period": [d.isoformat() for d in PERIOD]}
    for name, params, left_out in VARIANTS:
        scored = monthly(calls, params, left_out)
        y = scored["label_conversion"].to_numpy()
        result[f"auc_lgbm: {name}"] = round(auc(y, scored["lgbm"].to_numpy()), 4)
        result[f"auc_logreg: {'without day and month' if left_out else 'all columns'}"] = round(
            auc(y, scored["logreg"].to_numpy()), 4
        )
    result.update(
        rows=len(scored),
        positives=int(y.sum()),
        first=str(min(scored["call_date"])),
        last=str(max(scored["call_date"])),
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
