"""The ``kubernetes`` client (~0.45 s to import) is loaded only when a runtime connects.

Checked in a fresh interpreter: every module of ``backend`` is imported, the Kubernetes
runtime package included, and ``kubernetes`` must still be absent from ``sys.modules``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

SCRIPT = """
import importlib, pkgutil, sys
import backend
for module in pkgutil.walk_packages(backend.__path__, "backend."):
    importlib.import_module(module.name)
from backend.runtime.kubernetes import KubernetesRuntime  # noqa: F401
heavy = sorted(name for name in sys.modules if name.split(".")[0] == "kubernetes")
print(",".join(heavy))
"""


def test_importing_the_backend_does_not_import_the_kubernetes_client() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == ""
