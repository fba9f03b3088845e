"""The daily report on tiny hand-built lakes: every panel drawn when its inputs exist, a notice when not."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from contactrank.features import lake
from contactrank.features.schema import ATTEMPTS, CHANNELS, OUTCOMES, REACH_OUTCOMES
from contactrank.ml.model import ContactModel, categorical_columns, feature_columns, freeze_categories
from contactrank.settings import Settings

D = date(2026, 3, 20)
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# --------------------------------------------------------------------------------------------
# a tiny world, written with the lake's own writer (also loaded by the browser test)


def _attempts(rng: np.random.Generator, d: date, n: int) -> pd.DataFrame:
    channel = rng.choice(CHANNELS, n)
    hour = rng.integers(7, 22, n)
    # reach is likelier in the evening and on voice, so the hour chart has a shape to show
    p = 0.15 + 0.2 * (hour >= 18) + 0.1 * (channel == "voice")
    reached = rng.random(n) < p
    fail = rng.choice([o for o in OUTCOMES if o not in REACH_OUTCOMES], n)
    win = rng.choice(sorted(REACH_OUTCOMES), n, p=[0.15, 0.8, 0.05])
    at = [datetime(d.year, d.month, d.day, int(h), tzinfo=UTC) for h in hour]
    return pd.DataFrame(
        {
            "attempt_id": [f"a{d:%m%d}-{i}" for i in range(n)],
            "person_id": [f"p{i % 80}" for i in range(n)],
            "contact_id": [f"c{i % 160}" for i in range(n)],
            "channel": channel,
            "attempted_at": at,
            "local_hour": hour.astype("int8"),
            "outcome": np.where(reached, win, fail),
            "campaign_id": "camp",
            "duration_s": np.where(reached, 60.0, 0.0),
        }
    )


def _training(rng: np.random.Generator, d: date, n: int, shift: float = 0.0) -> pd.DataFrame:
    since_reach = np.where(rng.random(n) < 0.4, np.nan, rng.integers(0, 60, n).astype(float))
    rate = np.clip(rng.beta(2, 5, n) + shift, 0, 1)
    channel = rng.choice(CHANNELS, n)
    hour = rng.integers(8, 22, n)
    logit = (
        -1.5 + 3.0 * rate + np.where(np.isnan(since_reach), -0.5, 1.0 - since_reach / 30) + 0.6 * (hour >= 18)
    )
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype("int8")
    return pd.DataFrame(
        {
            "attempt_id": [f"a{d:%m%d}-{i}" for i in range(n)],
            "person_id": [f"p{i % 80}" for i in range(n)],
            "contact_id": [f"c{i % 160}" for i in range(n)],
            "channel": channel,
            "date": d,
            "label_reach": y,
            "label_conversion": (y * (rng.random(n) < 0.3)).astype("int8"),
            "f_c_days_since_reach": since_reach,
            "f_c_reach_rate_hl30": rate,
            "f_c_attempts_30d": rng.poisson(3 + 4 * shift, n).astype(float),
            "f_channel": channel,
            "f_source": rng.choice(["customer", "bureau"], n),
            "f_hour": hour,
            "f_dow": d.weekday(),
            "f_dom": d.day,
            "f_month": d.month,
            "_true_p": 1 / (1 + np.exp(-logit)),
        }
    )


def fit_model(df: pd.DataFrame) -> ContactModel:
    """A real (tiny) LightGBM model of the contract's shape: categories as codes of the frozen lists."""
    feats = feature_columns(df)
    cats = freeze_categories(df, categorical_columns(df, feats))
    matrix = np.column_stack(
        [
            pd.Categorical(df[c].astype("string"), categories=cats[c]).codes.astype("float64")
            if c in cats
            else pd.to_numeric(df[c], errors="coerce").to_numpy(dtype="float64", na_value=np.nan)
            for c in feats
        ]
    )
    params = {
        "objective": "binary",
        "num_leaves": 7,
        "learning_rate": 0.1,
        "verbose": -1,
        "num_threads": 1,
        "seed": 1,
    }
    data = lgb.Dataset(
        matrix,
        label=df["label_reach"],
        feature_name=feats,
        categorical_feature=[feats.index(c) for c in cats],
    )
    return ContactModel(booster=lgb.train(params, data, num_boost_round=30), features=feats, categories=cats)


