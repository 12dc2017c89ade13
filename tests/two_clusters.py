"""What the multi-target Kubernetes tests share: the two control planes' kubeconfigs
(``tests/kubernetes_harness.sh up`` and ``up 2``), their contexts and API server PIDs."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

__all__ = ["FIRST", "SECOND", "TWO_CLUSTERS", "apiserver_pid", "context_of"]

FIRST = os.environ.get("PODWARDEN_TEST_KUBECONFIG")
SECOND = os.environ.get("PODWARDEN_TEST_KUBECONFIG_2")

TWO_CLUSTERS = [
    pytest.mark.kubernetes,
    pytest.mark.skipif(
        not (FIRST and SECOND),
        reason="needs two control planes: PODWARDEN_TEST_KUBECONFIG and "
        "PODWARDEN_TEST_KUBECONFIG_2 (tests/kubernetes_harness.sh up; ... up 2)",
    ),
]
"""The marks of a test that needs both control planes (skipped without the second)."""


def context_of(kubeconfig: str) -> str:
    data = yaml.safe_load(Path(kubeconfig).read_text(encoding="utf-8"))
    return str(data["current-context"])


def apiserver_pid(kubeconfig: str) -> int:
    """The PID of the API server behind ``kubeconfig`` (the harness keeps it beside)."""
    return int((Path(kubeconfig).parent / "pids" / "kube-apiserver.pid").read_text().strip())
