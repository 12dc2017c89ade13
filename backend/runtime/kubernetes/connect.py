"""Finding the cluster the way kubectl does.

Order: ``runtime.kubernetes.kubeconfig``, else ``$KUBECONFIG`` (a ``:``-separated list is
merged, as kubectl merges it), else ``~/.kube/config``; when none of these exists and the
process runs in a pod, the in-cluster service account. The context is the configured one or
the kubeconfig's current context. The namespace is the configured one, else the context's,
else the pod's own (in-cluster), else ``default``.

This is the first module that imports the ``kubernetes`` package (~0.45 s); it does so inside
``load_connection``, which the runtime runs in a worker thread, so neither the command line
nor the event loop pays for it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.config import KubernetesSettings
from backend.errors import ConfigError

__all__ = ["Connection", "load_connection"]

_SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass
class Connection:
    """A loaded client configuration and where it points."""

    configuration: Any
    """A ``kubernetes.client.Configuration``."""
    host: str
    context: str
    """The kubeconfig context used, or ``in-cluster``."""
    namespace: str
    source: str
    """Where the configuration came from (a kubeconfig path or ``in-cluster``)."""


def _kubeconfig_source(settings: KubernetesSettings) -> str | None:
    if settings.kubeconfig:
        return settings.kubeconfig
    env = os.environ.get("KUBECONFIG", "")
    if env:
        return env
    default = Path.home() / ".kube" / "config"
    return str(default) if default.exists() else None


def load_connection(settings: KubernetesSettings) -> Connection:
    """Load the client configuration; raise ``ConfigError`` saying what to fix."""
    from kubernetes import client as k8s_client
    from kubernetes import config as k8s_config
    from kubernetes.config.config_exception import ConfigException

    configuration = k8s_client.Configuration()
    source = _kubeconfig_source(settings)
    namespace = settings.namespace
    if source is not None:
        try:
            contexts, current = k8s_config.list_kube_config_contexts(config_file=source)
            chosen = current
            if settings.context:
                chosen = next((c for c in contexts if c.get("name") == settings.context), None)
                if chosen is None:
                    known = ", ".join(sorted(str(c.get("name")) for c in contexts)) or "none"
                    raise ConfigError(
                        "runtime.kubernetes.context",
                        f"context {settings.context!r} is not in {source} (known: {known})",
                    )
            k8s_config.load_kube_config(
                config_file=source,
                context=settings.context or None,
                client_configuration=configuration,
                persist_config=False,
            )
        except ConfigError:
            raise
        except Exception as e:  # unreadable, unparsable (YAML), incomplete: the file's fault
            raise ConfigError(
                "runtime.kubernetes.kubeconfig", f"cannot use kubeconfig {source}: {e}"
            ) from e
        context = str((chosen or {}).get("name") or "")
        if not namespace:
            namespace = str(((chosen or {}).get("context") or {}).get("namespace") or "default")
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        try:
            k8s_config.load_incluster_config(client_configuration=configuration)
        except ConfigException as e:
            raise ConfigError("runtime.kubernetes", f"in-cluster configuration: {e}") from e
        context = source = "in-cluster"
        if not namespace:
            try:
                namespace = _SA_NAMESPACE.read_text(encoding="utf-8").strip() or "default"
            except OSError:
                namespace = "default"
    else:
        raise ConfigError(
            "runtime.kubernetes.kubeconfig",
            "no kubeconfig found (runtime.kubernetes.kubeconfig, $KUBECONFIG, ~/.kube/config) "
            "and not running in a pod; point podwarden at a cluster with one of them",
        )
    # Retries are podwarden's (counted, with backoff and Retry-After), not urllib3's.
    configuration.retries = False
    configuration.connection_pool_maxsize = max(4, settings.api_threads) + 8
    return Connection(configuration, str(configuration.host), context, namespace, source)
