"""Scoring: candidates, suppressions (fail closed), invalid policy, caps, best hour, ranking, batches."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from helpers.s3 import overwrite

from contactrank.errors import FailClosed, NotReady
from contactrank.features.lake import partition_dir, read_partition, read_table, write_partition
from contactrank.ml.hours import smooth_hours
from contactrank.ml.model import ContactModel
from contactrank.ml.publish import export_dir, publish
from contactrank.ml.score import read_report, score

D = date(2026, 11, 20)


def add_context(df: pd.DataFrame, day: date, hour: int) -> pd.DataFrame:
    from contactrank.features.context import add_context as real

    return real(df, day=day, hour=hour)


def tiny_model(seed: int = 0, n: int = 4000, trees: int = 30) -> ContactModel:
    """A real LightGBM model: success rises with past reaches, falls with failures, peaks at 19h."""
    rng = np.random.default_rng(seed)
    df = pd.DataFrame(
        {
            "f_c_reach_30d": rng.poisson(1.0, n).astype(float),
            "f_c_fail_streak": rng.poisson(2.0, n).astype(float),
            "f_c_age_days": rng.integers(0, 400, n).astype(float),
            "f_channel": rng.choice(["voice", "sms", "email", "whatsapp"], n),
            "f_hour": rng.integers(8, 22, n).astype(float),
            "f_dow": rng.integers(0, 7, n).astype(float),
        }
    )
    logit = -1.0 + 0.9 * df.f_c_reach_30d - 0.5 * df.f_c_fail_streak - 0.15 * np.abs(df.f_hour - 19)
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    features = list(df.columns)
    cats = {"f_channel": sorted(df.f_channel.unique())}
    model = ContactModel(booster=None, features=features, categories=cats)  # type: ignore[arg-type]
    x = model.prepare(df)
    model.booster = lgb.train(
        {
            "objective": "binary",
            "num_leaves": 7,
            "verbose": -1,
            "seed": seed,
            "num_threads": 1,
            "min_data_in_leaf": 20,
        },
        lgb.Dataset(x, y, categorical_feature=["f_channel"]),
        num_boost_round=trees,
    )
    return model


def features_frame(rows: list[tuple]) -> pd.DataFrame:
    """rows: (person_id, contact_id, channel, last_outcome, n_attempts, reach_30d, fail_streak)."""
    df = pd.DataFrame(
        rows,
        columns=[
            "person_id",
            "contact_id",
            "channel",
            "last_outcome",
            "n_attempts",
            "f_c_reach_30d",
            "f_c_fail_streak",
        ],
    )
    df["f_c_age_days"] = 30.0
    df["f_channel"] = df["channel"]
    df["f_c_days_since_wrong_party"] = np.nan  # never answered by someone else
    df["f_c_days_since_reach"] = np.nan
    return df


def write_world(settings, d: date, feats: pd.DataFrame, state: pd.DataFrame | None = None) -> None:
    write_partition(settings, "features", d, feats)
    if state is None:
        state = feats[["person_id", "contact_id", "channel"]].assign(active=True, consent=True)
    write_partition(settings, "contacts_state", d, state)


def write_suppressions(settings, d: date, rows: list[tuple]) -> None:
    """rows: (person_id, contact_id, reason, effective_from)."""
    table = pa.table(
        {
            "person_id": pa.array([r[0] for r in rows], pa.string()),
            "contact_id": pa.array([r[1] for r in rows], pa.string()),
            "reason": pa.array([r[2] for r in rows], pa.string()),
            "effective_from": pa.array([r[3] for r in rows], pa.date32()),
            "origin": pa.array(["file"] * len(rows), pa.string()),
        }
    )
    write_partition(settings, "suppressions", d, table)


def write_attempts(settings, d: date, rows: list[tuple[str, str]]) -> None:
    """rows: (person_id, contact_id) attempted on d."""
    at = datetime(d.year, d.month, d.day, 15, tzinfo=UTC)
    table = pa.table(
        {
            "attempt_id": pa.array([f"{d}-{i}" for i in range(len(rows))], pa.string()),
            "person_id": pa.array([r[0] for r in rows], pa.string()),
            "contact_id": pa.array([r[1] for r in rows], pa.string()),
            "channel": pa.array(["voice"] * len(rows), pa.string()),
            "attempted_at": pa.array([at] * len(rows), pa.timestamp("us", tz="UTC")),
            "local_hour": pa.array([12] * len(rows), pa.int8()),
            "outcome": pa.array(["no_answer"] * len(rows), pa.string()),
            "campaign_id": pa.array([None] * len(rows), pa.string()),
            "duration_s": pa.array([None] * len(rows), pa.float64()),
        }
    )
    write_partition(settings, "attempts", d, table)


BASE = [
    ("p1", "+5511900000001", "voice", "right_party", 5, 3.0, 0.0),
    ("p1", "+5511900000002", "voice", "no_answer", 6, 0.0, 5.0),
    ("p1", "a@x.com", "email", "none", 0, 0.0, 0.0),
    ("p2", "+5511900000003", "whatsapp", "busy", 2, 1.0, 1.0),
    ("p2", "+5511900000004", "sms", "invalid", 1, 0.0, 1.0),
    ("p3", "+5511900000005", "voice", "none", 0, 0.0, 0.0),
]


@pytest.fixture(scope="module")
def model() -> ContactModel:
    return tiny_model()


INFO = {"name": "contactrank", "version": "3", "run_id": "abc"}


def scored(settings, d: date = D) -> pd.DataFrame:
    return read_partition(settings, "scores", d).to_pandas()


def test_scores_every_candidate_at_its_best_allowed_hour(settings, model):
    write_world(settings, D, features_frame(BASE))
    out = score(settings.replace(explore_share=0.0), D, model=model, model_info=INFO)
    df = scored(settings)
    assert out["candidates"] == 5 and out["addresses_invalid_dropped"] == 1  # invalid dropped by default
    assert set(df.contact_id) == {r[1] for r in BASE} - {"+5511900000004"}
    assert df.model_version.eq("3").all() and df.best_hour.between(8, 21).all()
    feats = features_frame(BASE).set_index("contact_id")
    valid_from = D + timedelta(days=1)
    for row in df.itertuples():
        one = feats.loc[[row.contact_id]].reset_index()
        per_hour = [model.predict_proba(add_context(one, day=valid_from, hour=h))[0] for h in range(8, 22)]
        smoothed = smooth_hours(np.array([per_hour]))[0]  # no calibrator: raw output = probability
        assert row.score == pytest.approx(max(smoothed), abs=1e-12)
        assert row.best_hour == 8 + int(np.argmax(smoothed))
    # rank 1..k within each person, by score (the model has no reason to explore here: share 0)
    for _, g in df.groupby("person_id"):
        assert sorted(g["rank"]) == list(range(1, len(g) + 1))
    p1 = df[df.person_id == "p1"].sort_values("rank")
    assert p1.iloc[0].contact_id == "+5511900000001"  # 3 recent reaches beat a 5-failure streak
    assert read_report(settings, D)["model"] == INFO


def test_rerun_is_deterministic_and_batches_do_not_change_results(settings, model):
    write_world(settings, D, features_frame(BASE))
    score(settings, D, model=model, model_info=INFO)
    first = scored(settings)
    score(settings.replace(score_batch_rows=14), D, model=model, model_info=INFO)  # one candidate per batch
    second = scored(settings)
    pd.testing.assert_frame_equal(first, second)
    assert read_report(settings, D)["batches"] == 5


def test_invalid_last_ranks_invalid_addresses_last(settings, model):
    feats = features_frame(BASE)
    feats.loc[feats.contact_id == "+5511900000004", "f_c_reach_30d"] = 9.0  # best score, but invalid
    write_world(settings, D, feats)
    score(settings.replace(invalid_policy="last", explore_share=0.0), D, model=model, model_info=INFO)
    p2 = scored(settings).query("person_id == 'p2'").set_index("contact_id")
    assert p2.loc["+5511900000004", "score"] > p2.loc["+5511900000003", "score"]
    assert p2.loc["+5511900000004", "rank"] == 2 and p2.loc["+5511900000003", "rank"] == 1


def test_a_number_answered_by_someone_else_since_its_last_reach_is_dropped(settings, model):
    rows = [
        ("p4", "+5511900000011", "voice", "no_answer", 4, 0.0, 1.0),  # wrong party after its reach
        ("p4", "+5511900000012", "voice", "right_party", 4, 1.0, 0.0),  # reached after a wrong party
        ("p4", "+5511900000013", "voice", "voicemail", 2, 0.0, 2.0),  # wrong party, never reached
        ("p4", "+5511900000014", "voice", "no_answer", 3, 0.0, 3.0),  # never a wrong party
        ("p4", "+5511900000015", "voice", "right_party", 3, 1.0, 0.0),  # both on the same day
        ("p5", "+5511900000016", "voice", "wrong_party", 1, 0.0, 1.0),  # the person's only address
    ]
    feats = features_frame(rows).assign(
        f_c_days_since_wrong_party=[3, 10, 5, None, 4, 0], f_c_days_since_reach=[10, 2, None, None, 4, None]
    )
    write_world(settings, D, feats)
    out = score(settings.replace(explore_share=0.0), D, model=model, model_info=INFO)
    assert set(scored(settings).contact_id) == {"+5511900000012", "+5511900000014", "+5511900000015"}
    assert out["addresses_wrong_party_dropped"] == 3 and out["persons_left_out_dead"] == 1

    score(settings.replace(explore_share=0.0, wrong_party_policy="keep"), D, model=model, model_info=INFO)
    assert set(scored(settings).contact_id) == set(feats.contact_id)


def test_inactive_and_unconsented_addresses_are_not_candidates(settings, model):
    feats = features_frame(BASE)
    state = feats[["person_id", "contact_id", "channel"]].assign(
        active=True, consent=pd.array([True] * len(feats), dtype="boolean")
    )
    state.loc[state.contact_id == "+5511900000001", "active"] = False
    state.loc[state.contact_id == "a@x.com", "consent"] = False
    state.loc[state.contact_id == "+5511900000005", "consent"] = pd.NA  # unknown consent: default true
    write_world(settings, D, feats, state)
    score(settings, D, model=model, model_info=INFO)
    assert set(scored(settings).contact_id) == {"+5511900000002", "+5511900000003", "+5511900000005"}


def test_suppressions_by_level_reason_and_effective_date(settings, model):
    rows = [
        *BASE,
        ("p4", "+5511900000006", "voice", "none", 0, 0.0, 0.0),
        ("p5", "+5511900000002", "voice", "none", 0, 0.0, 0.0),
    ]
    write_world(settings, D, features_frame(rows))
    write_suppressions(
        settings,
        D - timedelta(days=3),
        [
            ("p3", None, "do_not_call", D - timedelta(days=3)),  # person level
            (None, "+5511900000002", "opt_out", None),  # contact level: both holders of the address lose it
        ],
    )
    write_suppressions(
        settings,
        D,
        [
            ("p2", "+5511900000003", "deceased", D),  # deceased removes the person, not just the address
            ("p1", None, "legal", D + timedelta(days=2)),  # not yet in force for the file of D
            ("p4", None, "legal", D + timedelta(days=1)),  # in force on valid_from: applies
        ],
    )
    write_suppressions(
        settings, D + timedelta(days=1), [("p1", None, "legal", D)]
    )  # a later partition: ignored
    out = score(settings, D, model=model, model_info=INFO)
    df = scored(settings)
    assert set(df.person_id) == {"p1"}
    assert set(df.contact_id) == {"+5511900000001", "a@x.com"}
    assert out["persons_left_out_suppression"] == 4  # p2, p3, p4, p5
    assert out["addresses_suppressed"] == 6


def test_unreadable_suppressions_fail_closed_and_write_nothing(any_settings, model):
    settings = any_settings
    write_world(settings, D, features_frame(BASE))
    write_suppressions(settings, D - timedelta(days=1), [("p3", None, "legal", None)])
    overwrite(
        partition_dir(settings, "suppressions", D - timedelta(days=1)) / "part-0.parquet", b"not parquet"
    )
    with pytest.raises(FailClosed, match="suppressions"):
        score(settings, D, model=model, model_info=INFO)
    assert not partition_dir(settings, "scores", D).exists()


def test_suppressions_missing_a_column_fail_closed(any_settings, model):
    settings = any_settings
    write_world(settings, D, features_frame(BASE))
    write_partition(
        settings, "suppressions", D, pa.table({"person_id": pa.array(["p1"]), "reason": pa.array(["legal"])})
    )
    with pytest.raises(FailClosed, match="contact_id"):
        score(settings, D, model=model, model_info=INFO)
    assert not partition_dir(settings, "scores", D).exists()


def test_frequency_caps_leave_out_persons_and_addresses(settings, model):
    settings = settings.replace(cap_address_day=1)
    rows = [*BASE, ("p4", "+5511900000006", "voice", "none", 0, 0.0, 0.0)]
    write_world(settings, D, features_frame(rows))
    # p1: 7 attempts within the 7 days D-6..D -> over the person cap (7)
    for k in range(7):
        write_attempts(settings, D - timedelta(days=k), [("p1", "+5511900000002")])
    # p4: 6 attempts in the window + 3 older ones (D-7, outside the window) -> under the cap
    write_attempts(settings, D - timedelta(days=7), [("p4", "+5511900000006")] * 3)
    for k in range(1, 7):
        existing = read_partition(settings, "attempts", D - timedelta(days=k)).to_pandas()
        write_attempts(
            settings,
            D - timedelta(days=k),
            [*zip(existing.person_id, existing.contact_id, strict=True), ("p4", "+5511900000006")],
        )
    # p2's whatsapp address attempted on D: at the per-address daily cap (1) -> rests on D+1
    existing = read_partition(settings, "attempts", D).to_pandas()
    write_attempts(
        settings, D, [*zip(existing.person_id, existing.contact_id, strict=True), ("p2", "+5511900000003")]
    )
    out = score(settings, D, model=model, model_info=INFO)
    df = scored(settings)
    assert "p1" not in set(df.person_id)
    assert "+5511900000006" in set(df.contact_id)
    assert "+5511900000003" not in set(df.contact_id)
    # p2 had only the whatsapp address left (its sms is invalid, dropped): left out by cap too
    assert out["persons_left_out_cap"] == 2 and out["addresses_capped"] == 4
    assert set(df.person_id) == {"p3", "p4"}
    # caps off
    out = score(settings.replace(cap_person_7d=0, cap_address_day=0), D, model=model, model_info=INFO)
    assert out["persons_left_out_cap"] == 0 and out["candidates"] == 6


def test_channel_hours_are_respected(settings, model):
    write_world(settings, D, features_frame(BASE))
    s = settings.replace(channel_hours={"voice": [9, 11], "email": [20, 21]})
    score(s, D, model=model, model_info=INFO)
    df = scored(settings)
    assert df[df.channel == "voice"].best_hour.between(9, 11).all()
    assert df[df.channel == "email"].best_hour.between(20, 21).all()
    assert df[df.channel == "whatsapp"].best_hour.between(8, 21).all()


def test_the_allowed_hours_are_the_persons_own_when_their_zone_differs_from_the_recorded_clock(
    settings, model
):
    # p1 lives at -5 (timezone attribute) but its attempts were recorded at -3: its 8h-21h is the
    # recorded clock's 10h-23h, and the export says the hour in p1's own clock
    write_world(settings, D, features_frame(BASE))
    write_attempts(settings, D, [("p1", "+5511900000001"), ("p2", "+5511900000003")])
    persons = pa.table({"person_id": ["p1", "p2"], "timezone": ["America/Rio_Branco", "America/Sao_Paulo"]})
    write_partition(settings, "persons", D, persons)
    s = settings.replace(explore_share=0.0, channel_hours={"email": [20, 21]})
    score(s, D, model=model, model_info=INFO)
    df = scored(settings)
    own = df.person_id == "p1"
    assert df[own].best_hour.between(10, 23).all() and df[~own].best_hour.between(8, 21).all()
    assert df[own & (df.channel == "email")].best_hour.between(22, 23).all()
    publish(s, D)
    export = read_table(export_dir(s, D) / "priority.parquet").to_pandas()
    assert export.best_hour.between(8, 21).all()
    assert (export[export.person_id == "p1"].timezone == "America/Rio_Branco").all()
    assert export[(export.person_id == "p1") & (export.channel == "email")].best_hour.between(20, 21).all()


def test_missing_inputs_are_not_ready(settings, model):
    with pytest.raises(NotReady, match="features"):
        score(settings, D, model=model, model_info=INFO)


def test_no_candidates_writes_an_empty_partition(settings, model):
    write_world(settings, D, features_frame(BASE[:1]))
    write_suppressions(settings, D, [("p1", None, "erasure", None)])
    out = score(settings, D, model=model, model_info=INFO)
    assert out["rows"] == 0 and out["persons_left_out_suppression"] == 1
    assert read_partition(settings, "scores", D).num_rows == 0


def _mixed_frame(n: int = 500) -> pd.DataFrame:
    rng = np.random.default_rng(4)
    df = pd.DataFrame(
        {
            "f_c_reach_30d": rng.poisson(1.0, n).astype(float),
            "f_c_fail_streak": rng.poisson(2.0, n).astype(float),
            "f_c_age_days": rng.integers(0, 400, n).astype(float),
            "f_channel": rng.choice(["voice", "sms", "email", "whatsapp", "fax"], n).astype(
                object
            ),  # fax: unseen
            "f_hour": rng.integers(8, 22, n),
            "f_dow": rng.integers(0, 7, n),
        }
    )
    df.loc[::7, "f_channel"] = None
    df.loc[::5, "f_c_reach_30d"] = np.nan
    return df


def test_predictor_matches_predict_proba_with_a_calibrator(settings, model):
    from sklearn.isotonic import IsotonicRegression

    from contactrank.ml.predictor import Predictor, model_matrix

    df = _mixed_frame()
    raw = model.raw_score(df)
    cal = IsotonicRegression(out_of_bounds="clip").fit(raw, (raw > np.median(raw)).astype(float) * 0.8)
    calibrated = ContactModel(model.booster, model.features, model.categories, calibrator=cal)
    x = model_matrix(calibrated, calibrated.prepare(df))
    p = Predictor(settings, calibrated, 0, kind="lightgbm").proba(x)
    assert np.allclose(p, calibrated.predict_proba(df), atol=1e-12)


def test_compiled_predictor_agrees_with_lightgbm(settings, model):
    pytest.importorskip("lleaves")
    from contactrank.ml.predictor import Predictor, model_matrix

    x = model_matrix(model, model.prepare(_mixed_frame()))
    stock = Predictor(settings, model, 0, kind="lightgbm").proba(x)
    compiled = Predictor(settings, model, 0, kind="lleaves")
    assert compiled.kind == "lleaves"
    assert np.max(np.abs(compiled.proba(x) - stock)) < 1e-6
    again = Predictor(settings, model, 0, kind="lleaves")  # from the cache
    assert np.array_equal(again.proba(x), compiled.proba(x))
    assert len(list((settings.home / "tmp" / "lleaves").glob("*.o"))) == 1


class _Steps:
    """A stepwise calibrator (like isotonic regression): everything below 0.9 maps to 0.2."""

    def predict(self, raw):
        return np.where(np.asarray(raw) < 0.9, 0.2, 0.9)


def test_best_hour_and_rank_ties_of_a_stepwise_calibrator_are_broken_by_the_raw_output(settings, model):
    stepped = ContactModel(model.booster, model.features, model.categories, calibrator=_Steps())
    write_world(settings, D, features_frame(BASE))
    score(settings.replace(explore_share=0.0), D, model=stepped, model_info=INFO)
    df = scored(settings)
    assert (df.score == 0.2).all()
    valid_from = D + timedelta(days=1)
    feats = features_frame(BASE).set_index("contact_id")
    for _, row in df.iterrows():
        one = feats.loc[[row.contact_id]].reset_index()
        raw = [model.raw_score(add_context(one, day=valid_from, hour=h))[0] for h in range(8, 22)]
        raw = smooth_hours(np.array([raw]))[0]
        assert row.best_hour == 8 + int(np.argmax(raw)) and row["_raw"] == pytest.approx(max(raw))
    p1 = df[df.person_id == "p1"].sort_values("rank")
    assert list(p1["_raw"]) == sorted(p1["_raw"], reverse=True)


def test_a_home_path_with_a_quote_works(tmp_path, model):
    from contactrank.settings import load_settings

    s = load_settings(home=tmp_path / "it's home", cap_address_day=1)
    write_world(s, D, features_frame(BASE))
    write_attempts(s, D, [("p3", "+5511900000005")])
    out = score(s, D, model=model, model_info=INFO)
    assert out["addresses_capped"] == 1 and out["candidates"] == 4


def test_reason_codes_from_pred_contrib_agree_with_the_path_attribution_on_the_top_code(settings, model):
    """``reason_method = "shap"`` takes the codes from LightGBM ``pred_contrib`` (exact TreeSHAP)."""
    write_world(settings, D, features_frame(BASE))
    score(settings.replace(explore_share=0.0), D, model=model, model_info=INFO)
    path = scored(settings).set_index("contact_id").reason
    score(settings.replace(explore_share=0.0, reason_method="shap"), D, model=model, model_info=INFO)
    shap = scored(settings).set_index("contact_id").reason
    assert shap.index.equals(path.index) and shap.str.len().gt(0).all()
    # both attributions must name the same leading reason for most rows
    same = (shap.str.split(";").str[0] == path.str.split(";").str[0]).mean()
    assert same >= 0.6, (shap.to_dict(), path.to_dict())


def test_less_tried_hours_are_the_allowed_hours_of_thin_buckets(settings):
    from contactrank.ml.score import _less_tried_hour

    hours = np.arange(8, 22)
    df = pd.DataFrame(
        {
            "person_id": ["p1", "p2", "p3"],
            # p1 tried a lot in the mornings only; p2 everywhere; p3 never
            "f_p_attempt_hour_morning": [9, 9, 0],
            "f_p_attempt_hour_midday": [0, 9, 0],
            "f_p_attempt_hour_afternoon": [0, 9, 0],
            "f_p_attempt_hour_evening": [1, 9, 0],
            "f_p_attempt_hour_night": [0, 0, 0],
        }
    )
    allowed = np.ones((3, len(hours)), dtype=bool)
    best = np.array([1, 11, 11])  # 9h, 19h, 19h
    k, alt = _less_tried_hour(settings, date(2026, 1, 5), df, allowed, best, hours)
    assert k.tolist() == [10, 0, 13]  # p1: 12h-21h; p2: none; p3: every hour but its best
    assert hours[alt[0]] >= 12 and alt[1] == best[1] and alt[2] != best[2]
    again = _less_tried_hour(settings, date(2026, 1, 5), df.iloc[::-1].reset_index(drop=True), allowed[::-1],
                             best[::-1], hours)  # fmt: skip
    assert again[1][::-1].tolist() == alt.tolist()  # the draw is the person's, whatever the row order


def test_smooth_hours_averages_allowed_neighbours_only():
    ninf = -np.inf
    raws = np.array([[1.0, 4.0, 1.0, ninf, 3.0], [ninf, ninf, 2.0, 8.0, ninf]])
    out = smooth_hours(raws)
    np.testing.assert_allclose(out[0], [2.5, 2.0, 2.5, ninf, 3.0])
    np.testing.assert_allclose(out[1], [ninf, ninf, 5.0, 5.0, ninf])


def with_hour_inputs(df: pd.DataFrame, morning_people: set[str]) -> pd.DataFrame:
    """The stored personal-hour inputs: flat for everyone, a morning habit for ``morning_people``."""
    from contactrank.features.context import CONTEXT_INPUTS

    out = df.copy()
    for c in CONTEXT_INPUTS:
        out[c] = 0.2 if c.startswith(("f_g_", "f_p_hour_profile_")) else 0.0
    morning = out["person_id"].isin(morning_people)
    out.loc[morning, "f_p_hour_profile_morning"] = 0.5
    out.loc[morning, "f_p_attempt_hour_morning"] = 3.0
    out.loc[morning, "f_p_reach_hour_morning"] = 2.0
    return out


def test_the_persons_habit_profile_picks_the_hour_the_model_does_not_know(settings, model):
    """The model peaks at 19h for everyone; p1's habit profile says mornings: p1 is recommended the
    middle of the morning, while the others (a flat profile) keep the model's evening."""
    write_world(settings, D, with_hour_inputs(features_frame(BASE), {"p1"}))
    score(settings.replace(explore_share=0.0), D, model=model, model_info=INFO)
    df = scored(settings)
    assert df[df.person_id == "p1"].best_hour.eq(9).all()
    assert df[df.person_id != "p1"].best_hour.between(18, 21).all()
    by_model = score_again(settings.replace(explore_share=0.0, hour_choice="model"), model)
    assert by_model.best_hour.between(18, 21).all()  # the model alone follows its own peak


