"""Fixtures for the console tests: a deterministic pool, and snapshots in ``snapshots/``.

pytest-textual-snapshot stores SVGs next to the tests by default; the project keeps them
in the top-level ``snapshots/<test module>/`` folder, so this replaces the plugin's
extension class (``snap_compare`` looks the module global up at call time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import pytest_textual_snapshot

from tests.tui.harness import Pool, build_pool

REPO = Path(__file__).resolve().parents[2]
SNAPSHOTS = REPO / "snapshots"


class RepoSnapshots(pytest_textual_snapshot.SVGImageExtension):
    """SVG snapshots under ``<repo>/snapshots/<test module>/``."""

    @classmethod
    def dirname(cls, *, test_location: Any) -> str:
        return str(SNAPSHOTS / test_location.basename)


@pytest.fixture(autouse=True)
def _snapshots_in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pytest_textual_snapshot, "SVGImageExtension", RepoSnapshots)


@pytest.fixture
def pool(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Pool:
    """A deterministic pool on the memory runtime, not yet started."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TEXTUAL_ANIMATIONS", "none")
    # A true-colour terminal unless a test says otherwise: the console picks its theme
    # from the terminal (tui.theme), and CI's TERM is nobody's choice.
    monkeypatch.setenv("COLORTERM", "truecolor")
    return build_pool(tmp_path, monkeypatch)
