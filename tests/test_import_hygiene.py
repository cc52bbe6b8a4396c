"""The engine never loads Textual: only `relaybox.tui` may (a headless relay stays lean).

The import-linter contract in `pyproject.toml` reads the static graph; this test runs the real
imports in a fresh interpreter (this process may have loaded Textual already) and looks at
`sys.modules`, naming the first module after which Textual appeared.
"""

from __future__ import annotations

import ast
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


# ---------------------------------------------------------------------- the tests' own imports

TESTS = Path(__file__).resolve().parent


def imports_of_test_modules(source: str, package: str) -> list[str]:
    """The test modules and conftest files that `source` (a module in `package`, dotted, e.g.
    "tests.support") imports from: shared helpers belong in tests/support/, fixtures in
    conftest.py (which pytest loads itself and nothing imports)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[: len(base) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        found.extend(name for name in names if _is_test_module(name))
    return found


def _is_test_module(name: str) -> bool:
    last = name.rsplit(".", 1)[-1]
    return name.startswith("tests.") and (last.startswith("test_") or last == "conftest")


def test_no_test_module_imports_another_or_conftest() -> None:
    offenders = {}
    for path in sorted(TESTS.rglob("*.py")):
        package = ".".join(("tests", *path.relative_to(TESTS).parent.parts))
        found = imports_of_test_modules(path.read_text(encoding="utf-8"), package)
        if found:
            offenders[str(path.relative_to(TESTS))] = found
    assert offenders == {}, "move shared helpers to tests/support/ and fixtures to conftest.py"


def test_the_import_check_sees_every_spelling() -> None:
    """The check above finds each way of spelling such an import (else it could never fail)."""
    source = textwrap.dedent(
        """
        from .test_delivery import send
        from tests.test_cli import write_config
        from . import test_dkim
        from ..conftest import make_config
        import tests.test_tui
        from .support.smtp import send
        from .tui_seed import SIZES
        """
    )
    assert imports_of_test_modules(source, "tests.support") == [
        "tests.support.test_delivery",
        "tests.test_cli",
        "tests.support.test_dkim",
        "tests.conftest",
        "tests.test_tui",
    ]
