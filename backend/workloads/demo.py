"""The built-in demo workload: a small HTTP server that pretends to log in.

``python -m backend.workloads.demo --port N --login-delay S`` serves on 127.0.0.1:N. For
the first S seconds it is "logging in" and ``/health`` answers 503; after that it is
logged in as ``$PODWARDEN_USER`` and answers 200. This is what makes a fresh podwarden
install show the point of the product: the first acquire of a user waits for the login,
the second gets the warm session at once.

Endpoints: ``/health`` (readiness), ``/keepalive`` (what the refresher calls; counts),
``/`` (a page with the user and uptime; sets a session cookie) and ``/whoami`` (JSON).
Credentials handed to the session arrive as environment variables, named (names only) by
``PODWARDEN_CREDENTIALS``; ``/whoami`` lists the names it received, never a value. A
standby workload learns who claimed it from ``podwarden-claim.json`` in its working
directory (``CLAIM_FILE``), which the local runtime writes at the claim.

It imports only ``socketserver`` and friends (not ``http.server`` or ``asyncio``) so that
it starts in a few tens of milliseconds: its start time is the demo's, not podwarden's.
It prints one line per request, flushed (``/health`` only when its answer changes, so
readiness polling does not flood the log), and exits cleanly on SIGTERM.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import selectors
import signal
import socketserver
import sys
import threading
import time
from typing import Any

_REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}


CLAIM_FILE = "podwarden-claim.json"
"""Written into a standby workload's working directory when a user claims it."""


class DemoState:
    """What the workload knows about itself."""

    def __init__(self, user: str) -> None:
        self.user = user
        self.session_id = os.environ.get("PODWARDEN_SESSION_ID", "")
        self.started = time.time()
        self._logged_in = threading.Event()
        named = os.environ.get("PODWARDEN_CREDENTIALS", "").split(",")
        self.credentials = sorted(name for name in named if name and name in os.environ)
        self.keepalives = 0
        self.requests = 0
        self.last_health = 0
        self.lock = threading.Lock()

    @property
    def logged_in(self) -> bool:
        return self._logged_in.is_set()

    def log_in(self) -> None:
        """End the pretended login: say so first, so the line precedes every 200."""
        log(f"logged in as {self.user}")
        self._logged_in.set()

    def claim(self) -> dict[str, Any]:
        """Who claimed this (standby) workload, if anyone: {} when started for a user."""
        path = os.path.join(os.environ.get("PODWARDEN_WORKDIR", "."), CLAIM_FILE)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def whoami(self) -> dict[str, Any]:
        claim = self.claim()
        return {
            "user": claim.get("user", self.user),
            "session_id": claim.get("session_id", self.session_id),
            "claimed": bool(claim),
            "pid": os.getpid(),
            "started": self.started,
            "uptime_s": round(time.time() - self.started, 3),
            "logged_in": self.logged_in,
            "keepalives": self.keepalives,
            "requests": self.requests,
            "credentials": sorted({*self.credentials, *claim.get("credentials", [])}),
        }


