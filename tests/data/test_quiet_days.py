"""Days that cost less: a day without attempts, and a build that leaves out the features partition
nothing will read. Neither may change a table that is written."""

from __future__ import annotations

import hashlib
import shutil
from datetime import timedelta

import pandas as pd
import pyarrow.parquet as pq
from feature_history import START, history, write_attempts

from contactrank.features import feature_tables
from contactrank.features.build import DAILY_AGG, FEATURES, STATE, TRAINING, build_features
from contactrank.features.lake import DATA_FILE, partition_dir

ATTEMPT_DAYS = [0, 3, 10, 40, 200, 396, 398, 401]
DAYS = list(range(395, 403))  # 395, 397, 399, 400 and 402 have no attempt


def _day(n: int):
    return START + timedelta(days=n)


def _sha(settings, kind: str, n: int, name: str = DATA_FILE) -> str:
    return hashlib.sha256((partition_dir(settings, kind, _day(n)) / name).read_bytes()).hexdigest()


def _sorted(settings, kind: str, n: int, name: str = DATA_FILE) -> pd.DataFrame:
    """A partition in key order (row order within a partition is not part of its content)."""
    df = pq.read_table(partition_dir(settings, kind, _day(n)) / name).to_pandas()
    keys = [c for c in ("attempt_id", "person_id", "contact_id", "campaign_id", "channel") if c in df.columns]
    return df.sort_values(keys, ignore_index=True, na_position="first") if keys else df


def test_a_day_without_attempts_writes_the_training_table_the_full_queries_write(
    settings, tmp_path, monkeypatch
):
    history(settings, ATTEMPT_DAYS, [394, *DAYS])
    quiet = [n for n in DAYS if n not in ATTEMPT_DAYS]
    assert all(feature_tables.no_attempts(settings, _day(n)) for n in quiet)
    assert not any(feature_tables.no_attempts(settings, _day(n)) for n in ATTEMPT_DAYS if n in DAYS)
    feature_tables._EMPTY_TRAINING.clear()
    computed = []
    create = feature_tables.create_shared_rates
    monkeypatch.setattr(feature_tables, "create_shared_rates", lambda *a: computed.append(a) or create(*a))
    for n in DAYS:
        build_features(settings, _day(n))
    # once for each day's feature rows, once for its training rows unless the day is quiet like
    # an earlier one: then that day's empty table is written again, without a query
    assert len(computed) < 2 * len(DAYS) and len(feature_tables._EMPTY_TRAINING) >= 1
    monkeypatch.setattr(feature_tables, "create_shared_rates", create)

    scanned = settings.replace(home=tmp_path / "scanned")
    history(scanned, ATTEMPT_DAYS, [394, *DAYS])
    monkeypatch.setattr(feature_tables, "no_attempts", lambda s, d: False)  # every day as before
    for n in DAYS:
        build_features(scanned, _day(n))

    for n in quiet:  # the same file, byte for byte: no row, the same columns and types
        assert _sha(settings, TRAINING, n) == _sha(scanned, TRAINING, n)
        assert pq.ParquetFile(partition_dir(settings, TRAINING, _day(n)) / DATA_FILE).metadata.num_rows == 0
    for n in DAYS:
        pd.testing.assert_frame_equal(_sorted(settings, TRAINING, n), _sorted(scanned, TRAINING, n))
    busy = pq.read_schema(partition_dir(settings, TRAINING, _day(401)) / DATA_FILE)
    assert pq.read_schema(partition_dir(settings, TRAINING, _day(400)) / DATA_FILE).names == busy.names


def test_rows_false_leaves_out_the_features_partition_and_changes_nothing_else(settings, tmp_path):
    history(settings, ATTEMPT_DAYS, [394, *DAYS])
    for n in DAYS:
        out = build_features(settings, _day(n))
        assert out["rows"] > 0

    lean = settings.replace(home=tmp_path / "lean")
    history(lean, ATTEMPT_DAYS, [394, *DAYS])
    for n in DAYS[:-1]:
        out = build_features(lean, _day(n), rows=False)
        assert out["rows"] is None and "features" not in out["cpu_seconds"]
        assert not partition_dir(lean, FEATURES, _day(n)).exists()
    build_features(lean, _day(DAYS[-1]))  # the scored day

    for n in DAYS:
        for kind in (TRAINING, STATE, DAILY_AGG):
            pd.testing.assert_frame_equal(_sorted(settings, kind, n), _sorted(lean, kind, n))
        pd.testing.assert_frame_equal(
            _sorted(settings, STATE, n, "persons.parquet"), _sorted(lean, STATE, n, "persons.parquet")
        )
    # scoring's input on the scored day: the same rows, so the same priority file
    pd.testing.assert_frame_equal(_sorted(settings, FEATURES, DAYS[-1]), _sorted(lean, FEATURES, DAYS[-1]))

    # a features partition that exists is rewritten, never left stale
    stale = partition_dir(lean, FEATURES, _day(DAYS[-1])) / DATA_FILE
    before = stale.stat().st_ino
    assert build_features(lean, _day(DAYS[-1]), rows=False)["rows"] > 0
    assert stale.stat().st_ino != before
    pd.testing.assert_frame_equal(_sorted(settings, FEATURES, DAYS[-1]), _sorted(lean, FEATURES, DAYS[-1]))


def test_training_rows_read_the_rates_the_day_before_saved_the_same_as_computed_afresh(
    settings, tmp_path, monkeypatch
):
    from contactrank.features import build

    def built(home_settings, reuse: bool) -> None:
        history(home_settings, [*ATTEMPT_DAYS, 400], [394, *DAYS])  # 400 and 401 busy
        with monkeypatch.context() as patch:
            if not reuse:
                patch.setattr(build, "day_before_rates", lambda s, d: None)
            for n in DAYS:
                build_features(home_settings, _day(n))
            # 400's attempts change and 400 is built again without its feature rows: the rates it
            # saved before must follow its new state, or 401's training rows would read stale ones
            flipped = pq.read_table(
                partition_dir(home_settings, "attempts", _day(400)) / DATA_FILE
            ).to_pandas()
            flipped["outcome"] = flipped["outcome"].map(
                lambda o: "no_answer" if o == "right_party" else "right_party"
            )
            write_attempts(home_settings, 400, flipped)
            shutil.rmtree(partition_dir(home_settings, FEATURES, _day(400)))
            build_features(home_settings, _day(400), rows=False)
            build_features(home_settings, _day(401))

    computed = []
    create = feature_tables.create_shared_rates
    monkeypatch.setattr(feature_tables, "create_shared_rates", lambda *a: computed.append(a) or create(*a))
    built(settings, reuse=True)
    reused = len(computed)
    fresh = settings.replace(home=tmp_path / "fresh")
    built(fresh, reuse=False)
    assert reused < len(computed) - reused  # the day before's rates were read, not computed again
    for n in DAYS:
        pd.testing.assert_frame_equal(_sorted(settings, TRAINING, n), _sorted(fresh, TRAINING, n))
        if partition_dir(fresh, FEATURES, _day(n)).exists():
            pd.testing.assert_frame_equal(_sorted(settings, FEATURES, n), _sorted(fresh, FEATURES, n))