def score_again(settings, model) -> pd.DataFrame:
    score(settings, D, model=model, model_info=INFO)
    return scored(settings)


def test_reason_codes_are_those_of_each_candidate_at_its_best_hour(settings, model):
    # Hours allowed to some channels only: the candidates of an hour are a subset of the batch.
    from contactrank.ml import reasons
    from contactrank.ml.predictor import model_matrix
    from contactrank.ml.score import score_frame

    df = _mixed_frame(300)
    df["channel"] = df["f_channel"].where(df["f_channel"].isin(["voice", "sms", "email"]), "voice")
    df["person_id"] = [f"p{i}" for i in range(len(df))]
    df["contact_id"] = [f"c{i}" for i in range(len(df))]
    df["last_outcome"] = None
    df["n_attempts"] = 0
    narrow = settings.replace(channel_hours={"sms": [10, 14], "email": [15, 21]}, explore_share=0.0)
    out = score_frame(narrow, D, model, df)
    explainer = reasons.PathExplainer(model)
    for i in range(0, len(df), 7):
        row = df.iloc[[i]].reset_index(drop=True)
        x = model_matrix(
            model, model.prepare(add_context(row, day=D + timedelta(days=1), hour=int(out.best_hour[i])))
        )
        assert out.reason[i] == reasons.codes(explainer.contributions_matrix(x), [int(out.best_hour[i])])[0]
    sms = out[df["channel"] == "sms"]
    assert (
        sms.best_hour.between(10, 14).all() and out[df["channel"] == "email"].best_hour.between(15, 21).all()
    )
