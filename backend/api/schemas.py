"""Pydantic models of the HTTP API: what ``/openapi.json`` promises, field by field.

The request model validates strictly (``"true"`` is not a boolean, unknown keys are
refused) so a typo such as ``"resue": false`` fails loudly instead of being ignored.
Response models document the shapes; the hot routes serialise plain dicts themselves
(see ``backend.api.routes``) and these models are never run over them, so they must be
kept in step with ``Session.to_dict`` and ``HealthSnapshot``; the schemathesis test in
``tests/backend/api`` checks every response against them.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, WithJsonSchema

from backend.events import EventKind
from backend.models import MAX_USER_LENGTH, SessionState

__all__ = [
    "AcquireRequest",
    "AcquireOut",
    "BulkDeleteOut",
    "DrainOut",
    "DrainRequest",
    "ErrorBody",
    "ErrorOut",
    "EventOut",
    "HealthOut",
    "LogsOut",
    "OrphanOut",
    "ResourcesOut",
    "SessionOut",
    "TemplateOut",
    "TunnelOut",
]

# Printable text, not starting or ending with whitespace (``"api15 "`` would be a user apart
# from ``api15``), not starting with "-" (it would read as an option on a command line);
# control characters (C0, DEL, C1) and bidirectional controls would corrupt or disguise
# logs and screens. The pool checks the same (``validate_user``); this puts it in the
# schema. No lookahead: pydantic's regex engine has none.
_USER_BAD = r"\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069"
USER_PATTERN = rf"^[^\s\-{_USER_BAD}](?:[^{_USER_BAD}]*[^\s{_USER_BAD}])?$"
ENV_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_]{0,127}$"

UserName = Annotated[
    str, StringConstraints(min_length=1, max_length=MAX_USER_LENGTH, pattern=USER_PATTERN)
]
EnvName = Annotated[str, StringConstraints(pattern=ENV_NAME_PATTERN)]
MAX_CREDENTIALS = 100
NO_NUL_PATTERN = r"^[^\x00]*$"
"""Credential values reach the workload's environment, which cannot hold NUL."""
Credentials = Annotated[
    dict[EnvName, Annotated[str, StringConstraints(max_length=8192, pattern=NO_NUL_PATTERN)]],
    Field(max_length=MAX_CREDENTIALS),
    # pydantic would say ``patternProperties``, which lets other names through in the schema
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": ENV_NAME_PATTERN},
            "additionalProperties": {
                "type": "string",
                "maxLength": 8192,
                "pattern": NO_NUL_PATTERN,
            },
            "maxProperties": MAX_CREDENTIALS,
        }
    ),
]


LABEL_PATTERN = r"^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$"
Labels = Annotated[
    dict[
        Annotated[str, StringConstraints(pattern=LABEL_PATTERN)],
        Annotated[str, StringConstraints(max_length=63, pattern=NO_NUL_PATTERN)],
    ],
    Field(max_length=16),
    WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"pattern": LABEL_PATTERN},
            "additionalProperties": {"type": "string", "maxLength": 63, "pattern": NO_NUL_PATTERN},
            "maxProperties": 16,
        }
    ),
]
"""Target labels a request requires (``zone``: ``east``)."""


class AcquireRequest(BaseModel):
    """``POST /sessions``: the user's session for a template."""

    model_config = ConfigDict(extra="forbid", strict=True)

    user: UserName = Field(description="Who the session belongs to; the reuse key with template.")
    template: Annotated[str, StringConstraints(min_length=1, max_length=200)] | None = Field(
        default=None, description="Template name; the configured default when omitted."
    )
    reuse: bool = Field(
        default=True,
        description="Hand back the user's ready session for this template if there is one; "
        "false always starts another session.",
    )
    wait: bool = Field(
        default=True,
        description="Answer 200 once the session is ready; false answers 202 at once.",
    )
    credentials: Credentials | None = Field(
        default=None,
        description="Environment variables for the workload (NAME: value). Never stored, "
        "logged or shown.",
    )
    requires: Labels | None = Field(
        default=None,
        description='Labels the target of a new session must carry (runtime.kind = "multi"), '
        'e.g. {"zone": "east"}; a label no target has is refused (422 naming it). A reuse '
        "hands back the user's session wherever it runs.",
    )


class TunnelOut(BaseModel):
    """The session's local endpoint and where it relays to."""

    host: str
    port: int
    target_host: str
    target_port: int
    listening: bool | None = Field(
        default=None, description="Whether the local port accepts connections now."
    )


class SessionOut(BaseModel):
    """A session as ``Session.to_dict`` renders it."""

    session_id: str = Field(description="`{user}-{template}-{8 hex}`, a DNS-1123 label.")
    user: str
    template: str
    state: SessionState
    phase: str = Field(description="What a starting session is doing now, for people.")
    created_at: float
    last_used_at: float
    ready_at: float | None
    age_s: float
    idle_s: float
    use_count: int
    tunnel: TunnelOut | None
    runtime_ref: str | None = Field(description="The pid (local) or Deployment name.")
    runtime: str | None
    target: str | None = Field(
        default=None, description='The target it runs on (runtime.kind = "multi"); else null.'
    )
    last_error: str | None
    cleanup: str | None = Field(description="After termination: how its cleanup ended.")
    last_active_at: float | None = Field(
        default=None, description="When its tunnel last carried traffic (sampled)."
    )
    pinned: bool = Field(default=False, description="Safe from eviction, culling, max age.")
    standby: bool = Field(default=False, description="A warm workload not yet claimed.")
    cull_at: float | None = Field(
        default=None,
        description="Epoch seconds when idle culling or the maximum age would stop it.",
    )
    pod: str | None = Field(
        default=None, description="The Kubernetes pod its tunnel reaches now (null: local)."
    )
    starting_since: float = Field(
        description="When its current start began: created_at, or the last recycle, "
        "replacement pod or failover (what a starting session's elapsed time counts from)."
    )
    recycles: int = Field(
        default=0, description="Workloads replaced under this id since podwarden started."
    )
    last_refresh_at: float | None = Field(
        default=None, description="When a background refresh last found it well."
    )
    cpu_percent: float | None = Field(
        default=None,
        description="CPU at the last resource sample, in percent of one core (100: one core "
        "busy); null when unknown.",
    )
    memory_bytes: int | None = Field(
        default=None,
        description="Memory at the last resource sample: RSS summed over its processes "
        "(measured) or its pod's memory request (requested); null when unknown.",
    )
    resources_source: Literal["measured", "requested"] | None = Field(
        default=None,
        description="Where cpu_percent and memory_bytes come from: `measured` (the local "
        "process group, or metrics.k8s.io) or `requested` (the pod's resource requests, when "
        "the cluster serves no metrics); null when there are none.",
    )


