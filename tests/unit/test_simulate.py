"""Simulator: deterministic for a seed, sane outcome mix, churn, ground truth in [0, 1].

The ground truth explains the outcomes.
"""

from __future__ import annotations

import hashlib
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from contactrank.features.landing_files import read_landing_file
from contactrank.features.schema import CHANNELS, OUTCOMES, REACH_OUTCOMES
from contactrank.features.simulate import simulate

START = date(2026, 1, 1)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _read_kind(root: Path, kind: str):
    import pyarrow as pa

    tables = []
    for p in sorted((root / kind).glob("date=*/part-0.*")):
        t = pq.read_table(p) if p.suffix == ".parquet" else read_landing_file(p)[0]  # CSV: all strings
        tables.append(t.append_column("date", pa.array([p.parent.name[5:]] * t.num_rows)))
    return pa.concat_tables(tables, promote_options="permissive")


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("sim")
    return root, simulate(root, START, days=20, persons=3000, seed=7)


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a = simulate(tmp_path / "a", START, days=3, persons=500, seed=1)
    b = simulate(tmp_path / "b", START, days=3, persons=500, seed=1)
    c = simulate(tmp_path / "c", START, days=3, persons=500, seed=2)
    assert c["attempts"] != a["attempts"] or c["outcome_mix"] != a["outcome_mix"]
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    assert _digest(tmp_path / "a") != _digest(tmp_path / "c")
    assert {k: v for k, v in a.items() if k not in ("seconds", "landing")} == {
        k: v for k, v in b.items() if k not in ("seconds", "landing")
    }


def test_landing_layout_and_volume(world):
    root, out = world
    for kind in ("attempts", "contacts"):
        assert sorted(p.name for p in (root / kind).iterdir())[0] == "date=2026-01-01"
    assert len(list((root / "attempts").glob("date=*/part-0.csv"))) == 20
    assert [p.parent.name for p in (root / "persons").glob("date=*/part-0.csv")] == ["date=2026-01-01"]
    per_day = out["attempts"] / 20 / out["persons"]
    assert 0.1 <= per_day <= 0.45  # 10-15% of persons a day, 1-3 attempts each
    att = _read_kind(root, "attempts")
    assert att.num_rows == out["attempts"]
    assert set(att["channel"].to_pylist()) == set(CHANNELS)
    first = (root / "attempts" / "date=2026-01-01" / "part-0.csv").read_text().splitlines()[1]
    assert '"2026-01-01T08:' in first and '-03:00"' in first
    persons = _read_kind(root, "persons")
    assert {"person_id", "updated_at", "age_band", "region", "segment", "balance"} <= set(
        persons.column_names
    )
    assert persons.num_rows == out["persons"]


def test_outcome_mix_is_plausible(world):
    _, out = world
    mix = out["outcome_mix"]
    assert set(mix) == set(OUTCOMES) and abs(sum(mix.values()) - 1) < 1e-3
    assert all(mix[o] > 0 for o in OUTCOMES)
    assert 0.08 < out["reach_rate"] < 0.4
    assert 0.02 < mix["invalid"] < 0.3 and 0.005 < mix["wrong_party"] < 0.1
    assert mix["converted"] < mix["right_party"] and mix["opt_out"] < 0.02


def test_churn_new_addresses_and_suppressions(world):
    root, out = world
    assert out["died"] > 0 and out["reassigned"] > 0 and out["new_addresses"] > 0 and out["deactivated"] > 0
    contacts = _read_kind(root, "contacts")
    later = contacts.filter(pc.not_equal(contacts["date"], "2026-01-01"))
    sources = set(later.filter(pc.equal(later["active"], "true"))["source"].to_pylist())
    assert sources == {"enrichment"}
    assert "false" in later["active"].to_pylist()  # deactivations arrive as active=false upserts
    supp = _read_kind(root, "suppressions")
    assert set(supp["reason"].to_pylist()) <= {"deceased", "do_not_call"}
    assert out["deceased"] + out["do_not_call"] == supp.num_rows


def test_truth_is_a_probability_and_explains_outcomes(world):
    root, out = world
    truth = pq.read_table(root / "truth.parquet")
    p = truth["p_reach"].to_numpy()
    assert ((p >= 0) & (p <= 1)).all()
    assert set(truth["hour"].to_pylist()) == set(range(24))
    # the hour matters: each address's best hour beats its worst by a clear margin on average
    df = truth.to_pandas()
    live = df[df["p_reach"] > 0]
    spread = live.groupby("contact_id")["p_reach"].agg(lambda s: s.max() - s.min())
    assert spread.mean() > 0.05
    assert (df.loc[df["status"] != "valid", "p_reach"] == 0).all()

    ta = pq.read_table(root / "truth_attempts.parquet")
    att = _read_kind(root, "attempts")
    assert ta["attempt_id"].to_pylist() == att["attempt_id"].to_pylist()
    pr, pconv = ta["p_reach"].to_numpy(), ta["p_conversion"].to_numpy()
    assert ((pr >= 0) & (pr <= 1) & (pconv >= 0) & (pconv <= pr + 1e-12)).all()
    reached = np.isin(np.array(att["outcome"].to_pylist()), list(REACH_OUTCOMES))
    # calibrated: the mean true probability matches the observed reach rate
    assert abs(pr.mean() - reached.mean()) < 0.02
    # informative: AUC of the oracle well above chance
    from sklearn.metrics import roc_auc_score

    assert roc_auc_score(reached, pr) > 0.8


def test_truth_carries_the_fatigue_of_a_try_the_day_before(tmp_path, monkeypatch):
    """The truth is for the next day's first try: an address tried on the last simulated day is
    tired on it (the simulator draws such a try with FATIGUE_YESTERDAY), the others are not."""
    import contactrank.features.simulate as sim
    from contactrank.features.simulated_world import FATIGUE_YESTERDAY

    seen = {}
    real = sim.write_truth

    def keep(landing, w, person_ids, day, t):
        seen.update(w=w, t=t, day=day)
        real(landing, w, person_ids, day, t)

    monkeypatch.setattr(sim, "write_truth", keep)
    simulate(tmp_path, START, days=4, persons=400, seed=3)
    w, t, day = seen["w"], seen["t"], seen["day"]
    assert t == 4
    df = pq.read_table(tmp_path / "truth.parquet").to_pandas()
    index = {c: i for i, c in enumerate(w.ids().to_pylist())}
    a = df["contact_id"].map(index).to_numpy()
    tired = w.a_last_attempt[a] == t - 1
    assert 0 < tired.sum() < len(df)
    dow = np.full(len(df), day.weekday())
    hour = df["hour"].to_numpy().astype(np.int64)
    fresh = w.p_reach(a, hour, dow)
    expected = np.where(tired, w.p_reach(a, hour, dow, FATIGUE_YESTERDAY), fresh)
    np.testing.assert_allclose(df["p_reach"].to_numpy(), expected)
    live = fresh > 0
    assert (df["p_reach"].to_numpy()[tired & live] < fresh[tired & live]).all()


def test_parquet_format_and_bad_arguments(tmp_path):
    out = simulate(tmp_path, START, days=2, persons=300, seed=3, fmt="parquet")
    t = pq.read_table(next((tmp_path / "attempts").glob("date=2026-01-01/part-0.parquet")))
    assert str(t.schema.field("attempted_at").type) == "timestamp[us, tz=UTC]"
    assert out["attempts"] > 0
    with pytest.raises(ValueError):
        simulate(tmp_path, START, days=2, persons=10, fmt="xml")