def build_lake(
    settings: Settings, d: date = D, days: int = 12, train_days: int = 6, export: bool = True
) -> dict:
    """Attempts, quarantine, contacts, training partitions, truth and (optionally) an export of ``d``."""
    rng = np.random.default_rng(7)
    truth = []
    training = []
    for k in range(days):
        t = d - timedelta(days=days - 1 - k)
        lake.write_partition(
            settings, "attempts", t, pa.Table.from_pandas(_attempts(rng, t, 240), schema=ATTEMPTS)
        )
        if k % 3 == 0 or t == d:
            bad = pd.DataFrame(
                {
                    "attempt_id": [f"x{k}-{i}" for i in range(6)],
                    "_source_file": "attempts.csv",
                    "_row_number": np.arange(6),
                    "_column": ["channel", "channel", "outcome", "attempted_at", "channel", "outcome"],
                    "_reason": [
                        "channel 'fax' not in vocabulary",
                        "channel 'pager' not in vocabulary",
                        "outcome 'maybe' not in vocabulary",
                        "attempted_at missing",
                        "channel 'telex' not in vocabulary",
                        "outcome 'x' not in vocabulary",
                    ],
                }
            )
            lake.write_partition(settings, "quarantine/attempts", t, bad)
        if k >= days - train_days:
            df = _training(rng, t, 400, shift=0.25 if t == d else 0.0)
            truth.append(df[["attempt_id", "_true_p"]].rename(columns={"_true_p": "p_reach"}))
            training.append(df)
            lake.write_partition(settings, "training", t, df.drop(columns=["_true_p"]))
    contacts = pd.DataFrame(
        {"person_id": ["p1", "p2"], "contact_id": ["c1", "c2"], "channel": ["voice", "sms"]}
    )
    lake.write_partition(settings, "contacts", d, contacts)
    report_json = {  # the shape features.ingest writes
        "date": d.isoformat(),
        "kinds": {
            "attempts": {
                "files": 1,
                "read": 246,
                "kept": 240,
                "quarantined": 6,
                "deduped": 0,
                "unreadable_files": [],
            },
            "contacts": {
                "files": 1,
                "read": 2,
                "kept": 2,
                "quarantined": 0,
                "deduped": 0,
                "unreadable_files": [],
            },
        },
        "quarantined": 6,
        "quarantined_share": 6 / 248,
        "threshold": 0.05,
        "top_reason": "bad_channel",
    }
    (lake.partition_dir(settings, "attempts", d) / "_ingest_report.json").write_text(json.dumps(report_json))
    t = pd.concat(truth, ignore_index=True)
    t["p_conversion"] = t["p_reach"] * 0.3
    settings.landing.mkdir(parents=True, exist_ok=True)
    t.to_parquet(settings.landing / "truth_attempts.parquet")
    model = fit_model(pd.concat(training[:-1] or training, ignore_index=True).drop(columns=["_true_p"]))
    if export:
        write_export(settings, d, rng)
    return {"model": model}


def write_export(
    settings: Settings, d: date, rng: np.random.Generator | None = None, version: str = "3"
) -> Path:
    rng = rng or np.random.default_rng(3)
    n = 300
    person = [f"p{i // 3}" for i in range(n)]
    rank = [i % 3 + 1 for i in range(n)]
    explore = rng.random(n) < 0.06
    df = pd.DataFrame(
        {
            "person_id": person,
            "contact_id": [f"c{i}" for i in range(n)],
            "channel": rng.choice(CHANNELS, n),
            "rank": np.array(rank, dtype="int64"),
            "score": rng.beta(2, 6, n),
            "best_hour": rng.integers(8, 22, n),
            "reason": np.where(explore, "explore", "recent_success"),
            "explore": explore,
            "propensity": np.where(np.array(rank) == 1, rng.uniform(0.05, 0.97, n), 0.0),
            "model_version": version,
        }
    )
    target = settings.exports / "priority" / f"date={d.isoformat()}"
    with lake.atomic_dir(target) as staging:
        df.to_parquet(staging / "priority.parquet", index=False)
        manifest = {  # the shape ml.publish writes
            "date": d.isoformat(),
            "valid_from": (d + timedelta(days=1)).isoformat(),
            "model": {"name": "contactrank", "version": version, "run_id": "r"},
            "rows": n,
            "persons": n // 3,
            "persons_left_out": {"cap": 12, "suppression": 4},
            "addresses_left_out": {"cap": 20, "suppression": 9, "invalid": 2},
        }
        (staging / "_manifest.json").write_text(json.dumps(manifest))
        (staging / "_SUCCESS").write_text("")
    return target


def use_champion(monkeypatch: pytest.MonkeyPatch, model: ContactModel, version: str = "3") -> None:
    """Stand-in for the registry until a test registers a real champion (the model itself is real)."""
    from contactrank.ml.report_inputs import ReportInputs

    monkeypatch.setattr(ReportInputs, "_champion", lambda self: (model, {"version": version, "run_id": "r"}))


# --------------------------------------------------------------------------------------------
# tests


def _panels(path: Path) -> dict:
    return json.loads((path.parent / "panels.json").read_text())


def _images(page: str) -> list[bytes]:
    import base64

    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]


