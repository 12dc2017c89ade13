"""Credentials: which environment variables a caller may hand a workload.

Credentials reach the workload's environment (local runtime) or a Secret mounted as its
environment (Kubernetes). Holding the API token must let a caller start what the operator
configured, nothing more, so two rules apply, in this order:

1. Names that change how a program is loaded or run are always refused, even when a
   template lists them: the dynamic loader's (``LD_*``, ``DYLD_*``), interpreters' and
   shells' (``PYTHON*``, ``NODE_*``, ``PERL*``, ``RUBY*``, ``BASH_ENV``, ``ENV``, ...),
   the search paths and identity (``PATH``, ``HOME``, ``SHELL``, ``IFS``, ...), and
   variables that name a program another program runs (``BROWSER``, ``EDITOR``, ...).
   ``PYTHONWARNINGS`` plus ``BROWSER`` alone is enough to run a shell command.
2. Every other name must be listed in the template's ``credentials``; a template that
   lists none accepts none.

Errors name the field, never the value.
"""

from __future__ import annotations

import re

from backend.errors import InvalidRequest
from backend.templates import Template

__all__ = ["check_credentials", "refused_reason"]

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")

_DENIED_PREFIXES = (
    "LD_",  # glibc's loader: LD_PRELOAD, LD_LIBRARY_PATH, LD_AUDIT
    "DYLD_",  # macOS loader
    "GLIBC_",  # GLIBC_TUNABLES
    "MALLOC_",
    "PYTHON",  # PYTHONPATH, PYTHONSTARTUP, PYTHONWARNINGS, PYTHONHOME, ...
    "NODE_",  # NODE_OPTIONS, NODE_PATH
    "NPM_",
    "PERL",  # PERL5LIB, PERL5OPT, PERLLIB
    "RUBY",  # RUBYOPT, RUBYLIB
    "JAVA_",  # JAVA_TOOL_OPTIONS
    "_JAVA_",
    "JDK_",
    "BASH_",  # BASH_ENV, BASH_FUNC_*
    "GCONV_",
    "LOCPATH",
    "GIT_",  # GIT_SSH_COMMAND, GIT_EXEC_PATH, ...
    "SSL_",
    "OPENSSL_",
    "GTK_",  # GTK_MODULES load code
    "GIO_",
    "QT_",
    "LUA_",
    "PHP",
    "TCL",
    "CHROME_",
    "CHROMIUM_",
    "PODWARDEN",  # our own marker and settings
)
_DENIED_NAMES = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "ENV",
        "IFS",
        "CDPATH",
        "PS4",
        "PROMPT_COMMAND",
        "TMPDIR",
        "TMP",
        "TEMP",
        "BROWSER",
        "EDITOR",
        "VISUAL",
        "PAGER",
        "MANPAGER",
        "TERMINAL",
        "SSH_ASKPASS",
        "SUDO_ASKPASS",
        "GETCONF_DIR",
        "HOSTALIASES",
        "RES_OPTIONS",
        "LOCALDOMAIN",
        "NLSPATH",
        "TZDIR",
        "XDG_CONFIG_HOME",
        "XDG_CONFIG_DIRS",
        "XDG_DATA_HOME",
        "XDG_DATA_DIRS",
        "XDG_RUNTIME_DIR",
        "XDG_CACHE_HOME",
        "XDG_STATE_HOME",
        "DBUS_SESSION_BUS_ADDRESS",
        "DISPLAY",
        "WAYLAND_DISPLAY",
        "KUBECONFIG",
        "CLASSPATH",
        "GEM_HOME",
        "GEM_PATH",
        "R_PROFILE",
        "R_ENVIRON",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
    }
)


def refused_reason(name: str) -> str | None:
    """Why ``name`` may never be a credential, or None when it may (if listed)."""
    upper = name.upper()
    if upper in _DENIED_NAMES:
        return "changes how programs run or find files and is never accepted"
    for prefix in _DENIED_PREFIXES:
        if upper.startswith(prefix):
            return f"{prefix}* variables change how programs load or run and are never accepted"
    return None


def check_credentials(credentials: object, template: Template) -> dict[str, str]:
    """The credentials as NAME -> value if ``template`` accepts them; ``InvalidRequest`` else."""
    if credentials is None:
        return {}
    if not isinstance(credentials, dict):
        raise InvalidRequest("credentials", "must be an object of NAME: value strings")
    allowed = set(template.credentials)
    for name, value in credentials.items():
        if not isinstance(name, str) or not _ENV_NAME.match(name):
            raise InvalidRequest(
                "credentials", f"key {str(name)[:40]!r} is not a valid environment variable name"
            )
        field = f"credentials.{name}"
        reason = refused_reason(name)
        if reason is not None:
            raise InvalidRequest(field, reason)
        if name not in allowed:
            listed = ", ".join(sorted(allowed)) or "none"
            raise InvalidRequest(
                field,
                f"is not a credential template {template.name!r} accepts (it accepts: {listed})",
            )
        if not isinstance(value, str):
            raise InvalidRequest(field, "must be a string")
        if "\x00" in value:
            raise InvalidRequest(field, "must not contain NUL characters")
    return dict(credentials)
