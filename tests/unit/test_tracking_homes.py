"""Two homes in one process: each keeps its own MLflow store."""

from __future__ import annotations

import os

from contactrank.ml.tracking import configure
from contactrank.settings import load_settings


def test_a_second_home_in_one_process_gets_its_own_store(tmp_path, monkeypatch) -> None:
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    first, second = load_settings(home=tmp_path / "a"), load_settings(home=tmp_path / "b")
    configure(first)
    # MLflow exports the URI it is given to the environment; Settings must not take that for the
    # user's choice (it made a comparison of two worlds in one process share one registry)
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert second.tracking_uri == f"sqlite:///{(tmp_path / 'b' / 'mlflow.db').resolve()}"


def test_the_users_own_tracking_uri_still_wins(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'shared.db'}")
    configure(load_settings(home=tmp_path / "a"))
    assert os.environ["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path / 'shared.db'}"
    assert load_settings(home=tmp_path / "b").tracking_uri == f"sqlite:///{tmp_path / 'shared.db'}"
