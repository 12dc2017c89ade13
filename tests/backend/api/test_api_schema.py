"""Schemathesis over ``/openapi.json``: no server error and no response outside the schema.

The server runs for real (uvicorn in a thread with its own loop, in-memory runtime), and
every operation gets generated valid and invalid requests with the bearer token. The
event stream never ends by design, so it is tested in ``test_api_stream`` instead.
Examples per operation are bounded so the whole run stays well under a minute.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.config._checks import NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES

from backend.config import Settings
from tests.backend.api.conftest import AUTH, TOKEN, ThreadedServer, run_threaded


@pytest.fixture
def schema_server(settings: Settings) -> Iterator[ThreadedServer]:
    settings.pool.max_sessions = 20
    yield from run_threaded(settings)


@pytest.fixture
def api_schema(schema_server: ThreadedServer) -> Any:
    # A body over the size limit is refused with 413 before it is read: a rejection too.
    rejections = [*NEGATIVE_DATA_REJECTION_EXPECTED_STATUSES, "413"]
    config = schemathesis.Config.from_dict(
        {
            # through the declared scheme, so that generated cases without the token stay so
            "auth": {"openapi": {"bearer": {"bearer": TOKEN}}},
            "checks": {"negative_data_rejection": {"expected-statuses": rejections}},
        }
    )
    loaded = schemathesis.openapi.from_url(
        f"{schema_server.url}/openapi.json", headers=AUTH, config=config
    )
    loaded.config.base_url = schema_server.url
    return loaded


schema = schemathesis.pytest.from_fixture("api_schema").exclude(path="/events")


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_api_matches_its_schema(case: Any, schema_server: ThreadedServer) -> None:
    case.call_and_validate(base_url=schema_server.url)


def test_schema_documents_every_route_and_error(schema_server: ThreadedServer) -> None:
    import httpx

    document = httpx.get(f"{schema_server.url}/openapi.json", headers=AUTH).json()
    paths = document["paths"]
    assert set(paths) == {
        "/health",
        "/sessions",
        "/sessions/{session_id}",
        "/sessions/{session_id}/logs",
        "/templates",
        "/events",
        "/events/recent",
        "/metrics",
        "/orphans/{session_id}",
        "/sessions/{session_id}/pin",
        "/sessions/{session_id}/unpin",
        "/pool/drain",
        "/pool/undrain",
    }
    assert paths["/health"]["get"]["security"] == []
    post = paths["/sessions"]["post"]
    assert post["security"] == [{"bearer": []}]
    assert {"200", "202", "401", "422", "503"} <= set(post["responses"])
    assert "Retry-After" in post["responses"]["503"]["headers"]
    error_ref = post["responses"]["422"]["content"]["application/json"]["schema"]["$ref"]
    assert error_ref.endswith("/ErrorOut")
    assert paths["/sessions/{session_id}"]["delete"]["responses"]["202"]
    assert "text/event-stream" in paths["/events"]["get"]["responses"]["200"]["content"]
    assert document["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    # every 422 is ours ({"error": ...}), not FastAPI's default validation error model
    assert "HTTPValidationError" not in document["components"]["schemas"]
