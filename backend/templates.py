"""Templates: what a session runs, and the built-in ones.

A local template runs ``command`` (an argv whose items may hold ``{port}``, ``{workdir}``,
``{session_id}``, ``{user}`` and ``{login_delay}``); a Kubernetes template runs ``image``.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field

__all__ = ["Template", "builtin_templates", "find_chromium"]


@dataclass
class Template:
    """What a session runs and how podwarden knows it is alive."""

    name: str
    """The template's name, part of every session id made from it."""
    command: list[str] = field(default_factory=list)
    """Local runtime: the argv to start, with placeholders (see the module docstring)."""
    image: str = ""
    """Kubernetes runtime: the container image."""
    port: int = 3000
    """The port the workload serves on (Kubernetes: the container port)."""
    cpu: str = "250m"
    """Kubernetes CPU request."""
    memory: str = "512Mi"
    """Kubernetes memory request."""
    cpu_limit: str = ""
    """Kubernetes CPU limit; empty: same as the request."""
    memory_limit: str = ""
    """Kubernetes memory limit; empty: same as the request."""
    readiness: str = "tcp"
    """``tcp`` (the port accepts connections) or ``http`` (``readiness_path`` answers 2xx)."""
    readiness_path: str = "/"
    """HTTP path checked when ``readiness`` is ``http``."""
    keepalive_path: str = ""
    """HTTP path called on every refresh to keep the session logged in; empty: none."""
    env: dict[str, str] = field(default_factory=dict)
    """Environment of the workload."""
    credentials: list[str] = field(default_factory=list)
    """Names of the environment variables an acquire may pass as credentials; empty: none.
    Names that change how programs load or run are refused even if listed (see
    ``backend.credentials``)."""
    login_delay: float = 0.0
    """Seconds the demo workload pretends to log in before it answers."""
    ready_timeout: float = 60.0
    """Seconds a start may take before it counts as failed."""
    image_pull_secret: str = ""
    """Kubernetes: name of an image pull secret; empty: none."""
    node_selector: dict[str, str] = field(default_factory=dict)
    """Kubernetes: node selector labels."""
    idle_timeout: float | None = None
    """Idle timeout of this template's sessions; None: the pool's ``idle_timeout``."""
    max_age: float | None = None
    """Maximum age of this template's sessions; None: the pool's ``max_age``."""
    standby: int = 0
    """Started, ready, unclaimed workloads kept for the next new user of this template."""
    requires: dict[str, str] = field(default_factory=dict)
    """With ``runtime.kind = "multi"``: labels a target must carry to run this template's
    sessions (``zone = "east"``)."""
    targets: list[str] = field(default_factory=list)
    """With ``runtime.kind = "multi"``: the only targets that may run this template's
    sessions; empty: any."""
    credentials_file: str = ""
    """A path in the session's working directory where the workload reads its credentials
    (a JSON object, mode 0600). Set, a standby workload can be claimed by an acquire that
    passes credentials: the claim writes them there. Empty: credentials reach a workload
    only through its environment, so such an acquire starts a fresh one."""


def find_chromium() -> str | None:
    """Path of a Chromium binary on PATH, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _demo() -> Template:
    return Template(
        name="demo",
        command=[
            sys.executable,
            "-m",
            "backend.workloads.demo",
            "--port",
            "{port}",
            "--login-delay",
            "{login_delay}",
        ],
        image="",
        readiness="http",
        readiness_path="/health",
        keepalive_path="/keepalive",
        login_delay=2.0,
        credentials=["API_KEY", "PASSWORD", "TOKEN", "USERNAME"],
    )


def _chromium(binary: str) -> Template:
    return Template(
        name="chromium",
        command=[
            binary,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-dev-shm-usage",
            "--remote-debugging-address=127.0.0.1",
            "--remote-debugging-port={port}",
            "--user-data-dir={workdir}/profile",
            "about:blank",
        ],
        readiness="http",
        readiness_path="/json/version",
        keepalive_path="/json/version",
        ready_timeout=60.0,
    )


def builtin_templates() -> dict[str, Template]:
    """``demo`` always; ``chromium`` when a Chromium binary is on PATH."""
    templates = {"demo": _demo()}
    chromium = find_chromium()
    if chromium:
        templates["chromium"] = _chromium(chromium)
    return templates
