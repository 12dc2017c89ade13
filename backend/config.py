"""Settings: typed dataclasses with a default for everything, loaded from TOML.

``load_settings(path)`` reads a file over the defaults; every key is checked against the
dataclass it lands in, and a wrong key or value raises ``ConfigError`` naming the dotted
key and the problem (``pool.max_sessions: must be an integer >= 1, got "ten"``).
Command-line flags and ``PODWARDEN_*`` environment variables are applied on top by the CLI
through ``apply_overrides``.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.credentials import refused_reason
from backend.errors import ConfigError
from backend.peers import resolve_users
from backend.templates import Template, builtin_templates

__all__ = [
    "ApiSettings",
    "KubernetesSettings",
    "PoolSettings",
    "RuntimeSettings",
    "Settings",
    "TargetSettings",
    "TunnelSettings",
    "apply_overrides",
    "default_state_dir",
    "load_settings",
]

WHEN_FULL = ("evict-lru", "queue", "reject")
ON_REFRESH_FAILURE = ("recycle", "remove")


def default_state_dir() -> Path:
    """``$XDG_STATE_HOME/podwarden``, or ``~/.local/state/podwarden``."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "podwarden"


@dataclass
class PoolSettings:
    """How many sessions, and what happens when the pool is full."""

    max_sessions: int = 10
    """Live sessions in total (starting, ready or refreshing)."""
    max_sessions_per_user: int | None = None
    """Live sessions one user may hold; None (the default): no limit of its own, only the
    pool's capacity. At the limit a request for a new session is refused at once (429)."""
    when_full: str = "evict-lru"
    """``evict-lru``, ``queue`` or ``reject``: what an acquire does when the pool is full."""
    queue_timeout: float = 30.0
    """Seconds an acquire waits for room before it is refused."""
    min_idle_before_evict: float = 0.0
    """Seconds a session must be idle before LRU eviction may take it."""
    refresh_interval: float = 300.0
    """Seconds between background refreshes (probe and keepalive) of each ready session."""
    liveness_interval: float = 10.0
    """Seconds a liveness check stays fresh: ready sessions are checked this often, and a
    reuse whose last successful check is older probes the workload first."""
    liveness_timeout: float = 2.0
    """Seconds one liveness check may take before the workload counts as hung."""
    refresh_jitter: float = 0.1
    """Fraction of ``refresh_interval`` by which each round is randomly shifted."""
    refresh_concurrency: int = 4
    """Sessions probed at once by the refresher."""
    refresh_failures_before_recycle: int = 2
    """Failed probes in a row before a session counts as dead."""
    on_refresh_failure: str = "recycle"
    """``recycle`` (start a fresh workload under the same id) or ``remove``."""
    start_attempts: int = 3
    """Tries to start a workload before the session is marked failed."""
    start_backoff: float = 0.5
    """Seconds before the second try; doubled for each further try."""
    stop_grace: float = 5.0
    """Seconds a workload gets between SIGTERM and SIGKILL (Kubernetes: grace period)."""
    log_lines: int = 500
    """Workload log lines kept per session."""
    idle_timeout: float | None = None
    """Seconds a session may stay idle (no acquire, no open tunnel connection, tunnel
    traffic under ``idle_bytes_threshold``) before it is stopped; None (the default): never.
    A template may set its own."""
    max_age: float | None = None
    """Seconds a session may live at most: older, it is stopped at its next idle moment,
    or ``max_age_grace`` later even if busy. None (the default): no limit. A template may
    set its own."""
    max_age_grace: float = 600.0
    """Seconds past ``max_age`` a busy session is given before it is stopped anyway."""
    activity_interval: float = 10.0
    """Seconds between samples of every session's tunnel activity (and policy checks)."""
    idle_bytes_threshold: int = 4096
    """Tunnel bytes (both directions) per ``activity_interval`` below which traffic does
    not count as activity, so a keepalive does not keep a session from idling."""
    max_pinned: int | None = None
    """Sessions that may be pinned at once; None (the default): no limit of its own."""
    resources_interval: float = 5.0
    """Seconds between samples of every session's CPU and memory and of the host's (or the
    cluster's) totals; 0 turns sampling off."""


