"""Incremental builds (state of D-1 + aggregates of D) give what a full rebuild from raw gives."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from feature_history import START, attempt, attempts_for, contacts, history, write_attempts

from contactrank.features import feature_chunks
from contactrank.features.build import DAILY_AGG, STATE, build_features
from contactrank.features.lake import DATA_FILE, partition_dir

# Attempt days chosen so that, while the chain runs over days 395..410, days leave every window:
# 365d (days 31..44), 90d (305..320), 30d (370, 380) and 7d (390..403).
ATTEMPT_DAYS = [0, 3, 10, 20, 31, 33, 36, 40, 44, 100, 200, 305, 308, 312, 318, 320, 370, 380, 390, 393,
                396, 398, 401, 403, 405, 407, 409, 410]  # fmt: skip
CHAIN = list(range(395, 411))

# q001: unreachable for months on its old address, a new address first seen on day 398 answers on
# day 401 (came back). q002: an address delivered on day 402 with a first_seen of day 399 (late).
EXTRA_BOOK = [
    {"person_id": "q001", "contact_id": "+5511800000001", "channel": "voice", "source": "customer",
     "first_day": 0, "active": True, "consent": True},
    {"person_id": "q001", "contact_id": "+5511800000002", "channel": "whatsapp", "source": "bureau",
     "first_day": 398, "active": True, "consent": True},
    {"person_id": "q002", "contact_id": "+5511800000003", "channel": "voice", "source": "customer",
     "first_day": 0, "active": True, "consent": True},
    {"person_id": "q002", "contact_id": "+5511800000004", "channel": "sms", "source": "enrichment",
     "first_day": 399, "visible_from": 402, "active": True, "consent": True},
]  # fmt: skip
EXTRA_ATTEMPTS = [
    attempt(100, 1, "q001", "+5511800000001", "voice", "right_party", 10),
    attempt(200, 1, "q001", "+5511800000001", "voice", "no_answer", 10),
    attempt(390, 1, "q001", "+5511800000001", "voice", "no_answer", 19),
    attempt(401, 1, "q001", "+5511800000002", "whatsapp", "no_answer", 9),
    attempt(401, 2, "q001", "+5511800000002", "whatsapp", "right_party", 20),
    attempt(403, 1, "q001", "+5511800000002", "whatsapp", "busy", 12),
    attempt(396, 1, "q002", "+5511800000003", "voice", "right_party", 15),
    attempt(405, 1, "q002", "+5511800000004", "sms", "right_party", 15),
]


def _day(n: int):
    return START + timedelta(days=n)


def _write_history(settings) -> None:
    history(settings, ATTEMPT_DAYS, [394, *CHAIN], extra_book=EXTRA_BOOK, extra_attempts=EXTRA_ATTEMPTS)


def _read(settings, kind: str, n: int, name: str = DATA_FILE) -> pd.DataFrame:
    return sorted_partition(settings, kind, _day(n), name)


def sorted_partition(settings, kind: str, d, name: str = DATA_FILE) -> pd.DataFrame:
    """A partition in key order (row order within a partition is not part of its content)."""
    df = pq.read_table(partition_dir(settings, kind, d) / name).to_pandas()
    keys = [c for c in ("attempt_id", "person_id", "contact_id", "campaign_id", "channel") if c in df.columns]
    return df.sort_values(keys, ignore_index=True, na_position="first") if keys else df


def assert_same(a: pd.DataFrame, b: pd.DataFrame, rtol: float = 1e-6) -> None:
    """Same rows and columns; integers and strings exactly, floats to ``rtol`` (decayed sums are
    computed recursively on one path and as one sum on the other)."""
    assert list(a.columns) == list(b.columns)
    assert len(a) == len(b)
    for c in a.columns:
        x, y = a[c], b[c]
        if pd.api.types.is_float_dtype(x) or pd.api.types.is_float_dtype(y):
            np.testing.assert_allclose(x.to_numpy(float), y.to_numpy(float), rtol=rtol, atol=1e-9, err_msg=c)
        else:
            assert x.astype(str).tolist() == y.astype(str).tolist(), c


@pytest.mark.slow
def test_chain_equals_full_rebuild(settings, tmp_path, monkeypatch):
    # every day fits its own curve prior: a weekly one is fitted on the day the chain first reached
    # in its week and read after it, a fresh home's on the rebuilt day (test_curve_priors)
    settings = settings.replace(hour_curve_refit_days=1)
    _write_history(settings)
    modes = [build_features(settings, _day(n))["mode"] for n in CHAIN]
    assert modes == ["direct"] + ["incremental"] * (len(CHAIN) - 1)
    chained = {k: _read(settings, k, 410) for k in ("features", "training", STATE)}
    chained_persons = _read(settings, STATE, 410, "persons.parquet")

    full = settings.replace(home=tmp_path / "full")
    _write_history(full)
    monkeypatch.setattr(feature_chunks, "CHUNK_PAIRS", 10)  # the rebuild also runs in person-hash chunks
    out = build_features(full, _day(410), full=True)
    assert out["mode"] == "full" and out["daily_agg_days"] == len(ATTEMPT_DAYS)
    for kind, frame in chained.items():
        assert_same(frame, _read(full, kind, 410), rtol=1e-6 if kind != STATE else 1e-9)
    assert_same(chained_persons, _read(full, STATE, 410, "persons.parquet"))

    # The fixture exercises what it claims: windows actually slid, the came-back and late-address cases
    # happened.
    f = chained["features"].set_index("contact_id")
    assert (f.f_c_attempts_365d < f.n_attempts).any() and (f.f_c_attempts_7d < f.f_c_attempts_30d).any()
    assert f.loc["+5511800000002", "f_p_came_back"] == 1
    assert f.loc["+5511800000004", "f_c_age_days"] == 11
    st = chained[STATE].set_index("contact_id")
    assert st.loc["+5511800000004", "dormant"] == np.False_  # q002 was reached on day 396, 3 days before


def test_rebuilding_a_past_date_is_deterministic(settings):
    _write_history(settings)
    for n in CHAIN[:5]:
        build_features(settings, _day(n))
    before = {k: _read(settings, k, 398) for k in ("features", "training", STATE, DAILY_AGG)}
    for n in CHAIN[5:8]:
        build_features(settings, _day(n))
    assert build_features(settings, _day(398))["mode"] == "incremental"
    for kind, frame in before.items():
        pd.testing.assert_frame_equal(frame, _read(settings, kind, 398))


def test_stale_state_is_detected_and_recomputed(settings, tmp_path):
    """A past day re-delivered with more attempts, without rebuilding the days after it: subtracting
    its new aggregates from the old state would leave negative windows; the build notices and
    recomputes the state directly, which equals a full rebuild."""
    settings = settings.replace(hour_curve_refit_days=1)  # as in test_chain_equals_full_rebuild
    _write_history(settings)
    for n in CHAIN[:8]:  # up to day 402
        build_features(settings, _day(n))
    book = contacts()
    bigger = pd.concat([attempts_for(book, 396, 25, 0), attempts_for(book, 396, 60, 7).assign(
        attempt_id=lambda df: "y" + df.attempt_id)], ignore_index=True)  # fmt: skip
    write_attempts(settings, 396, bigger)
    build_features(settings, _day(396))  # rebuilds daily_agg/date=396 only
    out = build_features(
        settings, _day(403)
    )  # day 396 leaves the 7-day window; state(402) counted the old one
    assert out["mode"] == "direct"

    full = settings.replace(home=tmp_path / "full")
    _write_history(full)
    write_attempts(full, 396, bigger)
    build_features(full, _day(403), full=True)
    assert_same(_read(settings, "features", 403), _read(full, "features", 403))


def test_missing_previous_state_builds_directly(settings):
    _write_history(settings)
    assert build_features(settings, _day(401))["mode"] == "direct"  # first build: no state of 400
    # every earlier day with attempts got its daily aggregates from raw, and nothing was built after 401
    assert all(
        (partition_dir(settings, DAILY_AGG, _day(n)) / DATA_FILE).exists() for n in ATTEMPT_DAYS if n <= 401
    )
    assert not (partition_dir(settings, DAILY_AGG, _day(403)) / DATA_FILE).exists()
    assert not (partition_dir(settings, STATE, _day(400)) / DATA_FILE).exists()
    assert build_features(settings, _day(403))["mode"] == "direct"  # the state of 402 is missing
