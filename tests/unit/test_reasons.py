"""Reason codes: the feature->code mapping and the path contributions of a real LightGBM model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from test_score import tiny_model

from contactrank.ml import reasons


@pytest.fixture(scope="module")
def model():
    return tiny_model(seed=3, trees=40)


def frame(n: int = 300, seed: int = 9) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "f_c_reach_30d": rng.poisson(1.0, n).astype(float),
            "f_c_fail_streak": rng.poisson(2.0, n).astype(float),
            "f_c_age_days": rng.integers(0, 400, n).astype(float),
            "f_channel": rng.choice(["voice", "sms", "email", "whatsapp"], n),
            "f_hour": rng.integers(8, 22, n).astype(float),
            "f_dow": rng.integers(0, 7, n).astype(float),
        }
    )


@pytest.mark.parametrize(
    "feature,group",
    [
        ("f_c_reach_30d", "success"),
        ("f_c_reach_rate_hl7", "success"),
        ("f_c_days_since_reach", "success"),
        ("f_c_reach_hour_evening", "timing"),
        ("f_hour", "timing"),
        ("f_p_reach_share_evening", "timing"),
        ("f_c_fail_streak", "failures"),
        ("f_c_noanswer_90d", "failures"),
        ("f_c_wrong_party_30d", "wrong_party"),
        ("f_c_days_since_wrong_party", "wrong_party"),
        ("f_c_invalid_7d", "invalid"),
        ("f_c_age_days", "newness"),
        ("f_channel", "channel"),
        ("f_p_reach_share_whatsapp", "channel"),
        ("f_p_reach_30d", "person"),
        ("f_attr_region", "profile"),
        ("f_g_reach_rate_7d", "calendar"),
        ("f_something_new", "other"),
    ],
)
def test_feature_names_map_to_documented_groups(feature, group):
    assert reasons.group_of(feature).name == group


def test_codes_pick_the_two_largest_groups_with_their_sign():
    names = [g.name for g in (*reasons.GROUPS, reasons.OTHER)]
    contrib = np.zeros((4, len(names)))
    contrib[0, names.index("success")] = 0.8
    contrib[0, names.index("timing")] = 0.3
    contrib[0, names.index("failures")] = -0.1
    contrib[1, names.index("failures")] = -0.6
    contrib[1, names.index("wrong_party")] = -0.4
    contrib[2, names.index("wrong_party")] = 0.9  # no code for a positive wrong-party effect
    contrib[2, names.index("newness")] = 0.2
    contrib[3, names.index("success")] = 0.001  # too small to say anything
    out = reasons.codes(contrib, [19, 9, 12, 3])
    assert out == [
        "recent_success;answers_evenings",
        "many_failures;wrong_party_before",
        "new_address",
        "baseline",
    ]


def test_path_contributions_add_up_to_the_raw_margin(model):
    df = frame()
    explainer = reasons.PathExplainer(model)
    contrib = explainer.contributions(df)
    margin = model.booster.predict(model.prepare(df), raw_score=True)
    assert np.allclose(contrib.sum(axis=1) + explainer.bias, margin, atol=1e-4)  # float32 tables
    # pred_contrib (TreeSHAP) decomposes the same margin, with a different rule
    shap = reasons.shap_contributions(model, df)
    bias = model.contributions(df)["bias"].to_numpy()
    assert np.allclose(shap.sum(axis=1) + bias, margin, atol=1e-9)


def test_path_and_shap_agree_on_the_dominant_reason(model):
    df = frame()
    df.loc[:, "f_c_reach_30d"] = 6.0  # many recent reaches dominate every row
    df.loc[:, "f_c_fail_streak"] = 0.0
    path = reasons.explain(model, df, np.full(len(df), 19), method="path")
    shap = reasons.explain(model, df, np.full(len(df), 19), method="shap")
    assert all(c.split(";")[0] == "recent_success" for c in path)
    assert all(c.split(";")[0] == "recent_success" for c in shap)


def test_path_contributions_with_an_odd_number_of_trees():
    odd = tiny_model(seed=5, trees=7)
    df = frame(50)
    explainer = reasons.PathExplainer(odd)
    margin = odd.booster.predict(odd.prepare(df), raw_score=True)
    assert np.allclose(explainer.contributions(df).sum(axis=1) + explainer.bias, margin, atol=1e-5)


def test_population_and_calendar_contributions_never_make_a_code():
    names = [g.name for g in (*reasons.GROUPS, reasons.OTHER)]
    contrib = np.zeros((1, len(names)))
    contrib[0, names.index("calendar")] = 2.0
    contrib[0, names.index("success")] = 0.5
    contrib[0, names.index("person")] = -0.3
    assert reasons.codes(contrib, [10]) == ["recent_success;person_hard_to_reach"]
