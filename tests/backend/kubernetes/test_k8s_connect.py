"""Finding the cluster as kubectl does: kubeconfig, $KUBECONFIG, context, namespace."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from backend.config import KubernetesSettings
from backend.errors import ConfigError
from backend.runtime.kubernetes.connect import load_connection


def kubeconfig(path: Path, contexts: dict[str, str], current: str) -> Path:
    """Contexts named after their clusters; ``contexts`` maps name -> namespace ('' none)."""
    path.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {"name": name, "cluster": {"server": f"https://{name}.example:6443"}}
                    for name in contexts
                ],
                "users": [{"name": "me", "user": {"token": "t"}}],
                "contexts": [
                    {
                        "name": name,
                        "context": {"cluster": name, "user": "me"}
                        | ({"namespace": ns} if ns else {}),
                    }
                    for name, ns in contexts.items()
                ],
                "current-context": current,
            }
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture(autouse=True)
def no_ambient_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def test_current_context_and_its_namespace(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "c", {"prod": "team-a", "dev": ""}, "prod")
    connection = load_connection(KubernetesSettings(kubeconfig=str(path), namespace=""))
    assert (connection.context, connection.namespace) == ("prod", "team-a")
    assert connection.host == "https://prod.example:6443"
    assert connection.configuration.retries is False  # podwarden retries, counted


def test_a_chosen_context_and_namespace(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "c", {"prod": "team-a", "dev": ""}, "prod")
    settings = KubernetesSettings(kubeconfig=str(path), context="dev", namespace="")
    connection = load_connection(settings)
    assert (connection.context, connection.namespace) == ("dev", "default")
    assert connection.host == "https://dev.example:6443"
    settings.namespace = "podwarden"
    assert load_connection(settings).namespace == "podwarden"


def test_an_unknown_context_names_the_known_ones(tmp_path: Path) -> None:
    path = kubeconfig(tmp_path / "c", {"prod": "", "dev": ""}, "prod")
    with pytest.raises(ConfigError) as info:
        load_connection(KubernetesSettings(kubeconfig=str(path), context="staging"))
    assert info.value.key == "runtime.kubernetes.context"
    assert "known: dev, prod" in info.value.message


def test_kubeconfig_env_lists_several_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = kubeconfig(tmp_path / "a", {"alpha": ""}, "alpha")
    second = kubeconfig(tmp_path / "b", {"beta": "b-ns"}, "beta")
    monkeypatch.setenv("KUBECONFIG", f"{first}:{second}")
    connection = load_connection(KubernetesSettings(context="beta", namespace=""))
    assert (connection.context, connection.namespace) == ("beta", "b-ns")


def test_home_kube_config_is_the_default(tmp_path: Path) -> None:
    kube_dir = tmp_path / "home" / ".kube"
    kube_dir.mkdir(parents=True)
    kubeconfig(kube_dir / "config", {"home": ""}, "home")
    assert load_connection(KubernetesSettings()).context == "home"


def test_nothing_to_connect_with_says_what_to_do() -> None:
    with pytest.raises(ConfigError) as info:
        load_connection(KubernetesSettings())
    assert "no kubeconfig found" in info.value.message
    assert "$KUBECONFIG" in info.value.message


def test_a_broken_kubeconfig_is_a_config_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken"
    broken.write_text("apiVersion: v1\nclusters: [", encoding="utf-8")
    with pytest.raises(ConfigError, match="cannot use kubeconfig"):
        load_connection(KubernetesSettings(kubeconfig=str(broken)))