class AcquireOut(SessionOut):
    """``POST /sessions``: the session plus whether it was newly started."""

    is_new_session: bool
    took_ms: float


class ResourcesOut(BaseModel):
    """``/health``'s ``resources``: the host (local, measured) or the cluster (Kubernetes:
    nodes' allocatable against podwarden's pods' requests) at the last sample."""

    scope: Literal["host", "cluster"]
    source: Literal["measured", "requested"]
    cpu_cores: float | None = Field(description="Host logical CPUs, or allocatable cores.")
    cpu_used_cores: float | None = Field(description="Cores busy, or requested by the pods.")
    cpu_percent: float | None
    memory_bytes: int | None = Field(description="Host memory, or allocatable memory.")
    memory_used_bytes: int | None = Field(description="Memory in use, or requested.")
    memory_percent: float | None
    detail: str = Field(description="Why a figure is missing (e.g. nodes not readable).")
    sessions_cpu_percent: float = Field(description="The live sessions' CPU summed (% of a core).")
    sessions_memory_bytes: int = Field(description="The live sessions' memory summed.")
    sessions_source: Literal["measured", "requested", "mixed"] | None
    sampled_at: float | None
    interval_s: float


class TargetOut(BaseModel):
    """One target's heartbeat state (``backend.runtime.multi.Target``)."""

    name: str
    runtime: str
    state: Literal["healthy", "degraded", "lost"]
    active_sessions: int
    max_sessions: int
    weight: float
    labels: dict[str, str]
    latency_ms: float | None = Field(description="The last good heartbeat's round trip.")
    last_contact: float | None = Field(description="Unix time of the last good heartbeat.")
    last_error: str
    heartbeats: int
    heartbeat_failures: int


class HealthOut(BaseModel):
    """``GET /health``; see ``backend.health.HealthSnapshot`` for each field's meaning."""

    status: Literal["healthy", "degraded", "draining"]
    active_sessions: int
    max_sessions: int
    session_capacity: str = Field(examples=["2/10"])
    persistent_sessions: int
    starting_sessions: int
    failed_sessions: int
    queued_acquires: int
    users: int
    max_sessions_per_user: int | None
    runtime: str
    runtime_ok: bool
    runtime_workloads: int | None
    orphans: list[str] | None = Field(
        default=None, description="Orphaned workloads' session ids; only with the token."
    )
    ghosts: list[str] | None = Field(
        default=None, description="Ghost sessions' ids; only with the token."
    )
    orphan_count: int
    ghost_count: int
    store_ok: bool
    degraded_reasons: list[str]
    uptime_s: float
    refresh_interval_s: float
    last_refresh_at: float | None
    draining: bool
    draining_since: float | None
    standby: int
    pinned_sessions: int
    next_eviction: str | None = None
    resources: ResourcesOut | None = None
    targets: list[TargetOut] = Field(
        description='Each target of a multi-target pool (runtime.kind = "multi"); empty else.'
    )


class TemplateOut(BaseModel):
    """A configured template (never its command line or env: they may hold secrets)."""

    name: str
    port: int | None = Field(
        description="Container port (Kubernetes); null on the local runtime, which picks a "
        "free port per session"
    )
    readiness: str
    image: str | None
    keepalive: bool
    default: bool


class LogsOut(BaseModel):
    """A session's recent workload log lines, oldest first."""

    session_id: str
    lines: list[str]


class EventOut(BaseModel):
    """One event, as ``GET /events/recent`` lists it and ``GET /events`` streams it."""

    seq: int
    ts: float
    kind: EventKind
    session_id: str | None
    user: str | None
    message: str
    data: dict[str, Any]


class OrphanOut(BaseModel):
    """``DELETE /orphans/{id}``: the removal has begun."""

    session_id: str
    status: Literal["removing"]


class DrainRequest(BaseModel):
    """``POST /pool/drain``."""

    model_config = ConfigDict(extra="forbid", strict=True)

    evict_idle: bool = Field(
        default=False, description="Also stop every session as soon as it is idle."
    )


class DrainOut(BaseModel):
    """The pool's drain: ``POST /pool/drain`` and ``/pool/undrain``."""

    draining: bool
    since: float | None
    evict_idle: bool


class BulkDeleteOut(BaseModel):
    """``DELETE /sessions?user=NAME``: the sessions whose ending has begun."""

    user: str
    count: int
    session_ids: list[str]


class ErrorBody(BaseModel):
    """What went wrong; ``field`` names the request field at fault, when there is one."""

    code: str = Field(examples=["invalid_request"])
    message: str
    field: str | None = None


class ErrorOut(BaseModel):
    """Every error response: ``{"error": {"code", "message"(, "field")}}``."""

    error: ErrorBody
