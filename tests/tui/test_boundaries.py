"""Import boundaries and the key table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tui.keys import KEYS, MUTATING, READ_ONLY_ACTION, bindings, markdown_table


def test_backend_never_imports_textual_or_the_tui() -> None:
    code = (
        "import sys, backend.cli, backend.client, backend.service, backend.http_client\n"
        "import backend.api.app\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'tui'))\n"
        "print(bad)\n"
        "raise SystemExit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_help_does_not_import_textual_or_kubernetes() -> None:
    code = (
        "import sys\n"
        "sys.argv = ['podwarden', '--help']\n"
        "import tui.cli\n"
        "try:\n"
        "    tui.cli.main()\n"
        "except SystemExit:\n"
        "    pass\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'kubernetes'))\n"
        "sys.stderr.write(repr(bad))\n"
        "raise SystemExit(1 if bad else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "usage: podwarden" in result.stdout


def test_every_mutating_key_and_only_those_has_a_hidden_read_only_note() -> None:
    notes = {b.key for b in bindings() if b.action.startswith(f"{READ_ONLY_ACTION}(")}
    mutating = {k.keys for k in KEYS if k.mutating}
    assert notes == mutating == {"n", "r", "e", "E", "P", "D", "O"}
    assert not any(b.show for b in bindings() if b.action.startswith(READ_ONLY_ACTION))
    assert MUTATING == {k.action for k in KEYS if k.mutating}


def test_the_markdown_key_map_lists_every_key_and_is_the_readmes() -> None:
    table = markdown_table()
    for key in KEYS:
        assert key.help in table
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    assert table in readme, "README's key table is stale: paste tui.keys.markdown_table()"
