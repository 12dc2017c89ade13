"""The objects of a session, compared as whole dicts (kubespawner's ``make_pod`` tests)."""

from __future__ import annotations

from backend.runtime.kubernetes import manifests as mf
from backend.templates import Template

LABELS = {
    "app.kubernetes.io/managed-by": "podwarden",
    "podwarden.io/session": "alice-browser-0a1b2c3d",
    "podwarden.io/user": "alice",
    "podwarden.io/template": "browser",
}
ANNOTATIONS = {"podwarden.io/user": "alice", "podwarden.io/template": "browser"}
SELECTOR = {
    "app.kubernetes.io/managed-by": "podwarden",
    "podwarden.io/session": "alice-browser-0a1b2c3d",
}
OWNER = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "name": "alice-browser-0a1b2c3d",
    "uid": "uid-1",
}
SID = "alice-browser-0a1b2c3d"


def browser(**fields: object) -> Template:
    return Template(name="browser", image="example/browser:1", port=3000, **fields)  # type: ignore[arg-type]


def test_deployment_of_a_plain_template() -> None:
    assert mf.deployment(SID, "pw", "alice", browser()) == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": SID,
            "namespace": "pw",
            "labels": LABELS,
            "annotations": ANNOTATIONS,
        },
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": SELECTOR},
            "strategy": {"type": "Recreate"},
            "template": {
                "metadata": {"labels": LABELS, "annotations": ANNOTATIONS},
                "spec": {
                    "containers": [
                        {
                            "name": "session",
                            "image": "example/browser:1",
                            "ports": [
                                {"name": "session", "containerPort": 3000, "protocol": "TCP"}
                            ],
                            "resources": {
                                "requests": {"cpu": "250m", "memory": "512Mi"},
                                "limits": {"cpu": "250m", "memory": "512Mi"},
                            },
                            "readinessProbe": {
                                "tcpSocket": {"port": 3000},
                                "periodSeconds": 1,
                                "timeoutSeconds": 2,
                                "failureThreshold": 3,
                            },
                        }
                    ],
                    "terminationGracePeriodSeconds": 5,
                    "automountServiceAccountToken": False,
                    "enableServiceLinks": False,
                },
            },
        },
    }


def test_deployment_with_every_template_option() -> None:
    template = browser(
        cpu="500m",
        memory="1Gi",
        cpu_limit="2",
        memory_limit="2Gi",
        readiness="http",
        readiness_path="/json/version",
        env={"B": "2", "A": "1"},
        image_pull_secret="regcred",
        node_selector={"disktype": "ssd"},
    )
    pod = mf.deployment(SID, "pw", "alice", template, with_secret=True)["spec"]["template"]
    assert pod["spec"]["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["spec"]["nodeSelector"] == {"disktype": "ssd"}
    container = pod["spec"]["containers"][0]
    assert container["resources"] == {
        "requests": {"cpu": "500m", "memory": "1Gi"},
        "limits": {"cpu": "2", "memory": "2Gi"},
    }
    assert container["readinessProbe"] == {
        "httpGet": {"path": "/json/version", "port": 3000},
        "periodSeconds": 1,
        "timeoutSeconds": 2,
        "failureThreshold": 3,
    }
    assert container["env"] == [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]
    assert container["envFrom"] == [{"secretRef": {"name": SID}}]


def test_service_is_owned_by_the_deployment() -> None:
    assert mf.service(SID, "pw", "alice", browser(), "uid-1") == {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": SID,
            "namespace": "pw",
            "labels": LABELS,
            "annotations": ANNOTATIONS,
            "ownerReferences": [OWNER],
        },
        "spec": {
            "type": "ClusterIP",
            "selector": SELECTOR,
            "ports": [{"name": "session", "port": 3000, "targetPort": 3000, "protocol": "TCP"}],
        },
    }


def test_secret_holds_credentials_only_in_string_data() -> None:
    body = mf.secret(SID, "pw", "alice", "browser", {"PASSWORD": "hunter2"}, "uid-1")
    assert body == {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": SID,
            "namespace": "pw",
            "labels": LABELS,
            "annotations": ANNOTATIONS,
            "ownerReferences": [OWNER],
        },
        "type": "Opaque",
        "stringData": {"PASSWORD": "hunter2"},
    }
    assert "hunter2" not in str(body["metadata"])
    assert "ownerReferences" not in mf.secret(SID, "pw", "a", "b", {})["metadata"]


def test_raw_user_name_goes_to_annotations_and_a_safe_one_to_labels() -> None:
    body = mf.deployment(SID, "pw", "Alice Smith/ops@corp", browser())
    assert body["metadata"]["annotations"]["podwarden.io/user"] == "Alice Smith/ops@corp"
    label = body["metadata"]["labels"]["podwarden.io/user"]
    assert label.startswith("Alice-Smith-ops-corp-") and len(label) <= 63


def test_label_value() -> None:
    assert mf.label_value("alice") == "alice"
    assert mf.label_value("a.b_c-d") == "a.b_c-d"
    changed = mf.label_value("Jörg Müller")
    assert changed != mf.label_value("Jorg Muller")
    assert mf.label_value("x" * 100) != mf.label_value("x" * 101)
    assert len(mf.label_value("x" * 100)) <= 63
    assert mf.label_value("!!!").startswith("u-")
    assert mf.label_value("-lead-") != "lead"


def test_selectors_and_secret_keys() -> None:
    assert mf.MANAGED_SELECTOR == "app.kubernetes.io/managed-by=podwarden"
    assert mf.session_selector(SID) == (
        "app.kubernetes.io/managed-by=podwarden,podwarden.io/session=" + SID
    )
    assert mf.secret_key_problem("API_TOKEN") is None
    assert mf.secret_key_problem("bad key") is not None
    assert mf.secret_key_problem("") is not None
