"""Configuration of the lifecycle policies: what is refused, naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.cli import main
from backend.config import settings_from_dict
from backend.errors import ConfigError


@pytest.mark.parametrize(
    ("document", "key", "words"),
    [
        ({"pool": {"idle_timeout": 0}}, "pool.idle_timeout", "finite number > 0"),
        ({"pool": {"idle_timeout": -5}}, "pool.idle_timeout", "must be >= 0"),
        ({"pool": {"idle_timeout": float("nan")}}, "pool.idle_timeout", "finite"),
        ({"pool": {"max_age": float("inf")}}, "pool.max_age", "finite"),
        ({"pool": {"max_age": 0}}, "pool.max_age", "finite number > 0"),
        ({"pool": {"max_age_grace": -1}}, "pool.max_age_grace", "must be >= 0"),
        ({"pool": {"activity_interval": 0}}, "pool.activity_interval", "must be > 0"),
        ({"templates": {"demo": {"idle_timeout": 0}}}, "templates.demo.idle_timeout", "> 0"),
        ({"templates": {"demo": {"max_age": -1}}}, "templates.demo.max_age", ">= 0"),
        ({"templates": {"demo": {"standby": -1}}}, "templates.demo.standby", ">= 0"),
        (
            {"templates": {"demo": {"credentials_file": "../secrets.json"}}},
            "templates.demo.credentials_file",
            "relative path",
        ),
    ],
)
def test_bad_policy_values_are_config_errors(document: dict, key: str, words: str) -> None:
    with pytest.raises(ConfigError) as error:
        settings_from_dict(document)
    assert error.value.key == key and words in error.value.message


def test_standby_beyond_the_capacity_names_both_numbers() -> None:
    with pytest.raises(ConfigError) as error:
        settings_from_dict({"pool": {"max_sessions": 3}, "templates": {"demo": {"standby": 4}}})
    assert error.value.key == "templates.demo.standby"
    assert "4 standby sessions" in error.value.message
    assert "pool.max_sessions = 3" in error.value.message


def test_policies_are_off_by_default_and_set_from_a_file() -> None:
    default = settings_from_dict({})
    assert default.pool.idle_timeout is None and default.pool.max_age is None
    assert default.templates["demo"].standby == 0
    settings = settings_from_dict(
        {
            "pool": {"idle_timeout": 3600, "max_age": 86400, "max_pinned": 2},
            "templates": {"demo": {"standby": 2, "max_age": 600}},
        }
    )
    assert settings.pool.idle_timeout == 3600.0 and settings.pool.max_pinned == 2
    assert settings.templates["demo"].max_age == 600.0


def test_a_bad_policy_stops_serve_with_exit_2_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "bad.toml"
    config.write_text("[pool]\nidle_timeout = 0\n")
    assert main(["serve", "--state-dir", str(tmp_path), "--config", str(config)]) == 2
    assert capsys.readouterr().err == (
        "podwarden: config error: pool.idle_timeout: must be a finite number > 0 seconds, got 0.0\n"
    )
