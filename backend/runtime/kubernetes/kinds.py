"""The resource kinds podwarden touches, and their REST paths.

The client speaks plain REST paths instead of the generated ``*Api`` classes: a session
needs six kinds, their URLs follow one pattern, and a path is what RBAC rules, kmock
reactions and API-call counters are written against. Keeping them here gives one list
to compare with ``deploy/rbac.yaml``.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

__all__ = [
    "DEPLOYMENTS",
    "EVENTS",
    "Kind",
    "NAMESPACES",
    "NODES",
    "PODS",
    "REPLICASETS",
    "SECRETS",
    "SERVICES",
    "SESSION_KINDS",
]


@dataclass(frozen=True)
class Kind:
    """One resource: where it lives in the API and how people call it."""

    name: str
    """Singular, lower case, as in ``deployment/<name>``."""
    prefix: str
    """``/api/v1`` or ``/apis/<group>/<version>``."""
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
        """The collection (``name`` None) or object path, with an optional subresource."""
        parts = [self.prefix]
        if self.namespaced:
            if namespace is None:
                raise ValueError(f"{self.plural} are namespaced; a namespace is needed")
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=":"))
        if sub:
            parts.append(sub)
        return "/".join(parts)


DEPLOYMENTS = Kind("deployment", "/apis/apps/v1", "deployments")
REPLICASETS = Kind("replicaset", "/apis/apps/v1", "replicasets")
PODS = Kind("pod", "/api/v1", "pods")
SERVICES = Kind("service", "/api/v1", "services")
SECRETS = Kind("secret", "/api/v1", "secrets")
EVENTS = Kind("event", "/api/v1", "events")
NAMESPACES = Kind("namespace", "/api/v1", "namespaces", namespaced=False)
NODES = Kind("node", "/api/v1", "nodes", namespaced=False)
"""Read only, for the cluster's allocatable (``usage``); needs ``deploy/rbac-nodes.yaml``."""

SESSION_KINDS: tuple[Kind, ...] = (DEPLOYMENTS, REPLICASETS, PODS, SERVICES, SECRETS)
"""Everything a session may leave behind; what ``stop`` verifies is gone."""
