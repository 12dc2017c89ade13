"""The command palette (ctrl+p or ``:``): the main screen's keys, found by name.

The hits come from the same key table as the bindings, so the palette offers exactly
what the keys do, and in read-only mode it offers no mutating command either.
"""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from tui.keys import KEYS, Key

__all__ = ["ConsoleCommands"]


class ConsoleCommands(Provider):
    """One command per key of the main screen (except the palette itself)."""

    def _keys(self) -> list[Key]:
        read_only = bool(getattr(self.app, "read_only", False))
        return [
            k
            for k in KEYS
            if k.action != "app.command_palette"
            and k.keys != "escape"
            and not (read_only and k.mutating)
        ]

    async def _run(self, key: Key) -> None:
        await self.screen.run_action(key.action)

    def _name(self, key: Key) -> str:
        return f"{key.label} ({' '.join(key.shown.split())})"

    async def discover(self) -> Hits:
        for key in self._keys():
            yield DiscoveryHit(self._name(key), partial(self._run, key), help=key.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for key in self._keys():
            name = self._name(key)
            score = max(matcher.match(name), matcher.match(key.help) * 0.8)
            if score > 0:
                yield Hit(score, matcher.highlight(name), partial(self._run, key), help=key.help)
