"""Bearer-token auth on every route but /health, and where the token comes from."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import httpx
import pytest

from backend.api.app import make_api
from backend.api.token import TOKEN_ENV, load_or_create_token, read_token_file
from backend.errors import ConfigError
from backend.service import Backend
from tests.backend.api.conftest import TOKEN, error_of

PROTECTED = [
    ("GET", "/sessions"),
    ("POST", "/sessions"),
    ("GET", "/sessions/x"),
    ("DELETE", "/sessions/x"),
    ("GET", "/sessions/x/logs"),
    ("GET", "/templates"),
    ("GET", "/events"),
    ("GET", "/events/recent"),
    ("GET", "/metrics"),
    ("DELETE", "/orphans/x"),
    ("GET", "/openapi.json"),
    ("GET", "/no-such-route"),
]


@pytest.fixture
async def anonymous(memory_backend: Backend) -> httpx.AsyncClient:
    transport = httpx.ASGITransport(app=make_api(memory_backend, TOKEN))
    return httpx.AsyncClient(transport=transport, base_url="http://podwarden.test")


@pytest.mark.parametrize(("method", "path"), PROTECTED)
@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Bearer ",
        "Bearer wrong",
        f"Basic {TOKEN}",
        f"bearer{TOKEN}",
        f"Bearer {TOKEN}x",
        f"Bearer {TOKEN[:-1]}",
    ],
)
async def test_every_route_but_health_needs_the_token(
    anonymous: httpx.AsyncClient, method: str, path: str, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    response = await anonymous.request(method, path, headers=headers, json={"user": "u"})
    assert response.status_code == 401
    assert error_of(response)["code"] == "unauthorized"
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_health_needs_no_token(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/health")
    assert response.status_code == 200
    assert response.json()["status"] == "healthy"


async def test_the_right_token_passes(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/sessions", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200


def test_token_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    first = load_or_create_token(tmp_path, env={})
    path = tmp_path / "token"
    assert first.source == str(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first.value) >= 32
    assert load_or_create_token(tmp_path, env={}).value == first.value
    assert first.value not in repr(first)
    assert [p.name for p in tmp_path.iterdir()] == ["token"]


def test_env_token_wins(tmp_path: Path) -> None:
    token = load_or_create_token(tmp_path, env={TOKEN_ENV: "from-the-environment-1234"})
    assert token.value == "from-the-environment-1234" and token.source == "env"
    assert not (tmp_path / "token").exists()
    with pytest.raises(ConfigError, match="at least 16"):
        load_or_create_token(tmp_path, env={TOKEN_ENV: "short"})


def test_token_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    load_or_create_token(tmp_path, env={})
    os.chmod(tmp_path / "token", 0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        load_or_create_token(tmp_path, env={})
    os.chmod(tmp_path / "token", 0o600)
    (tmp_path / "token").write_text("\n")
    with pytest.raises(ConfigError, match="empty"):
        read_token_file(tmp_path / "token")