@dataclass
class ApiSettings:
    """The HTTP API."""

    host: str = "127.0.0.1"
    """Address to bind; anything but loopback prints a warning."""
    port: int = 5010
    """Port to bind; 0 picks a free one."""
    header_timeout: float = 10.0
    """Seconds a connection may take to send a request's headers (after connecting or
    after its last response) before it is closed."""
    max_connections: int = 1000
    """Open API connections at most (and always fewer than the open-file limit allows);
    at the cap the longest-idle connection makes room, or the new one is refused."""


@dataclass
class TunnelSettings:
    """Local tunnel endpoints."""

    host: str = "127.0.0.1"
    """Address tunnels listen on."""
    port_min: int = 43000
    """Lowest local port handed to a session."""
    port_max: int = 43999
    """Highest local port handed to a session."""
    allow_users: list[str] = field(default_factory=list)
    """Local users (names or uids) whose processes may connect to a tunnel, besides the
    daemon's own user and root; ``["*"]``: anyone who can reach the address."""


@dataclass
class KubernetesSettings:
    """How to reach the cluster, as kubectl does."""

    kubeconfig: str = ""
    """Path of the kubeconfig; empty: ``$KUBECONFIG`` or ``~/.kube/config`` or in-cluster."""
    context: str = ""
    """Kubeconfig context; empty: the current one."""
    namespace: str = "podwarden"
    """Namespace the sessions live in."""
    create_namespace: bool = True
    """Create the namespace when it is missing."""
    unknown_workloads: str = "adopt"
    """``adopt`` or ``delete``: what recovery does with labelled objects the store lacks."""
    max_concurrent_creates: int = 10
    """Creates sent to the API server at once."""
    api_threads: int = 16
    """Threads for blocking client calls."""
    ready_timeout: float = 180.0
    """Seconds a pod may take to become ready."""
    delete_timeout: float = 60.0
    """Seconds to wait for every object of a session to be gone."""
    reconcile_interval: float = 30.0
    """Seconds between drift checks of pool against the runtime (local runtime too)."""
    delete_propagation: str = "Background"
    """``Background`` (the default: the Deployment goes at once, its ReplicaSets and pods
    after it) or ``Foreground`` (the Deployment goes only after its pods, through the
    garbage collector's rate-limited finalizer work). podwarden verifies every object is
    gone either way."""


TARGET_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$")
"""A target name: a short DNS label, so it can sit in labels, metrics and events."""


@dataclass
class TargetSettings:
    """One place sessions run when ``runtime.kind = "multi"``: a cluster or this host."""

    kind: str = "kubernetes"
    """``kubernetes`` (a cluster) or ``local`` (processes on this host)."""
    kubeconfig: str = ""
    """Kubernetes: path of the kubeconfig; empty: ``runtime.kubernetes.kubeconfig``, then
    ``$KUBECONFIG`` or ``~/.kube/config``."""
    context: str = ""
    """Kubernetes: the kubeconfig context; empty: the current one. Must exist."""
    namespace: str = ""
    """Kubernetes: namespace of the sessions; empty: ``runtime.kubernetes.namespace``."""
    max_sessions: int = 10
    """Live sessions this target holds at most."""
    weight: float = 1.0
    """Share of new sessions relative to the other targets (a finite number > 0)."""
    labels: dict[str, str] = field(default_factory=dict)
    """Labels a template or request may require (``zone = "east"``)."""


@dataclass
class RuntimeSettings:
    """Which runtime runs the sessions."""

    kind: str = "local"
    """``local`` (a process per session), ``kubernetes``, or ``multi`` (several
    ``targets``, each a cluster or the local runtime)."""
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)
    """Settings of the Kubernetes runtime (with ``multi``: the defaults of each cluster
    target)."""
    targets: dict[str, TargetSettings] = field(default_factory=dict)
    """With ``kind = "multi"``: the targets by name (``[runtime.targets.east]``)."""
    heartbeat_interval: float = 5.0
    """With ``multi``: seconds between health checks (an API round trip) of each target."""
    degraded_latency: float = 1.0
    """With ``multi``: a heartbeat slower than this many seconds makes a target degraded."""
    target_lost_after: float = 15.0
    """With ``multi``: seconds without a successful heartbeat after which a target is lost
    (its capacity leaves the pool's total, its sessions are ``unreachable``)."""
    failover_wait: float = 1.0
    """With ``multi``: seconds a reuse of an unreachable session waits for its target to
    return before a new session is started on another target (``is_new_session``)."""

    @property
    def total_capacity(self) -> int:
        """With ``multi``: the sum of the targets' ``max_sessions``."""
        return sum(t.max_sessions for t in self.targets.values())


