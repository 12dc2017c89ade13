"""A minimal Chrome DevTools Protocol client for tests: pages, cookies, evaluate.

Talks to the DevTools endpoint at ``127.0.0.1:<devtools_port>`` (a session's tunnel port
works: the WebSocket URLs Chromium hands out name its own port, so they are rewritten to
the port we were given). HTTP through httpx, the protocol over ``websockets``.

    await set_cookie(port, "http://127.0.0.1:8000/", "sid", "abc")
    assert (await get_cookies(port, "http://127.0.0.1:8000/"))["sid"] == "abc"
"""

from __future__ import annotations

import asyncio
import itertools
import json
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
from websockets.asyncio.client import ClientConnection, connect

__all__ = ["CdpPage", "get_cookies", "open_page", "set_cookie", "version"]


async def version(devtools_port: int) -> dict[str, Any]:
    """``/json/version``: the browser's name, protocol version and browser WebSocket URL."""
    async with httpx.AsyncClient(timeout=10) as client:
        response = await client.get(f"http://127.0.0.1:{devtools_port}/json/version")
        response.raise_for_status()
        result: dict[str, Any] = response.json()
        return result


class CdpPage:
    """A WebSocket session with one page target."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._events: list[dict[str, Any]] = []

    async def call(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send a command and return its result (events that arrive meanwhile are kept)."""
        message_id = next(self._ids)
        await self._ws.send(
            json.dumps({"id": message_id, "method": method, "params": params or {}})
        )
        while True:
            message = json.loads(await asyncio.wait_for(self._ws.recv(), 30))
            if message.get("id") == message_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self._events.append(message)

    async def wait_event(self, method: str, timeout: float = 30) -> dict[str, Any]:
        """The next event named ``method`` (one that already arrived counts)."""
        for i, event in enumerate(self._events):
            if event["method"] == method:
                del self._events[: i + 1]
                return event
        self._events.clear()
        async with asyncio.timeout(timeout):
            while True:
                message = json.loads(await self._ws.recv())
                if message.get("method") == method:
                    return message

    async def navigate(self, url: str) -> None:
        """Load ``url`` and wait for its load event."""
        await self.call("Page.enable")
        self._events.clear()
        result = await self.call("Page.navigate", {"url": url})
        if result.get("errorText"):
            raise RuntimeError(f"navigating to {url}: {result['errorText']}")
        await self.wait_event("Page.loadEventFired")

    async def evaluate(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", {"expression": expression, "returnByValue": True}
        )
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")


@asynccontextmanager
async def open_page(devtools_port: int, url: str = "about:blank") -> AsyncIterator[CdpPage]:
    """A new tab (closed on exit) with a protocol session; navigated to ``url``."""
    base = f"http://127.0.0.1:{devtools_port}"
    async with httpx.AsyncClient(timeout=10) as client:
        # PUT since Chrome 111; GET for older ones.
        response = await client.put(f"{base}/json/new?about:blank")
        if response.status_code == 405:
            response = await client.get(f"{base}/json/new?about:blank")
        response.raise_for_status()
        target = response.json()
        ws_url = _via_port(target["webSocketDebuggerUrl"], devtools_port)
        try:
            async with connect(ws_url, max_size=16 * 1024 * 1024, open_timeout=10) as ws:
                page = CdpPage(ws)
                if url != "about:blank":
                    await page.navigate(url)
                yield page
        finally:
            await client.get(f"{base}/json/close/{target['id']}")


async def set_cookie(
    devtools_port: int, url: str, name: str, value: str, max_age: int = 86400
) -> None:
    """Load ``url`` in a new tab and set a persistent cookie from the page's script."""
    async with open_page(devtools_port, url) as page:
        await page.evaluate(
            f"document.cookie = {json.dumps(f'{name}={value}; path=/; max-age={max_age}')}"
        )
        cookies = await page.evaluate("document.cookie")
        if f"{name}={value}" not in cookies:
            raise RuntimeError(f"the cookie did not stick: {cookies!r}")


async def get_cookies(devtools_port: int, url: str) -> dict[str, str]:
    """The cookies the browser holds for ``url``, as name -> value (read in a new tab)."""
    async with open_page(devtools_port) as page:
        result = await page.call("Network.getCookies", {"urls": [url]})
    return {cookie["name"]: cookie["value"] for cookie in result.get("cookies", [])}


def _via_port(ws_url: str, port: int) -> str:
    """The same WebSocket URL, through ``127.0.0.1:port`` (e.g. a tunnel)."""
    parts = urllib.parse.urlsplit(ws_url)
    return urllib.parse.urlunsplit(parts._replace(netloc=f"127.0.0.1:{port}"))
