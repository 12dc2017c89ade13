"""Bad input of every kind: a 4xx whose JSON error names the field or the problem.

Never a 500, never a traceback, never the rejected value echoed back (it may be a
credential).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import httpx
import pytest

from backend.service import Backend
from tests.backend.api.conftest import error_of

JSON = {"content-type": "application/json"}


@pytest.mark.parametrize(
    ("body", "status", "code", "field"),
    [
        ({}, 422, "invalid_request", "user"),
        ({"template": "demo"}, 422, "invalid_request", "user"),
        ({"user": 42}, 422, "invalid_request", "user"),
        ({"user": ""}, 422, "invalid_request", "user"),
        ({"user": "   "}, 422, "invalid_request", "user"),
        ({"user": "api15 "}, 422, "invalid_request", "user"),
        ({"user": " api15"}, 422, "invalid_request", "user"),
        ({"user": "api15\u00a0"}, 422, "invalid_request", "user"),
        ({"user": "a\nb"}, 422, "invalid_request", "user"),
        ({"user": "x" * 129}, 422, "invalid_request", "user"),
        ({"user": None}, 422, "invalid_request", "user"),
        ({"user": "u", "reuse": "yes"}, 422, "invalid_request", "reuse"),
        ({"user": "u", "reuse": 1}, 422, "invalid_request", "reuse"),
        ({"user": "u", "wait": "false"}, 422, "invalid_request", "wait"),
        ({"user": "u", "template": 3}, 422, "invalid_request", "template"),
        ({"user": "u", "template": "nope"}, 422, "unknown_template", "template"),
        ({"user": "u", "resue": False}, 422, "invalid_request", "resue"),
        ({"user": "u", "credentials": "secret"}, 422, "invalid_request", "credentials"),
        ({"user": "u", "credentials": {"PASS": 1}}, 422, "invalid_request", "credentials.PASS"),
        ({"user": "u", "credentials": {"1BAD": "x"}}, 422, "invalid_request", "credentials.1BAD"),
        ({"user": "u", "credentials": {"K": "a\u0000b"}}, 422, "invalid_request", "credentials.K"),
        ([], 422, "invalid_request", "body"),
        ("user", 422, "invalid_request", "body"),
        (None, 422, "invalid_request", "body"),
    ],
)
async def test_bad_acquire_bodies(
    api: httpx.AsyncClient, body: object, status: int, code: str, field: str
) -> None:
    response = await api.post("/sessions", content=json.dumps(body), headers=JSON)
    assert response.status_code == status, response.text
    error = error_of(response)
    assert error["code"] == code
    assert error["field"] == field
    assert error["message"].startswith(field.split(".")[0])


async def test_unknown_template_lists_the_known_ones(api: httpx.AsyncClient) -> None:
    error = error_of(await api.post("/sessions", json={"user": "u", "template": "firefox"}))
    assert "firefox" in error["message"] and "demo" in error["message"]


@pytest.mark.parametrize("content", [b"{bad", b'{"user": "u",}', b"\xff\xfe", b'{"user": "u"'])
async def test_invalid_json_is_400(api: httpx.AsyncClient, content: bytes) -> None:
    response = await api.post("/sessions", content=content, headers=JSON)
    assert response.status_code == 400
    error = error_of(response)
    assert error["code"] == "invalid_json"
    assert error["field"] == "body"
    assert "not valid JSON" in error["message"]


async def test_empty_body_and_wrong_content_type(api: httpx.AsyncClient) -> None:
    empty = await api.post("/sessions", content=b"", headers=JSON)
    assert empty.status_code == 422
    assert error_of(empty)["message"] == "body: a JSON object is required"
    text = await api.post(
        "/sessions", content=b'{"user": "u"}', headers={"content-type": "text/plain"}
    )
    assert text.status_code == 422
    assert "Content-Type: application/json" in error_of(text)["message"]


async def test_credentials_are_never_echoed(api: httpx.AsyncClient) -> None:
    secret = "hunter2-very-secret"
    response = await api.post(
        "/sessions", json={"user": "u", "credentials": {"PASSWORD": secret, "N": 5}}
    )
    assert response.status_code == 422
    assert secret not in response.text
    response = await api.post("/sessions", json={"user": "u", "credentials": {secret: "x"}})
    assert response.status_code == 422


async def test_oversized_body_is_413(api: httpx.AsyncClient) -> None:
    big = json.dumps({"user": "u", "credentials": {"X": "a" * 70_000}}).encode()
    response = await api.post("/sessions", content=big, headers=JSON)
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


async def test_oversized_chunked_body_is_413(api: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"user": "u", "credentials": {"X": "'
        for _ in range(20):
            yield b"a" * 8192
        yield b'"}}'

    response = await api.post("/sessions", content=chunks(), headers=JSON)
    assert "content-length" not in response.request.headers
    assert response.status_code == 413
    assert error_of(response)["code"] == "payload_too_large"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/sessions/x/logs?limit=0", "limit"),
        ("/sessions/x/logs?limit=abc", "limit"),
        ("/events/recent?limit=-1", "limit"),
        ("/events/recent?limit=100000", "limit"),
        ("/events?kinds=ready&kinds=bogus", "kinds.1"),
        ("/events/recent?limt=5", "limt"),
        ("/sessions/x/logs?limit=5&follow=1", "follow"),
    ],
)
async def test_bad_query_parameters(api: httpx.AsyncClient, path: str, field: str) -> None:
    response = await api.get(path)
    assert response.status_code == 422
    assert error_of(response)["field"] == field


async def test_unknown_route_and_method(api: httpx.AsyncClient) -> None:
    missing = await api.get("/nothing/here")
    assert missing.status_code == 404 and error_of(missing)["code"] == "not_found"
    wrong = await api.put("/sessions")
    assert wrong.status_code == 405 and error_of(wrong)["code"] == "method_not_allowed"
    assert wrong.headers["allow"]


async def test_unexpected_error_is_a_json_500_without_internals(
    api: httpx.AsyncClient, memory_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken() -> list[object]:
        raise RuntimeError("secret internals /etc/shadow")

    monkeypatch.setattr(memory_backend.pool, "list", broken)
    response = await api.get("/sessions")
    assert response.status_code == 500
    error = error_of(response)
    assert error["code"] == "internal"
    assert "secret internals" not in response.text and "RuntimeError" not in response.text


async def test_a_bug_in_the_pool_is_a_json_500(
    api: httpx.AsyncClient, memory_backend: Backend, monkeypatch: pytest.MonkeyPatch
) -> None:
    from backend.errors import InvalidTransition

    def broken(session_id: str) -> object:
        raise InvalidTransition("session x: terminated -> ready is not allowed")

    monkeypatch.setattr(memory_backend.pool, "get", broken)
    response = await api.get("/sessions/x")
    assert response.status_code == 500
    assert "terminated -> ready" not in response.text