@dataclass
class Settings:
    """Everything podwarden can be told."""

    state_dir: Path = field(default_factory=default_state_dir)
    """Store, token and per-session working directories live here."""
    pool: PoolSettings = field(default_factory=PoolSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    tunnels: TunnelSettings = field(default_factory=TunnelSettings)
    runtime: RuntimeSettings = field(default_factory=RuntimeSettings)
    templates: dict[str, Template] = field(default_factory=builtin_templates)
    """Templates by name; the built-in ones plus those of the config file."""
    default_template: str = "demo"
    """Template used when a request names none."""

    @property
    def local_only(self) -> bool:
        """True when every session runs on this host (templates need a command)."""
        runtime = self.runtime
        if runtime.kind == "multi":
            return all(t.kind == "local" for t in runtime.targets.values())
        return runtime.kind == "local"

    def validate(self) -> None:
        """Raise ``ConfigError`` for values that are well-typed but unusable together."""
        _check_numbers("", self)
        _check_targets(self)
        pool = self.pool
        if self.runtime.kind == "multi" and self.runtime.targets:
            # [pool] max_sessions may cap the targets' sum lower, never raise it.
            pool.max_sessions = min(pool.max_sessions, self.runtime.total_capacity)
        _positive("pool.max_sessions", pool.max_sessions)
        if pool.max_sessions_per_user is not None:
            _positive("pool.max_sessions_per_user", pool.max_sessions_per_user)
        _positive("pool.refresh_concurrency", pool.refresh_concurrency)
        _positive("pool.start_attempts", pool.start_attempts)
        _positive("pool.refresh_failures_before_recycle", pool.refresh_failures_before_recycle)
        _positive("pool.log_lines", pool.log_lines)
        for key in ("queue_timeout", "min_idle_before_evict", "start_backoff", "stop_grace"):
            _non_negative(f"pool.{key}", getattr(pool, key))
        for key in ("refresh_interval", "liveness_interval", "liveness_timeout"):
            value = getattr(pool, key)
            if not (0 < value < float("inf")):
                raise ConfigError(
                    f"pool.{key}", f"must be a finite number > 0 seconds, got {value}"
                )
        if not 0 <= pool.refresh_jitter < 1:
            raise ConfigError("pool.refresh_jitter", "must be in [0, 1)")
        _check_policies(self)
        _choice("pool.when_full", pool.when_full, WHEN_FULL)
        _choice("pool.on_refresh_failure", pool.on_refresh_failure, ON_REFRESH_FAILURE)
        _choice("runtime.kind", self.runtime.kind, ("local", "kubernetes", "multi"))
        _choice(
            "runtime.kubernetes.delete_propagation",
            self.runtime.kubernetes.delete_propagation,
            ("Foreground", "Background"),
        )
        _choice(
            "runtime.kubernetes.unknown_workloads",
            self.runtime.kubernetes.unknown_workloads,
            ("adopt", "delete"),
        )
        if not 0 <= self.api.port <= 65535:
            raise ConfigError("api.port", f"must be a port number 0-65535, got {self.api.port}")
        t = self.tunnels
        if not (1 <= t.port_min <= t.port_max <= 65535):
            raise ConfigError(
                "tunnels.port_min",
                f"port range {t.port_min}-{t.port_max} must satisfy 1 <= min <= max <= 65535",
            )
        for i, name in enumerate(t.allow_users):
            try:
                resolve_users([name])
            except KeyError:
                key = f"tunnels.allow_users[{i}]"
                raise ConfigError(key, f"{name!r} is no user of this host") from None
        for name, template in self.templates.items():
            if not 1 <= template.port <= 65535:
                raise ConfigError(f"templates.{name}.port", "must be a port number 1-65535")
            _choice(f"templates.{name}.readiness", template.readiness, ("tcp", "http"))
            if self.local_only and not template.command and not template.image:
                raise ConfigError(f"templates.{name}", "needs a command (local runtime)")
            _check_template_safety(f"templates.{name}", template)
        if self.default_template not in self.templates:
            raise ConfigError(
                "default_template",
                f"names {self.default_template!r}, which is not a configured template",
            )


POSITIVE_KEYS = frozenset(
    {
        "refresh_interval",
        "liveness_interval",
        "liveness_timeout",
        "ready_timeout",
        "delete_timeout",
        "reconcile_interval",
        "max_concurrent_creates",
        "api_threads",
        "header_timeout",
        "max_connections",
        "activity_interval",
        "heartbeat_interval",
        "degraded_latency",
        "target_lost_after",
    }
)
"""Numeric fields (by name, wherever they sit) for which zero makes no sense."""


def _check_numbers(prefix: str, target: Any) -> None:
    """Every number in ``target`` (a dataclass; templates too) is finite and >= 0, and > 0
    where ``POSITIVE_KEYS`` says so: ``nan``, ``inf`` or ``-1`` seconds would otherwise
    surface as a 500 or a busy loop long after start-up."""
    for f in dataclasses.fields(target):
        value = getattr(target, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            _check_numbers(f"{key}.", value)
        elif isinstance(value, dict) and f.name == "templates":
            for name, template in value.items():
                _check_numbers(f"templates.{name}.", template)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            if not math.isfinite(value):
                raise ConfigError(key, f"must be a finite number, got {value}")
            if value < 0:
                raise ConfigError(key, f"must be >= 0, got {value:g}")
            if value == 0 and f.name in POSITIVE_KEYS:
                raise ConfigError(key, "must be > 0")


def _check_targets(settings: Settings) -> None:
    """Multi-target settings: names, kinds, weights, contexts and template references."""
    runtime = settings.runtime
    if runtime.kind != "multi":
        if runtime.targets:
            first = min(runtime.targets)
            raise ConfigError(
                f"runtime.targets.{first}",
                f'targets need runtime.kind = "multi" (it is {runtime.kind!r})',
            )
        return
    if not runtime.targets:
        raise ConfigError(
            "runtime.targets",
            'runtime.kind = "multi" needs at least one [runtime.targets.NAME] table',
        )
    for name, target in runtime.targets.items():
        key = f"runtime.targets.{name}"
        if not TARGET_NAME.match(name):
            raise ConfigError(
                key, "target names are 1-32 lowercase letters, digits and '-' (a DNS label)"
            )
        _choice(f"{key}.kind", target.kind, ("kubernetes", "local"))
        _positive(f"{key}.max_sessions", target.max_sessions)
        if not (math.isfinite(target.weight) and target.weight > 0):
            raise ConfigError(f"{key}.weight", f"must be a finite number > 0, got {target.weight}")
        if target.kind == "kubernetes" and target.context:
            _check_context(key, target, runtime.kubernetes)
    for name, template in settings.templates.items():
        for i, target_name in enumerate(template.targets):
            if target_name not in runtime.targets:
                known = ", ".join(sorted(runtime.targets))
                raise ConfigError(
                    f"templates.{name}.targets[{i}]",
                    f"unknown target {target_name!r} (known: {known})",
                )
        for label, value in template.requires.items():
            if not any(t.labels.get(label) == value for t in runtime.targets.values()):
                raise ConfigError(
                    f"templates.{name}.requires.{label}",
                    f"no target has the label {label} = {value!r}",
                )


def _check_context(key: str, target: TargetSettings, kube: KubernetesSettings) -> None:
    """The target's context must be in its kubeconfig (read as kubectl would)."""
    source = target.kubeconfig or kube.kubeconfig or os.environ.get("KUBECONFIG", "")
    if not source:
        default = Path.home() / ".kube" / "config"
        source = str(default) if default.exists() else ""
    if not source:
        raise ConfigError(
            f"{key}.context",
            f"context {target.context!r} needs a kubeconfig; set {key}.kubeconfig",
        )
    names: set[str] = set()
    for path in source.split(os.pathsep):
        try:
            import yaml

            data = yaml.safe_load(Path(path).expanduser().read_text(encoding="utf-8")) or {}
        except FileNotFoundError:
            raise ConfigError(f"{key}.kubeconfig", f"file {path!r} does not exist") from None
        except Exception as e:  # unreadable or not YAML
            raise ConfigError(f"{key}.kubeconfig", f"cannot read {path!r}: {e}") from None
        for context in data.get("contexts") or [] if isinstance(data, dict) else []:
            if isinstance(context, dict) and context.get("name"):
                names.add(str(context["name"]))
    if target.context not in names:
        known = ", ".join(sorted(names)) or "none"
        raise ConfigError(
            f"{key}.context", f"context {target.context!r} is not in {source} (known: {known})"
        )


def _check_policies(settings: Settings) -> None:
    """Idle timeouts and maximum ages are > 0 where set; standby fits in the pool."""
    pool = settings.pool
    timed: list[tuple[str, float | None]] = [
        ("pool.idle_timeout", pool.idle_timeout),
        ("pool.max_age", pool.max_age),
    ]
    for name, template in settings.templates.items():
        timed.append((f"templates.{name}.idle_timeout", template.idle_timeout))
        timed.append((f"templates.{name}.max_age", template.max_age))
    for key, value in timed:
        if value is not None and not (0 < value < float("inf")):
            raise ConfigError(key, f"must be a finite number > 0 seconds, got {value}")
    standby = {n: t.standby for n, t in settings.templates.items() if t.standby}
    total = sum(standby.values())
    if total > pool.max_sessions:
        named = ", ".join(f"{n} {c}" for n, c in sorted(standby.items()))
        first = min(standby)
        raise ConfigError(
            f"templates.{first}.standby",
            f"{total} standby sessions in all ({named}) exceed the pool's capacity "
            f"pool.max_sessions = {pool.max_sessions}",
        )
    for name, template in settings.templates.items():
        path = template.credentials_file
        if path and (path.startswith("/") or ".." in Path(path).parts or "\0" in path):
            raise ConfigError(
                f"templates.{name}.credentials_file",
                f"must be a relative path inside the session's working directory, got {path!r}",
            )


def _check_template_safety(key: str, template: Template) -> None:
    for i, item in enumerate(template.command):
        if "{user}" in item:
            raise ConfigError(
                f"{key}.command[{i}]",
                "the raw {user} is unsafe in a command (a user such as '/' or '--x' would "
                "become a path or an option); use {user_slug}",
            )
    for i, name in enumerate(template.credentials):
        reason = refused_reason(name)
        if reason is not None:
            raise ConfigError(f"{key}.credentials[{i}]", f"{name!r} {reason}")


def _positive(key: str, value: int) -> None:
    if value < 1:
        raise ConfigError(key, f"must be >= 1, got {value}")


def _non_negative(key: str, value: float) -> None:
    if value < 0:
        raise ConfigError(key, f"must be >= 0, got {value}")


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(key, f"must be one of {', '.join(choices)}; got {value!r}")


def _describe(value: object) -> str:
    return f"{type(value).__name__} {value!r}"


def _convert(key: str, value: Any, hint: Any) -> Any:
    """Check and convert one TOML value to the annotated type."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(inner) == 1:  # Optional[X]: TOML has no null, so the value is an X
            return _convert(key, value, inner[0])
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(key, f"must be true or false, got {_describe(value)}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(key, f"must be an integer, got {_describe(value)}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(key, f"must be a number, got {_describe(value)}")
        return float(value)
    if hint is str:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a string, got {_describe(value)}")
        return value
    if hint is Path:
        if not isinstance(value, str):
            raise ConfigError(key, f"must be a path string, got {_describe(value)}")
        return Path(value).expanduser()
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        instance = hint()
        _merge_dataclass(key, instance, value)
        return instance
    if origin is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(key, f"must be a list, got {_describe(value)}")
        return [_convert(f"{key}[{i}]", v, item) for i, v in enumerate(value)]
    if origin is dict:
        _, item = typing.get_args(hint)
        if not isinstance(value, dict):
            raise ConfigError(key, f"must be a table, got {_describe(value)}")
        return {str(k): _convert(f"{key}.{k}", v, item) for k, v in value.items()}
    raise ConfigError(key, f"cannot be set from a file ({hint})")


def _merge_dataclass(key: str, target: Any, table: Any) -> None:
    """Set the fields of dataclass ``target`` from a TOML table, checking every key."""
    if not isinstance(table, dict):
        raise ConfigError(key, f"must be a table, got {_describe(table)}")
    hints = typing.get_type_hints(type(target))
    names = {f.name for f in dataclasses.fields(target)}
    for name, value in table.items():
        dotted = f"{key}.{name}" if key else name
        if name not in names:
            known = ", ".join(sorted(names))
            raise ConfigError(dotted, f"unknown key (known keys here: {known})")
        hint = hints[name]
        current = getattr(target, name)
        if dataclasses.is_dataclass(current):
            _merge_dataclass(dotted, current, value)
        else:
            setattr(target, name, _convert(dotted, value, hint))


def _merge_templates(settings: Settings, table: Any) -> None:
    if not isinstance(table, dict):
        raise ConfigError("templates", f"must be a table of tables, got {_describe(table)}")
    for name, body in table.items():
        key = f"templates.{name}"
        if not name or not all(c.isalnum() or c in "-_" for c in name):
            raise ConfigError(key, "template names may hold only letters, digits, - and _")
        template = settings.templates.get(name) or Template(name=name)
        if not isinstance(body, dict):
            raise ConfigError(key, f"must be a table, got {_describe(body)}")
        if "name" in body:
            raise ConfigError(f"{key}.name", "is taken from the table name; remove it")
        _merge_dataclass(key, template, body)
        settings.templates[name] = template


def settings_from_dict(data: dict[str, Any], settings: Settings | None = None) -> Settings:
    """Apply a parsed TOML document over ``settings`` (defaults when None) and validate."""
    settings = settings or Settings()
    data = dict(data)
    if "templates" in data:
        _merge_templates(settings, data.pop("templates"))
    _merge_dataclass("", settings, data)
    pool_table = data.get("pool")
    explicit = isinstance(pool_table, dict) and "max_sessions" in pool_table
    if settings.runtime.kind == "multi" and not explicit and settings.runtime.targets:
        settings.pool.max_sessions = settings.runtime.total_capacity
    settings.validate()
    return settings


DECLARED_TWICE = re.compile(r"Cannot (?:declare|overwrite a value) \(([^)]*)\) twice")
"""How ``tomllib`` says a table was declared twice: the key is named in our error."""


def load_settings(path: str | Path | None = None) -> Settings:
    """Defaults, overlaid with the TOML file at ``path`` when given."""
    if path is None:
        settings = Settings()
        settings.validate()
        return settings
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError("--config", f"file {str(file)!r} does not exist") from None
    except OSError as e:
        raise ConfigError("--config", f"cannot read {str(file)!r}: {e.strerror}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        twice = DECLARED_TWICE.search(str(e))
        if twice is not None:
            dotted = ".".join(re.findall(r"'([^']*)'", twice.group(1)))
            what = "target name" if dotted.startswith("runtime.targets.") else "table"
            raise ConfigError(dotted, f"duplicate {what} in {str(file)!r}: {e}") from None
        raise ConfigError(str(file), f"is not valid TOML: {e}") from None
    return settings_from_dict(data)


def apply_overrides(settings: Settings, overrides: dict[str, Any]) -> Settings:
    """Set dotted keys (``pool.max_sessions``) from flags or env vars, then validate."""
    for dotted, value in overrides.items():
        if value is None:
            continue
        *path, name = dotted.split(".")
        target: Any = settings
        for part in path:
            target = getattr(target, part)
        hint = typing.get_type_hints(type(target))[name]
        if typing.get_origin(hint) in (typing.Union, types.UnionType):
            hint = next(a for a in typing.get_args(hint) if a is not type(None))
        if isinstance(value, str) and hint is not str and hint is not Path:
            value = _parse_scalar(dotted, value, hint)
        setattr(target, name, _convert(dotted, value, hint))
    settings.validate()
    return settings


def _parse_scalar(key: str, text: str, hint: Any) -> Any:
    try:
        if hint is int:
            return int(text)
        if hint is float:
            return float(text)
        if hint is bool:
            lowered = text.strip().lower()
            if lowered in ("1", "true", "yes", "on"):
                return True
            if lowered in ("0", "false", "no", "off"):
                return False
    except ValueError:
        pass
    raise ConfigError(key, f"cannot read {text!r} as {getattr(hint, '__name__', hint)}")
