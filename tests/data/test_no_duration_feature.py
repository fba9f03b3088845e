"""Call duration is known only once the call ends (PROVENANCE.md §1): it must never reach a feature.

A slice of the real bank-full.csv goes through the importer and the real ingest and feature build;
no ``f_*`` column of the training or feature tables may be named after duration or carry its values.
"""

from __future__ import annotations

import importlib.util
from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
from helpers.datasets import datasets_dir

from contactrank.features.importers.bank_marketing import import_bank_marketing

FULL = datasets_dir() / "bank_marketing" / "bank-full.csv"  # CONTACTRANK_DATASETS, else ../shared/datasets
_PIPELINE = all(
    importlib.util.find_spec(m) is not None
    for m in ("contactrank.features.ingest", "contactrank.features.build")
)

pytestmark = [
    pytest.mark.skipif(not FULL.is_file(), reason=f"{FULL} is absent (set CONTACTRANK_DATASETS, see README)"),
    pytest.mark.skipif(not _PIPELINE, reason="features.ingest / features.build are not written yet"),
]


def duration_leaks(df: pd.DataFrame, duration: pd.Series) -> list[str]:
    """The f_* columns of ``df`` named after duration, equal to it, or (numerically) a copy of it."""
    d = duration.to_numpy(dtype="float64")
    leaks = []
    for col in (c for c in df.columns if c.startswith("f_")):
        if "duration" in col.lower():
            leaks.append(col)
            continue
        values = pd.to_numeric(df[col], errors="coerce").to_numpy(dtype="float64")
        ok = ~np.isnan(values)
        if ok.sum() < 10:
            continue
        if np.allclose(values[ok], d[ok]):
            leaks.append(col)
        elif np.std(values[ok]) > 0 and abs(np.corrcoef(values[ok], d[ok])[0, 1]) > 0.99:
            leaks.append(col)
    return leaks


def test_the_check_catches_a_leak() -> None:
    duration = pd.Series(np.arange(50, dtype="float64") * 7 % 31)
    df = pd.DataFrame(
        {"f_attr_age": np.arange(50) % 5, "f_attr_talk": duration * 60, "f_c_duration_s": 1.0, "x": duration}
    )
    assert duration_leaks(df, duration) == ["f_attr_talk", "f_c_duration_s"]


def test_duration_never_reaches_a_feature(settings) -> None:
    from contactrank.features.build import build_features
    from contactrank.features.ingest import ingest

    landing = settings.home / "landing"
    out = import_bank_marketing(FULL, landing, limit=1700)  # 2008-05-04 .. 2008-05-09
    start = date.fromisoformat(out["first_date"]) - timedelta(days=1)
    end = date.fromisoformat(out["last_date"])
    d = start
    while d <= end:
        report = ingest(settings, d, landing=landing)
        assert report["quarantined"] == 0, report
        build_features(settings, d)
        d += timedelta(days=1)

    lake = settings.lake
    training = pd.concat(
        pd.read_parquet(p) for p in sorted((lake / "training").glob("date=*/part-0.parquet"))
    )
    attempts = pd.concat(
        pd.read_parquet(p) for p in sorted((lake / "attempts").glob("date=*/part-0.parquet"))
    )
    assert len(training) == len(attempts) == out["rows"]
    assert attempts["duration_s"].notna().all()  # duration did arrive, as an outcome of the attempt
    joined = training.merge(attempts[["attempt_id", "duration_s"]], on="attempt_id", validate="one_to_one")

    features = [c for c in training.columns if c.startswith("f_")]
    assert {
        "f_attr_age",
        "f_attr_balance",
        "f_attr_job",
        "f_attr_campaign_prior_calls",
        "f_attr_poutcome",
    } <= set(features)
    # the person attributes are the ones the importer delivered, joined point-in-time
    row = joined.loc[joined["attempt_id"] == "bm000001-a"].iloc[0]
    assert row["f_attr_age"] == 58 and row["f_attr_balance"] == 2143 and row["f_attr_job"] == "management"
    assert duration_leaks(joined.drop(columns=["duration_s"]), joined["duration_s"]) == []

    state = pd.read_parquet(lake / "features" / f"date={end}" / "part-0.parquet")
    assert not [c for c in state.columns if "duration" in c.lower()]
    assert not [c for c in training.columns if "duration" in c.lower()]
