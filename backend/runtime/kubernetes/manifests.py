"""The objects of one session, as plain dicts built by pure functions.

Why dicts and not the client's typed models: the API server speaks JSON, the tests compare
dicts for equality (as kubespawner does with ``make_pod``), and nothing here needs the
``kubernetes`` package, so this module imports in microseconds.

Every object of a session is named after the ``session_id`` and carries three labels::

    app.kubernetes.io/managed-by = podwarden       what recovery lists
    podwarden.io/session         = <session id>    what groups a session's objects
    podwarden.io/user            = <label-safe user name>

plus ``podwarden.io/template``. Labels must be short and plain, so the raw user name and
template live in annotations. Credentials only ever go into the Secret's ``stringData``:
never into labels, annotations, the Deployment, a log line or an event.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

from backend.templates import Template

__all__ = [
    "ANNOTATION_CLAIMED",
    "ANNOTATION_TEMPLATE",
    "ANNOTATION_USER",
    "CONTAINER_NAME",
    "DEFAULT_GRACE_SECONDS",
    "LABEL_MANAGED_BY",
    "LABEL_SESSION",
    "LABEL_TEMPLATE",
    "LABEL_USER",
    "MANAGED_BY",
    "MANAGED_SELECTOR",
    "deployment",
    "label_value",
    "namespace",
    "owner_reference",
    "secret",
    "secret_key_problem",
    "service",
    "session_labels",
    "session_selector",
]

LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_SESSION = "podwarden.io/session"
LABEL_USER = "podwarden.io/user"
LABEL_TEMPLATE = "podwarden.io/template"
ANNOTATION_USER = "podwarden.io/user"
ANNOTATION_TEMPLATE = "podwarden.io/template"
ANNOTATION_CLAIMED = "podwarden.io/claimed-as"
"""On a claimed standby's Deployment and pod: the session id it now serves. Object names
and the ``session`` label (the Deployment's selector) cannot change without a new pod,
so they keep the standby's id."""
MANAGED_BY = "podwarden"
MANAGED_SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"
"""Label selector of everything podwarden owns in a namespace."""

CONTAINER_NAME = "session"
DEFAULT_GRACE_SECONDS = 5
"""Pod ``terminationGracePeriodSeconds``: a session is disposable, cleanup should be quick."""

_LABEL_BAD = re.compile(r"[^A-Za-z0-9._-]+")
_SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")


def label_value(text: str) -> str:
    """``text`` as a valid label value (<= 63 chars, alphanumeric at both ends).

    A value that had to change gets a short hash of the original, so two different users
    never share a label value by accident.
    """
    cleaned = _LABEL_BAD.sub("-", text).strip("-._")
    if cleaned == text and 0 < len(cleaned) <= 63:
        return cleaned
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    head = cleaned[:54].strip("-._")
    return f"{head}-{digest}" if head else f"u-{digest}"


def session_labels(session_id: str, user: str, template: str) -> dict[str, str]:
    """The labels of every object of a session (and of its pods)."""
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_SESSION: session_id,
        LABEL_USER: label_value(user),
        LABEL_TEMPLATE: label_value(template),
    }


def session_selector(session_id: str) -> str:
    """Label selector of one session's objects (ReplicaSets and Pods included)."""
    return f"{MANAGED_SELECTOR},{LABEL_SESSION}={session_id}"


def _annotations(user: str, template: str) -> dict[str, str]:
    return {ANNOTATION_USER: user, ANNOTATION_TEMPLATE: template}


def _metadata(session_id: str, ns: str, user: str, template: str) -> dict[str, Any]:
    return {
        "name": session_id,
        "namespace": ns,
        "labels": session_labels(session_id, user, template),
        "annotations": _annotations(user, template),
    }


def owner_reference(deployment_name: str, uid: str) -> dict[str, Any]:
    """An owner reference to a session's Deployment (garbage collection backs up stop)."""
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": deployment_name,
        "uid": uid,
    }


def _probe(template: Template) -> dict[str, Any]:
    if template.readiness == "http":
        action: dict[str, Any] = {
            "httpGet": {"path": template.readiness_path or "/", "port": template.port}
        }
    else:
        action = {"tcpSocket": {"port": template.port}}
    return {**action, "periodSeconds": 1, "timeoutSeconds": 2, "failureThreshold": 3}


def deployment(
    session_id: str,
    ns: str,
    user: str,
    template: Template,
    *,
    with_secret: bool = False,
    grace_seconds: int = DEFAULT_GRACE_SECONDS,
) -> dict[str, Any]:
    """One replica of the template's image, recreated (never two pods of one session)."""
    labels = session_labels(session_id, user, template.name)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": template.image,
        "ports": [{"name": "session", "containerPort": template.port, "protocol": "TCP"}],
        "resources": {
            "requests": {"cpu": template.cpu, "memory": template.memory},
            "limits": {
                "cpu": template.cpu_limit or template.cpu,
                "memory": template.memory_limit or template.memory,
            },
        },
        "readinessProbe": _probe(template),
    }
    if template.env:
        container["env"] = [{"name": k, "value": v} for k, v in sorted(template.env.items())]
    if with_secret:
        container["envFrom"] = [{"secretRef": {"name": session_id}}]
    pod_spec: dict[str, Any] = {
        "containers": [container],
        "terminationGracePeriodSeconds": grace_seconds,
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
    }
    if template.image_pull_secret:
        pod_spec["imagePullSecrets"] = [{"name": template.image_pull_secret}]
    if template.node_selector:
        pod_spec["nodeSelector"] = dict(template.node_selector)
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(session_id, ns, user, template.name),
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_SESSION: session_id}},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": _annotations(user, template.name),
                },
                "spec": pod_spec,
            },
        },
    }


def service(
    session_id: str, ns: str, user: str, template: Template, deployment_uid: str
) -> dict[str, Any]:
    """A ClusterIP Service in front of the session's pod, owned by its Deployment."""
    meta = _metadata(session_id, ns, user, template.name)
    meta["ownerReferences"] = [owner_reference(session_id, deployment_uid)]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {
            "type": "ClusterIP",
            "selector": {LABEL_MANAGED_BY: MANAGED_BY, LABEL_SESSION: session_id},
            "ports": [
                {
                    "name": "session",
                    "port": template.port,
                    "targetPort": template.port,
                    "protocol": "TCP",
                }
            ],
        },
    }


def secret(
    session_id: str,
    ns: str,
    user: str,
    template: str,
    credentials: dict[str, str],
    deployment_uid: str | None = None,
) -> dict[str, Any]:
    """The session's credentials, consumed by the container through ``envFrom``.

    Created before the Deployment (so the pod never starts without it), then given its
    owner reference once the Deployment's uid is known (``deployment_uid`` None).
    """
    meta = _metadata(session_id, ns, user, template)
    if deployment_uid:
        meta["ownerReferences"] = [owner_reference(session_id, deployment_uid)]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": meta,
        "type": "Opaque",
        "stringData": dict(credentials),
    }


def secret_key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a Secret key / environment variable name, or None."""
    if not key or len(key) > 253 or not _SECRET_KEY.match(key):
        return f"credential name {key!r} may hold only letters, digits, '-', '_' and '.'"
    return None


def namespace(name: str) -> dict[str, Any]:
    """A namespace, labelled so people can see who made it."""
    return {
        "apiVersion": "v1",
        "kind": "Namespace",
        "metadata": {"name": name, "labels": {LABEL_MANAGED_BY: MANAGED_BY}},
    }
