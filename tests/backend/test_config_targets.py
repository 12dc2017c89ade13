"""Multi-target settings: targets add up to the pool's capacity; bad ones name the key."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from backend.config import load_settings
from backend.errors import ConfigError

TWO = """
[runtime]
kind = "multi"
[runtime.targets.east]
kind = "local"
max_sessions = 3
labels = { zone = "east" }
[runtime.targets.west]
kind = "local"
max_sessions = 4
weight = 2
"""

KUBECONFIG = """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts:
- {name: east, context: {cluster: c, user: u}}
- {name: west, context: {cluster: c, user: u}}
current-context: east
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "podwarden.toml"
    path.write_text(text)
    return path


def test_the_pool_holds_the_sum_of_its_targets(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, TWO))
    assert settings.pool.max_sessions == 7
    east, west = settings.runtime.targets["east"], settings.runtime.targets["west"]
    assert (east.kind, east.max_sessions, east.weight, east.labels) == (
        "local",
        3,
        1.0,
        {"zone": "east"},
    )
    assert (west.max_sessions, west.weight) == (4, 2.0)


def test_pool_max_sessions_caps_the_sum_lower_never_higher(tmp_path: Path) -> None:
    for cap, total in ((5, 5), (50, 7)):
        path = write(tmp_path, f"[pool]\nmax_sessions = {cap}\n" + TWO)
        assert load_settings(path).pool.max_sessions == total


def test_a_single_runtime_config_is_unchanged(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, "[runtime]\nkind = 'local'\n"))
    assert settings.pool.max_sessions == 10 and settings.runtime.targets == {}


def test_kubernetes_targets_find_their_contexts(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    text = f"""
[runtime]
kind = "multi"
[runtime.targets.east]
kubeconfig = "{kubeconfig}"
context = "east"
[runtime.targets.west]
kubeconfig = "{kubeconfig}"
context = "west"
namespace = "pw-west"
"""
    settings = load_settings(write(tmp_path, text))
    assert settings.runtime.targets["west"].namespace == "pw-west"
    assert settings.pool.max_sessions == 20


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            TWO + "[runtime.targets.east]\nkind = 'local'\n",
            "runtime.targets.east: duplicate target name",
        ),
        (TWO.replace("targets.west", "targets.West"), "runtime.targets.West: target names"),
        (TWO.replace("weight = 2", "weight = 0"), "runtime.targets.west.weight: must be a finite"),
        (TWO.replace("weight = 2", "weight = -1"), "runtime.targets.west.weight: must be"),
        (TWO.replace("weight = 2", "weight = nan"), "runtime.targets.west.weight: must be"),
        (TWO.replace("weight = 2", "weight = inf"), "runtime.targets.west.weight: must be"),
        (TWO.replace("max_sessions = 4", "max_sessions = 0"), "west.max_sessions: must be >= 1"),
        (TWO.replace('kind = "local"\nmax_sessions = 4', 'kind = "docker"'), "west.kind: must"),
        (TWO + "colour = 'red'\n", "runtime.targets.west.colour: unknown key"),
        ("[runtime]\nkind = 'multi'\n", 'runtime.targets: runtime.kind = "multi" needs'),
        ("[runtime.targets.east]\nkind = 'local'\n", "runtime.targets.east: targets need"),
        (
            TWO + "[templates.demo]\ntargets = ['north']\n",
            "templates.demo.targets[0]: unknown target 'north' (known: east, west)",
        ),
        (
            TWO + "[templates.demo]\nrequires = { zone = 'north' }\n",
            "templates.demo.requires.zone: no target has the label zone = 'north'",
        ),
    ],
)
def test_bad_targets_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert message in info.value.message


def test_a_context_missing_from_the_kubeconfig_names_the_key(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(KUBECONFIG)
    text = f"""
[runtime]
kind = "multi"
[runtime.targets.north]
kubeconfig = "{kubeconfig}"
context = "north"
"""
    with pytest.raises(ConfigError) as info:
        load_settings(write(tmp_path, text))
    assert info.value.message.startswith("runtime.targets.north.context: context 'north' is not")
    assert "(known: east, west)" in info.value.message
    missing = text.replace(str(kubeconfig), str(tmp_path / "nope"))
    with pytest.raises(ConfigError, match=r"runtime.targets.north.kubeconfig: file .* not exist"):
        load_settings(write(tmp_path, missing))


def test_a_bad_target_is_exit_code_2_naming_the_key(tmp_path: Path) -> None:
    path = write(tmp_path, TWO.replace("weight = 2", "weight = 0"))
    done = subprocess.run(
        [sys.executable, "-m", "backend.cli", "serve", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)},
    )
    assert done.returncode == 2, done.stderr
    assert "runtime.targets.west.weight" in done.stderr
