"""What the API shows a caller without the token: counts and status, no names.

``/health`` is public so load balancers and ``podwarden health`` can use it without a
secret, but orphan and ghost session ids contain user names; they are answered only to a
caller whose bearer token the guard accepted.
"""

from __future__ import annotations

from typing import Any

from starlette.types import Scope

from backend.api.guard import AUTHORIZED
from backend.health import public_health

__all__ = ["health_answer"]


def health_answer(document: dict[str, Any], scope: Scope) -> dict[str, Any]:
    """The health document as this request may see it."""
    return document if scope.get(AUTHORIZED) else public_health(document)
