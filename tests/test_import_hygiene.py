"""The engine never loads Textual: only `relaybox.tui` may (a headless relay stays lean).

The import-linter contract in `pyproject.toml` reads the static graph; this test runs the real
imports in a fresh interpreter (this process may have loaded Textual already) and looks at
`sys.modules`, naming the first module after which Textual appeared.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

# `pkgutil.walk_packages` imports every package it recurses into, `relaybox.tui` included, so
# the walk is done with `iter_modules` and the TUI is skipped before anything imports it.
SCRIPT = textwrap.dedent(
    """
    import importlib
    import pkgutil
    import sys

    import relaybox

    def is_tui(name):
        return name == "relaybox.tui" or name.startswith("relaybox.tui.")

    def walk(path, prefix):
        for info in pkgutil.iter_modules(path, prefix):
            if is_tui(info.name) or info.name == "relaybox.__main__":  # that one runs relaybox
                continue
            module = importlib.import_module(info.name)
            yield info.name
            if info.ispkg:
                yield from walk(module.__path__, info.name + ".")

    count = 0
    for name in walk(relaybox.__path__, "relaybox."):
        count += 1
        if "textual" in sys.modules:
            sys.exit(f"importing {name} loaded textual")
    print(count)
    """
)


def test_engine_modules_do_not_import_textual() -> None:
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=Path(__file__).parent.parent,  # the relaybox of this checkout
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert int(result.stdout) >= 15, "the walk did not find relaybox's modules"


def test_import_linter_contract_holds() -> None:
    """The contract in pyproject.toml, checked by import-linter on the static import graph."""
    import shutil
    import subprocess
    from pathlib import Path

    lint = shutil.which("lint-imports") or str(Path(sys.executable).parent / "lint-imports")
    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [lint, "--config", str(root / "pyproject.toml")],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout
