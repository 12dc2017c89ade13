"""Settings: defaults without a file; a bad file names the key and the problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.config import apply_overrides, load_settings
from backend.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "podwarden.toml"
    path.write_text(text)
    return path


def test_defaults_need_no_file() -> None:
    settings = load_settings(None)
    assert settings.pool.max_sessions == 10
    assert settings.pool.max_sessions_per_user is None, "no limit of its own: field report 002"
    assert settings.pool.liveness_interval == 10 and settings.pool.liveness_timeout == 2
    assert settings.pool.when_full == "evict-lru"
    assert settings.pool.refresh_interval == 300
    assert settings.api.host == "127.0.0.1" and settings.api.port == 5010
    assert settings.templates["demo"].login_delay == 2.0


def test_a_file_overrides_and_adds_templates(tmp_path: Path) -> None:
    settings = load_settings(
        write(
            tmp_path,
            """
[pool]
max_sessions = 4
when_full = "queue"
queue_timeout = 2.5

[templates.demo]
login_delay = 0.1

[templates.web]
command = ["python3", "-m", "http.server", "{port}"]
readiness = "tcp"
env = { GREETING = "hi" }
""",
        )
    )
    assert settings.pool.max_sessions == 4 and settings.pool.queue_timeout == 2.5
    assert settings.templates["demo"].login_delay == 0.1
    assert settings.templates["web"].env == {"GREETING": "hi"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[pool]\nmax_sessions = 'ten'", "pool.max_sessions: must be an integer, got str 'ten'"),
        ("[pool]\nmax_sesions = 3", "pool.max_sesions: unknown key"),
        ("[pool]\nmax_sessions = 0", "pool.max_sessions: must be >= 1, got 0"),
        ("[pool]\nwhen_full = 'random'", "pool.when_full: must be one of evict-lru, queue"),
        ("[api]\nport = 70000", "api.port: must be a port number"),
        ("[runtime]\nkind = 'docker'", "runtime.kind: must be one of local, kubernetes, multi"),
        ("[templates.x]\nport = 80", "templates.x: needs a command"),
        ("[templates.demo]\nreadiness = 'ping'", "templates.demo.readiness: must be one of"),
        ("pool = 3", "pool: must be a table"),
        ("[pool\n", "is not valid TOML"),
    ],
)
def test_bad_values_name_the_key_and_the_problem(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert message in info.value.message


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


def test_overrides_parse_strings_from_flags_and_env() -> None:
    settings = apply_overrides(load_settings(None), {"pool.max_sessions": "3", "api.port": 0})
    assert settings.pool.max_sessions == 3 and settings.api.port == 0
    with pytest.raises(ConfigError, match="pool.max_sessions: cannot read 'x' as int"):
        apply_overrides(load_settings(None), {"pool.max_sessions": "x"})
