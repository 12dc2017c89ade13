"""The HTTP API: FastAPI app, uvicorn server inside the host's loop, bearer token.

Importing this package is cheap; FastAPI and uvicorn load only when ``make_api`` or
``serve_api`` is first used (the command line's ``--help`` must stay fast, and the
token helpers are needed without a server).

Modules: ``app`` (factory), ``routes``, ``schemas`` (pydantic models of the contract),
``handlers`` (errors to JSON), ``guard`` (auth, body limit, last-resort 500), ``sse``
(event stream), ``prometheus`` (``/metrics``), ``server`` (uvicorn embedding),
``token`` (where the token lives).
"""

from __future__ import annotations

from typing import Any

__all__ = ["ApiServer", "make_api", "serve_api"]


def __getattr__(name: str) -> Any:
    if name == "make_api":
        from backend.api.app import make_api

        return make_api
    if name in ("ApiServer", "serve_api"):
        from backend.api import server

        return getattr(server, name)
    raise AttributeError(name)
