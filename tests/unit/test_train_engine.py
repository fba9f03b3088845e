"""The training engine setting: `local` by default, `dask` validated (binary objective, workers >= 1)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from contactrank.errors import ContactrankError
from contactrank.ml.train_dask import fit_on_cluster
from contactrank.settings import load_settings


def test_local_by_default_and_dask_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert load_settings(home=tmp_path).train_engine == "local"
    monkeypatch.setenv("CONTACTRANK_TRAIN_ENGINE", "dask")
    monkeypatch.setenv("CONTACTRANK_DASK_WORKERS", "3")
    s = load_settings(home=tmp_path)
    assert (s.train_engine, s.dask_workers, s.dask_scheduler) == ("dask", 3, "")


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"train_engine": "spark"}, "train_engine"),
        ({"train_engine": "dask", "dask_workers": 0}, "dask_workers"),
        ({"dask_workers": "two"}, "dask_workers"),
        ({"train_engine": "dask", "objective": "lambdarank"}, "binary objective only"),
    ],
)
def test_bad_engine_settings_name_the_setting(tmp_path: Path, changes: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_settings(home=tmp_path, **changes)


def test_the_scheduler_address_is_where_things_run_not_what_they_compute(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path, train_engine="dask")
    assert s.config_hash() == s.replace(dask_scheduler="tcp://10.0.0.5:8786").config_hash()
    assert s.config_hash() != s.replace(dask_workers=4).config_hash()
    assert s.config_hash() != load_settings(home=tmp_path).config_hash()


def test_without_the_dask_extra_training_says_what_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "distributed", None)  # as if the extra were not installed
    with pytest.raises(ContactrankError, match=r"contactrank\[dask\]"):
        fit_on_cluster(load_settings(home=tmp_path, train_engine="dask"), {}, None, {})
