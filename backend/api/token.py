"""The API's bearer token: where it comes from and how it is kept.

``PODWARDEN_TOKEN`` wins; otherwise the token lives in ``<state-dir>/token``, created on
first start with mode 0600 (``O_EXCL``, so two servers starting at once cannot write two
different tokens). A token file readable by others is refused rather than trusted: anyone
who can read it can drive the pool. This module imports nothing heavy, so the command line
and the HTTP client can use it without loading FastAPI.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from backend.errors import ConfigError

__all__ = ["ApiToken", "TOKEN_ENV", "load_or_create_token", "read_token_file", "token_path"]

TOKEN_ENV = "PODWARDEN_TOKEN"
_MIN_LENGTH = 16


@dataclass(frozen=True)
class ApiToken:
    """The token and where it came from (``env`` or a file path), for the start banner."""

    value: str
    source: str

    def __repr__(self) -> str:  # never print the secret by accident
        return f"ApiToken(source={self.source!r})"


def token_path(state_dir: str | Path) -> Path:
    return Path(state_dir) / "token"


def read_token_file(path: str | Path) -> str:
    """The token stored in ``path`` (surrounding whitespace removed).

    Raises ``ConfigError`` when it is missing, empty or readable by group or others.
    """
    file = Path(path)
    try:
        mode = file.stat().st_mode
        text = file.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise ConfigError("token", f"{file} does not exist") from None
    except OSError as e:
        raise ConfigError("token", f"cannot read {file}: {e.strerror}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise ConfigError("token", f"{file} is accessible by other users; run: chmod 600 {file}")
    if not text:
        raise ConfigError("token", f"{file} is empty; delete it to have a new one generated")
    return text


def load_or_create_token(state_dir: str | Path, env: dict[str, str] | None = None) -> ApiToken:
    """``PODWARDEN_TOKEN`` if set, else the state directory's token, created if missing."""
    environ = os.environ if env is None else env
    from_env = environ.get(TOKEN_ENV, "").strip()
    if from_env:
        if len(from_env) < _MIN_LENGTH:
            raise ConfigError(TOKEN_ENV, f"must be at least {_MIN_LENGTH} characters long")
        return ApiToken(from_env, "env")
    path = token_path(state_dir)
    if not path.exists():
        try:
            _create(path, secrets.token_urlsafe(32))
        except FileExistsError:
            pass  # another process won the race; read what it wrote
        except OSError as e:
            raise ConfigError("token", f"cannot create {path}: {e.strerror}") from None
    return ApiToken(read_token_file(path), str(path))


def _create(path: Path, value: str) -> None:
    """Write the token to a private temporary file, then link it into place atomically:
    a reader never sees a half-written token, and ``FileExistsError`` if one is there."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".token.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(value + "\n")
        os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
