"""bench/bank_marketing.py: the gate figures it reports against the issue's targets."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
from helpers.bench import bench_module


def test_share_of_challengers_promoted_or_held() -> None:
    bank = bench_module("bank_marketing")
    assert bank._not_rejected({"promoted": 2, "held": 1, "rejected": 3}) == 0.5
    assert bank._not_rejected({"promoted": 0, "held": 0, "rejected": 0}) is None


def test_gate_reasons_are_counted_by_rule() -> None:
    rule = bench_module("bank_marketing")._rule
    assert rule("hold: not enough evidence: auc 0.5 [0.4, 0.6] at 90% vs floor 0.55: ...") == "hold_floor"
    assert rule("hold: not enough evidence: auc 0.7 vs champion 0.7: the interval straddles -margin") == (
        "hold_interval"
    )
    assert rule("hold: not enough evidence: 40 rows, 3 positives, 37 negatives on d") == "hold_evidence"
    assert rule("fail: auc 0.3 [0.2, 0.4] at 90% vs floor 0.5500: below beyond doubt") == "auc_floor"
    assert rule("fail: log loss 0.3 vs champion 0.2: difference +0.1 [+0.05, +0.15]: worse") == "log_loss"


class _Models:
    """Predictions that depend on the row only (as a booster's do)."""

    def predict(self, version, df):
        return df["f_x"].to_numpy() * version


class _Regression:
    def predict_proba(self, frame):
        p = 1 / (1 + np.exp(-frame["f_x"].to_numpy()))
        return np.column_stack([1 - p, p])


def test_days_scored_together_get_the_predictions_of_one_day_at_a_time() -> None:
    bank = bench_module("bank_marketing")
    days = []
    for i in range(5):
        rows = range(i + 1)
        df = pd.DataFrame({"attempt_id": [f"a{i}{k}" for k in rows], "date": date(2009, 1, 1)})
        df[bank.LABEL] = [k % 2 for k in rows]
        df["f_x"] = np.arange(i + 1) / 3.0
        if i == 3:  # a day with one more column: scored apart from its neighbours
            df["f_attr_job"] = "admin."
        days.append((date(2009, 1, 1 + i), df))
    logreg = (_Regression(), ["f_x"], [])

    def score(batch):
        pending = bank.Pending()
        pending.versions = (3, 4)
        pending.days = list(batch)
        return pd.concat(pending.score(_Models(), logreg), ignore_index=True)

    together = score(days)
    alone = pd.concat([score([x]) for x in days], ignore_index=True)
    pd.testing.assert_frame_equal(together, alone)
    assert together["date"].tolist() == [d for d, df in days for _ in range(len(df))]
    assert len(bank._same_columns(days)) == 3