def log(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Handler(socketserver.StreamRequestHandler):
    """HTTP/1.0-style: one request per connection, answered and closed."""

    server: DemoServer
    timeout = 10.0

    def handle(self) -> None:
        try:
            request_line = self.rfile.readline(8192).decode("latin-1").strip()
            if not request_line:
                return
            while True:  # skip the headers; nothing in them matters here
                header = self.rfile.readline(8192)
                if header in (b"\r\n", b"\n", b""):
                    break
        except OSError:
            return
        parts = request_line.split()
        if len(parts) != 3:
            self.respond(400, {"error": "bad request line"}, "-")
            return
        method, target, _ = parts
        path = target.split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            self.respond(405, {"error": "only GET"}, path, method=method)
            return
        self.route(path, method)

    def route(self, path: str, method: str) -> None:
        state = self.server.state
        with state.lock:
            state.requests += 1
        if path == "/health":
            status = 200 if state.logged_in else 503
            with state.lock:  # log health checks only when the answer changes
                quiet, state.last_health = state.last_health == status, status
            body = (
                {"status": "ok", "user": state.user} if status == 200 else {"status": "logging in"}
            )
            self.respond(status, body, path, method=method, quiet=quiet)
        elif path == "/keepalive":
            with state.lock:
                state.keepalives += 1
                count = state.keepalives
            self.respond(200, {"status": "ok", "keepalives": count}, path, method=method)
            log(f"keepalive #{count}")
        elif path == "/whoami":
            self.respond(200, state.whoami(), path, method=method)
        elif path == "/":
            uptime = time.time() - state.started
            page = (
                "<!doctype html><title>podwarden demo</title>"
                f"<h1>Hello, {_html(state.user)}</h1>"
                f"<p>Session {_html(state.session_id)}, up {uptime:.1f}s, "
                f"{state.keepalives} keepalives.</p>"
            )
            cookie = f"podwarden_demo={secrets.token_hex(8)}; Path=/; HttpOnly; SameSite=Lax"
            self.respond(200, page, path, method=method, headers={"Set-Cookie": cookie})
        else:
            self.respond(404, {"error": f"no such path: {path}"}, path, method=method)

    def respond(
        self,
        status: int,
        body: dict[str, Any] | str,
        path: str,
        *,
        method: str = "GET",
        headers: dict[str, str] | None = None,
        quiet: bool = False,
    ) -> None:
        if isinstance(body, str):
            payload, kind = body.encode("utf-8"), "text/html; charset=utf-8"
        else:
            payload, kind = json.dumps(body).encode("utf-8"), "application/json"
        head = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
            f"Content-Type: {kind}",
            f"Content-Length: {len(payload)}",
            "Connection: close",
            "Cache-Control: no-store",
        ]
        head += [f"{name}: {value}" for name, value in (headers or {}).items()]
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1")
        if method != "HEAD":
            data += payload
        try:
            self.wfile.write(data)
        except OSError:
            pass  # the client went away; nothing to tell it
        if not quiet:
            log(f"{self.client_address[0]} {method} {path} {status}")


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class DemoServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64

    def __init__(self, port: int, state: DemoState) -> None:
        super().__init__(("127.0.0.1", port), Handler)
        self.state = state


def serve_until_signalled(server: DemoServer) -> int:
    """Accept connections until SIGTERM or SIGINT; return the signal number.

    The signals only wake the selector (through ``signal.set_wakeup_fd``): no exception
    is raised into whatever the main thread happens to be doing, so a signal that lands
    while a request is being dispatched cannot be swallowed or leave a lock half-taken.
    """
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_r, False)
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: None)  # a Python handler, so the fd is written
    try:
        with selectors.DefaultSelector() as selector:
            selector.register(server.socket, selectors.EVENT_READ, "accept")
            selector.register(wake_r, selectors.EVENT_READ, "signal")
            while True:
                for key, _ in selector.select():
                    if key.data == "signal":
                        return os.read(wake_r, 64)[0]
                    server.handle_request()
    finally:
        signal.set_wakeup_fd(-1)
        os.close(wake_r)
        os.close(wake_w)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.workloads.demo")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--login-delay", type=float, default=2.0)
    args = parser.parse_args(argv)
    user = os.environ.get("PODWARDEN_USER", "nobody")
    state = DemoState(user)
    try:
        server = DemoServer(args.port, state)
    except OSError as e:
        log(f"cannot listen on 127.0.0.1:{args.port}: {e.strerror}")
        return 3
    log(f"listening on 127.0.0.1:{args.port}; logging in...")
    if args.login_delay > 0:
        timer = threading.Timer(args.login_delay, state.log_in)
        timer.daemon = True
        timer.start()
    else:
        state.log_in()
    try:
        signum = serve_until_signalled(server)
    finally:
        server.server_close()
    log(f"stopped ({signal.Signals(signum).name})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
