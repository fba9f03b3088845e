"""Simulator knobs (WorldSpec presets) and the closed-loop mode.

The project's own world must not move: ``world=None`` and ``WorldSpec()`` give the same files.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from contactrank.features.simulate import simulate
from contactrank.features.simulated_world import WORLDS, WorldSpec, world_spec

START = date(2026, 3, 2)  # a Monday


def _digest(root: Path, kind: str | None = None) -> dict[str, str]:
    base = root / kind if kind else root
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(base.rglob("*"))
        if p.is_file()
    }


def _attempts(root: Path):
    return pa.concat_tables(pq.read_table(p) for p in sorted((root / "attempts").glob("date=*/*.parquet")))


def test_default_spec_is_the_projects_world(tmp_path):
    simulate(tmp_path / "a", START, 3, persons=400, seed=5)
    simulate(tmp_path / "b", START, 3, persons=400, seed=5, world=WorldSpec())
    simulate(tmp_path / "c", START, 3, persons=400, seed=5, world="default")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") == _digest(tmp_path / "c")


def test_presets_and_bad_names():
    assert set(WORLDS) >= {"default", "habits", "office_hours_incumbent", "timezones"}
    assert world_spec("habits", call_share=0.2).call_share == 0.2
    with pytest.raises(ValueError):
        world_spec("nowhere")
    with pytest.raises(ValueError):
        WorldSpec(incumbent_hours="night")


@pytest.mark.parametrize("name", ["habits", "office_hours_incumbent", "timezones"])
def test_each_preset_makes_a_world(tmp_path, name):
    out = simulate(tmp_path, START, 6, persons=1500, seed=2, fmt="parquet", world=name)
    assert out["world"] == name and out["attempts"] > 0
    att = _attempts(tmp_path).to_pandas()
    truth = pq.read_table(tmp_path / "truth.parquet").to_pandas()
    # about a third of the first book is stale in these worlds
    first = truth.drop_duplicates("contact_id")
    assert 0.2 < (first["status"] != "valid").mean() < 0.5
    # the incumbent stops at a reach: nothing after a person's first reach of the day
    att["day"] = att["attempted_at"].dt.tz_convert("America/Sao_Paulo").dt.date  # the dialer's day
    att = att.sort_values("attempted_at")
    reached = att["outcome"].isin(["right_party", "converted", "opt_out"])
    after = reached.groupby([att["person_id"], att["day"]]).cumsum() - reached
    assert (after == 0).all()
    local = att["attempted_at"].dt.tz_convert("America/Sao_Paulo").dt.hour  # the dialer's clock
    if name == "office_hours_incumbent":
        assert local.between(9, 17).all()
    if name == "timezones":
        persons = pq.read_table(next((tmp_path / "persons").glob("*/*.parquet"))).to_pandas()
        assert persons["timezone"].nunique() == 4
        assert "timezone" in truth.columns
        assert local.between(8, 21).all()


def test_habit_groups_do_not_follow_age(tmp_path):
    from contactrank.features.simulated_world import World

    w = World(np.random.default_rng(0), 6000, START, world_spec("habits"))
    shares = [np.bincount(w.habit[w.age == a], minlength=3) / (w.age == a).sum() for a in range(4)]
    assert np.ptp(np.array(shares), axis=0).max() < 0.06
    assert (w.hour_amp[w.habit == 2] <= 0.3).all()  # the all-day group barely cares about the hour


def _arm(root: Path, arm: str, warmup: int = 4):
    return simulate(
        root,
        START,
        8,
        persons=1500,
        seed=3,
        fmt="parquet",
        world="habits",
        dialer=lambda t, day, w: None if t < warmup else arm,
    )


def test_closed_loop_arms_share_the_world_and_the_luck(tmp_path):
    inc = _arm(tmp_path / "inc", "incumbent")
    tru = _arm(tmp_path / "tru", "truth")
    assert inc["closed_loop"] == 0 and tru["closed_loop"] == 4
    # the world changes the same way whatever the dialer does
    assert _digest(tmp_path / "inc", "contacts") == _digest(tmp_path / "tru", "contacts")
    assert _digest(tmp_path / "inc", "suppressions") == _digest(tmp_path / "tru", "suppressions")
    a, b = _attempts(tmp_path / "inc"), _attempts(tmp_path / "tru")
    # the dialer's day (-03:00) runs from 03:00 UTC to 03:00 UTC the next day
    lo, hi = pa.scalar(datetime(2026, 3, 7, 3, tzinfo=UTC)), pa.scalar(datetime(2026, 3, 8, 3, tzinfo=UTC))
    on = [
        set(
            t.filter(pc.and_(pc.greater_equal(t["attempted_at"], lo), pc.less(t["attempted_at"], hi)))[
                "person_id"
            ].to_pylist()
        )
        for t in (a, b)
    ]
    # the same persons are called (but for addresses one arm has learnt are dead); following the
    # truth reaches more of them per attempt
    assert len(on[0] & on[1]) > 0.95 * len(on[0] | on[1])
    assert tru["reach_rate"] > inc["reach_rate"]
    # the warm-up days are the same in both arms
    cut = pa.scalar(datetime(2026, 3, 6, 6, tzinfo=UTC))
    first = [t.filter(pc.less(t["attempted_at"], cut)) for t in (a, b)]
    assert first[0].equals(first[1])


def test_closed_loop_follows_a_priority_table(tmp_path):
    def plan(t, day, w):
        if t < 2:
            return None
        ids = w.ids()
        first = np.unique(w.a_person, return_index=True)[1]  # each person's first address
        return pa.table(
            {
                "person_id": pa.array([f"P{p:07d}" for p in w.a_person[first]]),
                "contact_id": ids.take(pa.array(first)),
                "rank": pa.array(np.ones(first.size, np.int32)),
                "best_hour": pa.array(np.full(first.size, 10, np.int32)),
            }
        )

    simulate(tmp_path, START, 4, persons=800, seed=4, fmt="parquet", dialer=plan)
    att = _attempts(tmp_path).to_pandas()
    late = att[att["attempted_at"] >= datetime(2026, 3, 4, 6, tzinfo=UTC)]
    assert len(late) and (late["attempted_at"].dt.tz_convert("America/Sao_Paulo").dt.hour == 10).all()