def test_all_inputs_missing_gives_a_report_that_says_so(settings: Settings) -> None:
    from contactrank.ml.report import PANELS, report

    path = report(settings, D)

    assert path == settings.exports / "reports" / f"date={D}" / "report.html"
    page = path.read_text()
    summary = _panels(path)
    assert {k for k, *_ in PANELS} == set(summary["panels"])
    assert all(p["status"] == "missing" for p in summary["panels"].values()), summary["panels"]
    assert page.count("Not available:") == len(PANELS)
    assert "no model yet" in page and "nothing published" in page
    assert _images(page) == []
    assert not (settings.home / "mlflow.db").exists()  # looking for a model must not create a store


def test_full_lake_draws_every_panel(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from contactrank.ml.report import PANELS, report

    world = build_lake(settings)
    use_champion(monkeypatch, world["model"])

    path = report(settings, D)

    page = path.read_text()
    summary = _panels(path)
    assert {k: v["status"] for k, v in summary["panels"].items()} == {k: "ok" for k, *_ in PANELS}
    images = _images(page)
    assert len(images) == len(PANELS)
    assert all(img.startswith(PNG_MAGIC) and len(img) > 5_000 for img in images)
    header = summary["header"]
    assert header["Model version"] == "3"
    assert header["Rows published"] == "300 rows for 100 persons"
    assert header["Left out by caps and suppressions"] == (
        "persons: cap 12, suppression 4; addresses: cap 20, suppression 9, invalid 2"
    )
    # the baselines are all there and the oracle beats random
    gains = re.search(r'<section id="gains".*?</section>', page, re.S).group(0)
    for name in ("random", "model", "last success", "oracle"):
        assert f"<td>{name}</td>" in gains
    oracle_auc = float(re.search(r"<td>oracle</td><td>AUC ([0-9.]+)", gains).group(1))
    assert oracle_auc > 0.6
    # the newest day was shifted on purpose: the shifted features lead the drift chart
    drift = re.search(r'<section id="drift".*?</section>', page, re.S).group(0)
    assert re.search(r'<table class="facts"><tr><td>f_c_reach_rate_hl30</td>', drift)
    assert "<td>f_dom</td>" not in drift and "<td>f_hour</td>" not in drift
    # quarantine reasons are grouped by kind of problem, not by offending value
    quarantine = re.search(r'<section id="quarantine".*?</section>', page, re.S).group(0)
    assert (
        "<td>ingest attempts</td><td>files 1, read 246, kept 240, quarantined 6, deduped 0</td>" in quarantine
    )
    assert "2.42% (threshold 5%), top reason bad_channel" in quarantine
    assert "attempts: channel … not in vocabulary (channel)" in quarantine
    assert "external" not in page and "<script" not in page  # self-contained, no script


def test_report_is_idempotent_and_atomic(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from contactrank.ml.report import report

    world = build_lake(settings, days=4, train_days=2)
    use_champion(monkeypatch, world["model"])
    first = report(settings, D).read_text()
    second_path = report(settings, D)
    second = second_path.read_text()

    strip = lambda s: re.sub(r"Generated [^ ]+ by", "", s)  # noqa: E731
    assert strip(first) == strip(second)
    siblings = sorted(p.name for p in second_path.parent.parent.iterdir())
    assert siblings == [f"date={D}"]  # no staging or old copies left behind


def test_missing_model_only_affects_model_panels(settings: Settings) -> None:
    from contactrank.ml.report import report

    build_lake(settings, days=5, train_days=3)
    summary = _panels(report(settings, D))
    status = {k: v["status"] for k, v in summary["panels"].items()}

    assert status["outcome_mix"] == status["quarantine"] == status["reach_by_hour"] == "ok"
    assert status["drift"] == "ok"  # drift needs no model
    assert status["exploration"] == "ok"
    assert status["scores"] == "ok"  # today's scores alone; the window needs the model
    assert status["calibration"] == status["gains"] == "missing"
    assert "no model" in summary["panels"]["calibration"]["reason"]


def test_single_labelled_day_and_no_truth(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from contactrank.ml.report import report

    world = build_lake(settings, days=3, train_days=1, export=False)
    (settings.landing / "truth_attempts.parquet").unlink()
    use_champion(monkeypatch, world["model"])
    path = report(settings, D)
    summary = _panels(path)
    status = {k: v["status"] for k, v in summary["panels"].items()}

    assert status["drift"] == "missing" and "only one labelled day" in summary["panels"]["drift"]["reason"]
    assert status["scores"] == status["exploration"] == "missing"
    assert status["gains"] == "ok" and "No oracle" in path.read_text()
    assert summary["header"]["Model version"] == "3 (champion; nothing published)"


def test_a_broken_panel_is_shown_not_raised(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    from contactrank.ml import report as report_mod

    build_lake(settings, days=3, train_days=2)

    def boom(inp, p):
        raise RuntimeError("disk on fire\nsecond line")

    panels = tuple((k, t, boom if k == "outcome_mix" else b) for k, t, b in report_mod.PANELS)
    monkeypatch.setattr(report_mod, "PANELS", panels)
    path = report_mod.report(settings, D)

    assert _panels(path)["panels"]["outcome_mix"] == {
        "status": "error",
        "reason": "RuntimeError: disk on fire",
    }
    assert "Could not be drawn: RuntimeError: disk on fire" in path.read_text()
    assert _panels(path)["panels"]["reach_by_hour"]["status"] == "ok"


def test_history_window_ignores_days_after_the_report_date(settings: Settings) -> None:
    from contactrank.ml.report import report

    build_lake(settings, d=D + timedelta(days=5), days=8, train_days=1, export=False)
    page = report(settings, D).read_text()

    # attempts of D-2..D exist (3 days of the 8 written) and nothing later is counted
    assert "3 days, 720 attempts" in page


@pytest.mark.slow
def test_real_registry_gate_decision_and_mlflow_artifact(settings: Settings) -> None:
    """Train and gate through ml.train / ml.registry, promote by hand, and report on the real store."""
    from contactrank.ml.registry import gate, promote
    from contactrank.ml.report import PANELS, report
    from contactrank.ml.tracking import client as mlflow_client
    from contactrank.ml.train import train

    s = settings.replace(min_train_days=3, valid_days=1, num_boost_round=30)
    build_lake(s, days=10, train_days=7, export=False)
    trained = train(s, D, force=True)
    decision = gate(s, D)
    if decision["decision"] != "promoted":
        promote(s, trained["version"])
    write_export(s, D, version=str(trained["version"]))

    path = report(s, D)

    summary = _panels(path)
    assert {k: v["status"] for k, v in summary["panels"].items()} == {k: "ok" for k, *_ in PANELS}
    assert summary["header"]["Model version"] == str(trained["version"])
    assert f"<td>model</td><td>v{trained['version']} (published with this day)</td>" in path.read_text()
    gate_text = summary["header"]["Gate decision"]
    assert gate_text.startswith(f"{decision['decision']} (run train-{D}, against champion none)")
    if decision["decision"] == "rejected":
        assert "failed: " in gate_text
    elif decision["decision"] == "promoted":  # a passed decision shows the interval it rests on too
        assert "checks passed; auc " in gate_text and " vs floor " in gate_text and "] at " in gate_text
    client = mlflow_client(s)
    logged = [a.path for a in client.list_artifacts(trained["run_id"], f"report/date={D}")]
    assert logged == [f"report/date={D}/report.html"]

    # a re-run for an earlier, unpublished day does not borrow the later champion
    earlier = _panels(report(s, D - timedelta(days=1)))
    assert earlier["panels"]["calibration"]["status"] == "missing"
    assert f"was trained on {D}" in earlier["panels"]["calibration"]["reason"]
    assert earlier["header"]["Gate decision"] == "no training or gate on this day"


def test_a_promotion_in_the_header_shows_the_intervals_it_rests_on(settings: Settings) -> None:
    from types import SimpleNamespace

    from contactrank.ml import gate
    from contactrank.ml.registry import TAG_REASON
    from contactrank.ml.report import _gate_text
    from contactrank.ml.report_inputs import RunsOfDay
    from contactrank.ml.train_logging import TAG_DECISION

    # a challenger that ranks clearly better than the champion on 4,000 rows: promoted
    rng = np.random.default_rng(3)
    logit = rng.normal(-1.0, 1.2, 4000)
    y = (rng.random(4000) < 1 / (1 + np.exp(-logit))).astype(int)
    challenger = 1 / (1 + np.exp(-(logit + rng.normal(0, 0.3, 4000))))
    champion = 1 / (1 + np.exp(-(logit + rng.normal(0, 1.5, 4000))))
    evidence = gate.compare(settings, y, challenger, champion, np.full(4000, "voice"), "d")
    decision, reasons = gate.decide(settings, evidence)
    assert decision == gate.PROMOTED, reasons
    tags = {TAG_DECISION: decision, **{f"{TAG_REASON}{i:02d}": r for i, r in enumerate(reasons)}}
    info = SimpleNamespace(run_name="train-x", run_id="x")
    run = SimpleNamespace(data=SimpleNamespace(tags=tags), info=info)

    text = _gate_text(SimpleNamespace(runs=lambda: RunsOfDay(gated=run)))

    passed = f"promoted (run train-x, against champion none) — all {len(reasons)} checks passed; "
    assert text.startswith(passed)
    assert " vs floor " in text and " vs champion " in text and "difference +" in text
