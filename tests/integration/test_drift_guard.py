"""Drift guard end to end: a shift in the held-out recent days is reported; it blocks a challenger
that is not better on those rows, and the champion keeps scoring."""

from __future__ import annotations

from datetime import date, timedelta

from helpers.synth_training import write_days

from contactrank.ml import registry
from contactrank.ml.train import train
from contactrank.settings import Settings

D = date(2026, 5, 30)


def test_label_rate_shift_blocks_a_challenger_not_better_and_logs_the_figures(settings: Settings) -> None:
    s = settings.replace(drift_min_history_days=5)
    write_days(s, D, 10)
    first = train(s, D)
    assert registry.gate(s, D)["status"] == "promoted"
    assert first["drift"]["blocked"] is False  # stable synthetic days

    nxt = D + timedelta(days=1)
    write_days(s, nxt, 1, intercepts={nxt: 0.6}, seed=8)  # the newest day's reach rate jumps ~4x
    shifted = train(s, nxt)
    assert shifted["drift"]["blocked"] is True
    assert any("label rate" in r for r in shifted["drift"]["reasons"])
    assert shifted["metrics"]["drift_label_rate_ratio"] > 2.0

    # the challenger never saw the shifted day either (it is held out): not better there, blocked
    g = registry.gate(s, nxt)
    assert g["status"] == "rejected" and g["champion"] == first["version"]
    assert any(r.startswith("fail: drift: label rate") for r in g["reasons"])
    # the figures are on the run for the MLflow UI
    from contactrank.ml.tracking import client

    run = client(s).get_run(shifted["run_id"]).data
    # flat names, or grouped ones where metrics are logged so
    assert run.metrics.get("drift_label_rate_ratio", run.metrics.get("drift/label_rate_ratio")) > 2.0
    assert run.tags["contactrank.drift.blocked"] == "true"
    # scoring keeps using the champion
    assert registry.load_champion(s)[1]["version"] == first["version"]


def test_young_history_is_measured_but_not_enforced(settings: Settings) -> None:
    write_days(settings, D, 10)
    train(settings, D)
    registry.gate(settings, D)
    nxt = D + timedelta(days=1)
    write_days(settings, nxt, 1, intercepts={nxt: 0.6}, seed=8)
    out = train(settings, nxt)  # 10 days < drift_min_history_days (21)
    assert out["drift"]["blocked"] is False
    assert out["drift"]["reasons"] and out["drift"]["reasons"][0].startswith("not enforced")
