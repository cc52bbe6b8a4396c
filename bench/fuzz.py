#!/usr/bin/env python3
"""A long fuzz run: the property tests of tests/test_properties_*.py with many random inputs.

Usage (from the repository root, with the test extra installed):

    .venv/bin/python bench/fuzz.py [--examples 100000] [--only NAME_PART] [--list]

CI runs the same properties with a few hundred derandomized inputs each; here each property
gets `--examples` new random inputs (a real session on loopback a hundredth of that, see
`tests/support/properties.py`). Every property runs even when one fails; the run prints, per
property, the inputs tried (shrinking a failure counts too), the time, and the falsifying input
of a failure, then the totals. Exit status 1 when any property failed. Not run in CI.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(path.stem for path in (ROOT / "tests").glob("test_properties_*.py"))


def properties(only: str | None) -> list[tuple[str, Callable[..., Any], Any]]:
    """Every hypothesis test of the property modules: (name, test, its module)."""
    found = []
    for name in MODULES:
        module = importlib.import_module(f"tests.{name}")
        for attr, test in vars(module).items():
            if attr.startswith("test_") and hasattr(test, "hypothesis"):
                full = f"{name}::{attr}"
                if only is None or only in full:
                    found.append((full, test, module))
    return found


def failure_text(error: BaseException) -> str:
    """The error and hypothesis's notes (the falsifying input), without the long traceback."""
    lines = traceback.format_exception_only(type(error), error)
    for sub in getattr(error, "exceptions", ()):  # several distinct failures
        lines += ["  " + line for line in traceback.format_exception_only(type(sub), sub)]
    return "".join(lines).rstrip()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--examples", type=int, default=10_000, help="random inputs a property")
    parser.add_argument("--only", help="run the properties whose name contains this")
    parser.add_argument("--list", action="store_true", help="list the properties and exit")
    args = parser.parse_args()

    sys.path.insert(0, str(ROOT))
    from tests.support.properties import FUZZ_ENV

    os.environ[FUZZ_ENV] = str(args.examples)  # read when the tests' decorators run
    found = properties(args.only)
    if args.list:
        print("\n".join(name for name, _, _ in found))
        return 0

    engines: list[Any] = []
    folder = tempfile.TemporaryDirectory(prefix="relaybox-fuzz-")
    total_tried = total_failed = 0
    started = time.monotonic()
    try:
        for name, test, module in found:
            kwargs: dict[str, Any] = {}
            wanted = inspect.signature(test.hypothesis.inner_test).parameters
            if "engine" in wanted:  # the module fixture of the loopback session test
                if not engines:
                    engines.append(module.ThreadedEngine(Path(folder.name) / "state"))
                kwargs["engine"] = engines[0]
            tried = 0
            inner = test.hypothesis.inner_test

            def counting(*a: Any, _inner: Any = inner, **k: Any) -> Any:
                nonlocal tried
                tried += 1
                return _inner(*a, **k)

            # Hypothesis's documented hook for running the body another way (see its docs on
            # `inner_test`): here, only to count the inputs.
            test.hypothesis.inner_test = counting
            began = time.monotonic()
            try:
                test(**kwargs)
                outcome = "ok"
            except Exception as error:  # a falsified property: report it and go on
                outcome = "FAILED\n" + failure_text(error)
                total_failed += 1
            finally:
                test.hypothesis.inner_test = inner
            total_tried += tried
            print(
                f"{name}: {tried} inputs, {time.monotonic() - began:.1f} s, {outcome}", flush=True
            )
    finally:
        for engine in engines:
            engine.stop()
        folder.cleanup()
    print(
        f"\n{len(found)} properties, {total_tried} inputs tried, {total_failed} failed, "
        f"{time.monotonic() - started:.0f} s"
    )
    return 1 if total_failed else 0


if __name__ == "__main__":
    sys.exit(main())
