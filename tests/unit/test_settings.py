"""Settings: defaults < contactrank.toml < CONTACTRANK_* env < overrides; frozen; typed."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from contactrank.settings import load_settings


def test_defaults_and_derived_paths(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path)
    assert s.lake == tmp_path / "lake"
    assert s.exports == tmp_path / "exports"
    assert s.landing == tmp_path / "landing"
    assert s.tracking_uri == f"sqlite:///{(tmp_path / 'mlflow.db').resolve()}"
    assert s.allowed_hours() == list(range(8, 22))


def test_precedence_toml_then_env_then_override(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    toml = tmp_path / "contactrank.toml"
    toml.write_text(
        'home = "/from/toml"\n[scoring]\nexplore_share = 0.2\ncap_person_7d = 3\n[gate]\ngate_ece_cap = 0.1\n'
    )
    s = load_settings(toml)
    assert (s.home, s.explore_share, s.cap_person_7d, s.gate_ece_cap) == (Path("/from/toml"), 0.2, 3, 0.1)
    monkeypatch.setenv("CONTACTRANK_EXPLORE_SHARE", "0.3")
    assert load_settings(toml).explore_share == 0.3
    assert load_settings(toml, explore_share=0.4).explore_share == 0.4


def test_settings_are_frozen_and_replace_returns_a_copy(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.seed = 1  # type: ignore[misc]
    t = s.replace(label="conversion")
    assert (s.label, t.label) == ("reach", "conversion")
    assert s.config_hash() != t.config_hash()
    # where things are stored is not behaviour: two homes with the same settings hash alike
    assert s.config_hash() == load_settings(home=tmp_path / "elsewhere").config_hash()


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("CONTACTRANK_LABEL", "clicks", "label"),
        ("CONTACTRANK_CAP_PERSON_7D", "many", "cap_person_7d"),
        ("CONTACTRANK_PSEUDONYMISE_EXPORTS", "perhaps", "pseudonymise_exports"),
    ],
)
def test_bad_values_name_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ValueError, match=message):
        load_settings()


def test_unknown_keys_and_missing_explicit_file_are_errors(tmp_path: Path) -> None:
    toml = tmp_path / "c.toml"
    toml.write_text("no_such_setting = 1\n")
    with pytest.raises(ValueError, match="no_such_setting"):
        load_settings(toml)
    with pytest.raises(FileNotFoundError):
        load_settings(tmp_path / "missing.toml")


def test_mlflow_env_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5999")
    assert load_settings(home=tmp_path).tracking_uri == "http://127.0.0.1:5999"


def test_channel_hours_override(tmp_path: Path) -> None:
    s = load_settings(home=tmp_path, channel_hours={"email": [0, 23]})
    assert s.allowed_hours("email") == list(range(24))
    assert s.allowed_hours("voice") == list(range(8, 22))


def test_runtime_env_adds_defaults_and_keeps_explicit_values() -> None:
    from contactrank.settings import RUNTIME_ENV, runtime_env

    assert runtime_env({}) == RUNTIME_ENV
    assert RUNTIME_ENV["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] == "false"  # no bars in task logs
    explicit = {"OMP_WAIT_POLICY": "ACTIVE", "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "true", "X": "1"}
    assert runtime_env(dict(explicit)) == explicit
