"""Credentials: environment variables a caller passes for a session's workload.

Errors name the key, never the value.
"""

from __future__ import annotations

import re

from backend.errors import InvalidRequest
from backend.templates import Template

__all__ = ["validate_credentials"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")


def validate_credentials(credentials: object, template: Template) -> dict[str, str]:
    """NAME -> string value, checked; an empty dict for None."""
    if credentials is None:
        return {}
    if not isinstance(credentials, dict):
        raise InvalidRequest("credentials", "must be an object of NAME: value strings")
    for name, value in credentials.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise InvalidRequest(
                "credentials", f"key {str(name)[:40]!r} is not a valid environment variable name"
            )
        if not isinstance(value, str):
            raise InvalidRequest(f"credentials.{name}", "must be a string")
        if "\x00" in value:
            raise InvalidRequest(f"credentials.{name}", "must not contain NUL characters")
    return dict(credentials)
